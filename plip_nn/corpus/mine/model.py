"""What the language miners find: a candidate sample, or a dropped candidate and why."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Candidate", "Drop"]


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One (function, test that calls it) pair, cut into a sample.

    Attributes:
        name: The function under test.
        code: The sample: the function and its test, parsing on its own.
        line: 1-based line of the function in its file.
        n_params: Declared parameters (``self`` counted).
        marker_char_pos: Where the miner put the marker (the calling example's ``>>>`` / the
            test's ``#[test]``), checked against the annotator's.
        call_line: The first line of the calling example / the test's call, for reading.
        prompt: The generation prompt (Rust; Python's is cut from the annotation).
    """

    name: str
    code: str
    line: int
    n_params: int
    marker_char_pos: int
    call_line: str
    prompt: str | None = None


@dataclass(frozen=True)
class Drop:
    """A candidate left out: ``reason`` (a short slug), its line and function name."""

    reason: str
    line: int
    name: str
