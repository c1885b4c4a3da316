"""Hand-written raw corpus inputs (``{id, code}``) for ``scripts/build_corpus.py``.

``python_tests`` and ``rust_tests`` hold the first 63 + 60 samples and ``baselines`` the first
16 + 16 false-marker baselines; ``python_more_*``, ``rust_more_*`` and ``baselines_more`` the
ones added for issue 29 (strings; numbers, lists and maps; algorithms, methods and enums).
``trained_names`` refuses function names the embedded model trained on.
"""
