"""Hand-written raw corpus inputs (``{id, code}``) for ``scripts/build_corpus.py``."""
