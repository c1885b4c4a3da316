"""``plip-nn corpus mine``: (function, test that calls it) pairs from Python and Rust source trees.

The trees are read as text, never imported or run. Python: a function or method whose docstring's
first doctest example calls it by name (:mod:`.python`). Rust: a function or ``impl`` method and
the first ``#[test]`` that calls it, in the same file or its ``mod tests`` (:mod:`.rust`). Every
kept pair is annotated by our annotator (:mod:`plip_nn.corpus`), checked to put the marker where the
miner found the test, and written with a generation prompt cut the way the built-in corpus cuts
them (Python: up to the first ``>>>``; Rust: the function, then ``#[test]``) and its provenance
(:mod:`.provenance`).
"""

from plip_nn.corpus.mine.core import MineConfig, MineError, MineResult, Summary, mine, write_mined

__all__ = ["MineConfig", "MineError", "MineResult", "Summary", "mine", "write_mined"]
