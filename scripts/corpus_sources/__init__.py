"""Hand-written raw corpus inputs (``{id, code}``) for ``scripts/build_corpus.py``.

``python_tests`` and ``rust_tests`` hold the first 63 + 60 samples; ``python_more_*`` and
``rust_more_*`` the ones added for issue 29 (strings; numbers, lists and maps; algorithms and
methods). ``trained_names`` refuses function names the embedded model trained on.
"""
