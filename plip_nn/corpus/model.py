"""The corpus data model: samples, the function under test, annotations, problems, the corpus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEFAULT_CORPUS_PATH",
    "FORMAT_VERSION",
    "LISTS",
    "Annotation",
    "AnnotationFailure",
    "Corpus",
    "CorpusError",
    "FunctionInfo",
    "Kind",
    "Language",
    "Problem",
    "Sample",
]

Language = Literal["python", "rust"]
Kind = Literal["test", "baseline", "generation"]

DEFAULT_CORPUS_PATH = Path(__file__).resolve().parent.parent / "data" / "corpus" / "corpus.json"
FORMAT_VERSION = "2.0"
#: JSON list name -> (language, kind).
LISTS: dict[str, tuple[Language, Kind]] = {
    "python_doctest": ("python", "test"),
    "rust_test": ("rust", "test"),
    "python_baseline": ("python", "baseline"),
    "rust_baseline": ("rust", "baseline"),
    "python_generation": ("python", "generation"),
    "rust_generation": ("rust", "generation"),
}


class CorpusError(ValueError):
    """A corpus file or sample that is malformed or cannot be annotated."""


@dataclass(frozen=True, kw_only=True)
class FunctionInfo:
    """The function under test, as preservation scoring needs it.

    Attributes:
        name: The function's name (source spelling).
        params: Declared parameters in order (see the module docstring for the spelling).
        arity: Number of declared parameters; Python counts ``self``, ``*args``, ``**kwargs``.
        source: A complete program that defines the function.
    """

    name: str
    params: tuple[str, ...]
    arity: int
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"FunctionInfo.name={self.name!r} must be a non-empty string")
        if not isinstance(self.params, tuple) or not all(isinstance(p, str) for p in self.params):
            raise ValueError(f"FunctionInfo.params={self.params!r} must be a tuple of strings")
        if isinstance(self.arity, bool) or self.arity != len(self.params):
            raise ValueError(
                f"FunctionInfo.arity={self.arity!r} must equal len(params)={len(self.params)}"
            )
        if not isinstance(self.source, str) or self.name not in self.source:
            raise ValueError(f"FunctionInfo.source must be a string that defines {self.name!r}")

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``{name, params, arity, source}``."""
        return {
            "name": self.name,
            "params": list(self.params),
            "arity": self.arity,
            "source": self.source,
        }


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One corpus sample with character positions.

    Attributes:
        id: Unique id within the corpus.
        language: ``"python"`` or ``"rust"``.
        kind: ``"test"``, ``"baseline"`` or ``"generation"``.
        code: The text given to the model.
        marker_char_pos: First character of the marker in ``code``.
        marker_pattern: The marker text found at ``marker_char_pos``.
        target_char_positions: First characters of the targets, in source order.
        function: The function under test (``None`` for PLIP-rs samples without it).
        provenance: Where a mined sample comes from (package, version, file, line, licence,
            sha256; ``plip-nn corpus mine``); ``None`` for a hand-written sample.
    """

    id: str
    language: Language
    kind: Kind
    code: str
    marker_char_pos: int
    marker_pattern: str
    target_char_positions: tuple[int, ...]
    function: FunctionInfo | None = None
    provenance: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def source(self) -> str:
        """``"mined"`` (a sample with a provenance, from real code) or ``"hand-written"``."""
        return "mined" if self.provenance else "hand-written"

    def __post_init__(self) -> None:
        if self.provenance is not None and not isinstance(self.provenance, Mapping):
            raise ValueError(f"provenance={self.provenance!r} must be an object or absent")
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"id={self.id!r} must be a non-empty string")
        if self.language not in ("python", "rust"):
            raise ValueError(f"language={self.language!r} must be 'python' or 'rust'")
        if self.kind not in ("test", "baseline", "generation"):
            raise ValueError(f"kind={self.kind!r} must be 'test', 'baseline' or 'generation'")
        if not isinstance(self.code, str) or not self.code:
            raise ValueError("code must be a non-empty string")
        n = len(self.code)
        for name, pos in [("marker_char_pos", self.marker_char_pos)] + [
            ("target_char_positions", t) for t in self.target_char_positions
        ]:
            if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos < n:
                raise ValueError(
                    f"{name} value {pos!r} is out of range for code of length {n}; "
                    f"use a char position in 0..{n - 1} (re-run `plip-nn corpus annotate`)"
                )
        if not self.target_char_positions:
            raise ValueError("target_char_positions is empty; give at least one target")
        end = self.marker_char_pos + len(self.marker_pattern)
        if not self.marker_pattern or self.code[self.marker_char_pos : end] != self.marker_pattern:
            raise ValueError(
                f"marker_pattern={self.marker_pattern!r} is not at marker_char_pos="
                f"{self.marker_char_pos} (found {self.code[self.marker_char_pos : end]!r}); "
                "re-run `plip-nn corpus annotate`"
            )

    @property
    def masked_targets(self) -> tuple[int, ...]:
        """Target chars after the marker: their edges are masked by causality."""
        return tuple(t for t in self.target_char_positions if t > self.marker_char_pos)

    def to_json(self) -> dict[str, Any]:
        """JSON entry of our format."""
        out: dict[str, Any] = {
            "id": self.id,
            "code": self.code,
            "marker_char_pos": self.marker_char_pos,
            "marker_pattern": self.marker_pattern,
            "target_char_positions": list(self.target_char_positions),
        }
        if self.function is not None:
            out["function"] = self.function.to_json()
        if self.provenance is not None:
            out["provenance"] = dict(self.provenance)
        return out


@dataclass(frozen=True, kw_only=True)
class Annotation:
    """Result of annotating one piece of code."""

    marker_char_pos: int
    marker_pattern: str
    target_char_positions: tuple[int, ...]
    function: FunctionInfo


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing ``check_corpus`` found wrong.

    Attributes:
        path: The file (or ``"<corpus>"``).
        sample_id: The sample (``"-"`` for file-level problems).
        code: Short category: ``malformed_json``, ``format``, ``missing_field``, ``bad_value``,
            ``out_of_range``, ``duplicate_id``, ``masked``, ``unannotatable``.
        message: What is wrong and how to fix it.
    """

    path: str
    sample_id: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: sample {self.sample_id}: [{self.code}] {self.message}"


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus."""

    samples: tuple[Sample, ...]
    path: Path | None = field(default=None)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for s in self.samples:
            if s.id in seen:
                raise CorpusError(f"{self.path}: sample {s.id}: duplicate id; make ids unique")
            seen.add(s.id)

    def select(self, language: str | None = None, kind: str | None = None) -> list[Sample]:
        """Samples of one language and/or kind, in file order."""
        if language not in (None, "python", "rust"):
            raise ValueError(f"language={language!r} must be None, 'python' or 'rust'")
        if kind not in (None, "test", "baseline", "generation"):
            raise ValueError(f"kind={kind!r} must be None, 'test', 'baseline' or 'generation'")
        return [
            s
            for s in self.samples
            if (language is None or s.language == language) and (kind is None or s.kind == kind)
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def by_id(self, sample_id: str) -> Sample:
        """The sample with this id."""
        for s in self.samples:
            if s.id == sample_id:
                return s
        raise KeyError(f"no sample {sample_id!r} in {self.path}")

    def to_json(self) -> dict[str, Any]:
        """Our file format."""
        out: dict[str, Any] = {"_format_version": FORMAT_VERSION}
        for name, (lang, kind) in LISTS.items():
            out[name] = [s.to_json() for s in self.samples if (s.language, s.kind) == (lang, kind)]
        return out


class AnnotationFailure(Exception):
    """Why one piece of code cannot be annotated; the annotators wrap it into CorpusError."""
