"""The mining run: walk the roots, find candidates, filter, annotate, and summarise."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plip_nn.atomic import atomic_write_text
from plip_nn.codesrc import PY_GENERATION_SUFFIX
from plip_nn.corpus.io import annotate_sample
from plip_nn.corpus.mine.files import read_source, source_files
from plip_nn.corpus.mine.model import Candidate, Drop
from plip_nn.corpus.mine.provenance import provenance
from plip_nn.corpus.model import FORMAT_VERSION, CorpusError, Language, Sample

__all__ = ["MineConfig", "MineError", "MineResult", "Summary", "mine", "write_mined"]

_SUFFIX = {"python": ".py", "rust": ".rs"}
_LISTS = {
    "python": ("python_doctest", "python_generation"),
    "rust": ("rust_test", "rust_generation"),
}
_PREFIX = {"python": ("py", "pyg"), "rust": ("rs", "rsg")}
_TOKENIZER = Path(__file__).resolve().parents[2] / "data" / "model" / "tokenizer.json"


class MineError(ValueError):
    """Bad input to the miner: a missing path, no source of the language, a bad flag value."""


@dataclass(frozen=True, kw_only=True)
class MineConfig:
    """What to mine and the filters.

    Attributes:
        paths: Source trees (or single files) to read.
        language: ``"python"`` or ``"rust"``.
        max_tokens: Token budget of a sample (the embedded model's tokenizer; its context is 1024).
        min_params: Fewest declared parameters (``self`` counted).
        max_params: Most declared parameters.
        exclude_names: Function names left out.
        exclude_files: Files left out unread, as ``ROOT_NAME/relative/path`` (POSIX).
    """

    paths: tuple[Path, ...]
    language: Language
    max_tokens: int = 512
    min_params: int = 1
    max_params: int = 6
    exclude_names: frozenset[str] = frozenset()
    exclude_files: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.language not in _SUFFIX:
            raise MineError(f"--language {self.language!r}: use 'python' or 'rust'")
        if not self.paths:
            raise MineError("no PATH given; name at least one source tree")
        for p in self.paths:
            if not p.exists():
                raise MineError(f"PATH {p} does not exist; give an existing folder or file")
        if not 16 <= self.max_tokens <= 1024:
            raise MineError(
                f"--max-tokens {self.max_tokens}: use 16..1024 (the model's context is 1024)"
            )
        if not 0 <= self.min_params <= self.max_params:
            raise MineError(
                f"--min-params {self.min_params} / --max-params {self.max_params}: "
                "need 0 <= min <= max"
            )


@dataclass
class Summary:
    """Counts of one mining run (per root and in total)."""

    files_read: int = 0
    files_skipped: Counter[str] = field(default_factory=Counter)
    candidates: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, other: Summary) -> None:
        self.files_read += other.files_read
        self.files_skipped.update(other.files_skipped)
        self.candidates += other.candidates
        self.kept += other.kept
        self.dropped.update(other.dropped)

    def to_json(self) -> dict[str, Any]:
        return {
            "files_read": self.files_read,
            "files_skipped": dict(sorted(self.files_skipped.items())),
            "candidates": self.candidates,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
        }

    def lines(self) -> list[str]:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.files_skipped.items())) or "none"
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        return [
            f"files read: {self.files_read} (skipped: {skipped})",
            f"candidates: {self.candidates}",
            f"kept: {self.kept}",
            f"dropped: {dropped}",
        ]


@dataclass(frozen=True)
class MinedSample:
    """A kept pair: the test sample, its generation prompt, and their provenance."""

    test: Sample
    generation: Sample
    provenance: dict[str, Any]
    call_line: str


@dataclass(frozen=True)
class MineResult:
    """The kept pairs in mining order, the total summary, and one summary per root."""

    samples: tuple[MinedSample, ...]
    summary: Summary
    per_root: tuple[tuple[str, Summary], ...]


def _normalised(code: str) -> str:
    return re.sub(r"\s+", " ", code).strip()


def _token_counter() -> Callable[[str], int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(_TOKENIZER))
    return lambda text: len(tok.encode(text).ids)


def _candidates(text: str, language: str) -> Iterator[Candidate | Drop]:
    if language == "python":
        from plip_nn.corpus.mine.python import python_candidates

        return python_candidates(text)
    from plip_nn.corpus.mine.rust import rust_candidates

    return rust_candidates(text)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _annotate(c: Candidate, language: Language, sid: str, gid: str) -> tuple[Sample, Sample]:
    """(test sample, generation sample); CorpusError when the annotator disagrees."""
    test = annotate_sample({"id": sid, "code": c.code, "function": c.name}, language, "test")
    if test.marker_char_pos != c.marker_char_pos:
        raise CorpusError(
            f"annotator marker at {test.marker_char_pos}, miner's at {c.marker_char_pos}"
        )
    if language == "python":
        prompt = c.code[: test.marker_char_pos] + PY_GENERATION_SUFFIX
        raw: dict[str, Any] = {"id": gid, "code": prompt, "function": c.name, "source": c.code}
    else:
        raw = {"id": gid, "code": c.prompt, "function": c.name}
    gen = annotate_sample(raw, language, "generation")
    if gen.target_char_positions != test.target_char_positions:
        raise CorpusError("prompt targets differ from the sample's")
    return test, gen


def _mine_root(
    root: Path, cfg: MineConfig, count: Callable[[str], int], seen: set[str]
) -> tuple[list[MinedSample], Summary]:
    s = Summary()
    out: list[MinedSample] = []
    for f in source_files(root, _SUFFIX[cfg.language]):
        if f"{f.root.name}/{f.rel}" in cfg.exclude_files:
            s.files_skipped["excluded"] += 1
            continue
        text, why = read_source(f.path)
        if text is None:
            s.files_skipped[str(why)] += 1
            continue
        s.files_read += 1
        for c in _candidates(text, cfg.language):
            if isinstance(c, Drop):
                if c.reason.startswith("file_"):
                    s.files_skipped[c.reason.removeprefix("file_")] += 1
                    continue
                s.candidates += 1
                s.dropped[c.reason] += 1
                continue
            s.candidates += 1
            reason, kept = _filter(c, f.path, f.root, cfg, count, seen)
            if kept is None:
                s.dropped[reason] += 1
            else:
                s.kept += 1
                out.append(kept)
    return out, s


def _filter(
    c: Candidate,
    path: Path,
    root: Path,
    cfg: MineConfig,
    count: Callable[[str], int],
    seen: set[str],
) -> tuple[str, MinedSample | None]:
    if c.name in cfg.exclude_names:
        return "excluded_name", None
    if not cfg.min_params <= c.n_params <= cfg.max_params:
        return "params", None
    if count(c.code) > cfg.max_tokens:
        return "tokens", None
    norm = _normalised(c.code)
    if norm in seen:
        return "duplicate", None
    sha = hashlib.sha256(c.code.encode("utf-8")).hexdigest()
    prov = provenance(path, root, c.line, sha)
    stem = _safe(f"{prov['package']}_{c.name}_{sha[:8]}")
    p, g = _PREFIX[cfg.language]
    try:
        test, gen = _annotate(c, cfg.language, f"{p}_{stem}", f"{g}_{stem}")
    except (CorpusError, ValueError):
        return "annotation", None
    seen.add(norm)
    return "", MinedSample(test, gen, prov, c.call_line)


def mine(cfg: MineConfig, *, token_counter: Callable[[str], int] | None = None) -> MineResult:
    """Mine every root of ``cfg`` in order; the first sample of a normalised text wins.

    Raises:
        MineError: No file of the language under the roots (nothing to mine).
    """
    count = token_counter or _token_counter()
    seen: set[str] = set()
    total = Summary()
    samples: list[MinedSample] = []
    per_root = []
    for root in cfg.paths:
        got, s = _mine_root(root, cfg, count, seen)
        samples += got
        total.add(s)
        per_root.append((str(root), s))
    if total.files_read == 0 and not total.files_skipped:
        where = ", ".join(str(p) for p in cfg.paths)
        raise MineError(
            f"no {_SUFFIX[cfg.language]} file under {where}; check the PATH and --language"
        )
    return MineResult(tuple(samples), total, tuple(per_root))


def corpus_json(samples: Sequence[MinedSample], language: str, summary: Any) -> dict[str, Any]:
    """Our corpus format; each entry carries ``provenance`` (ignored when loading)."""
    tests, gens = _LISTS[language]
    out: dict[str, Any] = {"_format_version": FORMAT_VERSION, "_mined": summary}
    out[tests] = [{**m.test.to_json(), "provenance": m.provenance} for m in samples]
    out[gens] = [{**m.generation.to_json(), "provenance": m.provenance} for m in samples]
    return out


def write_mined(result: MineResult, cfg: MineConfig, out: Path) -> None:
    """Write the mined corpus (deterministic: same trees and flags, same bytes)."""
    summary = {
        "language": cfg.language,
        "max_tokens": cfg.max_tokens,
        "params": [cfg.min_params, cfg.max_params],
        "roots": [{"root": Path(r).name, **s.to_json()} for r, s in result.per_root],
    }
    data = corpus_json(result.samples, cfg.language, summary)
    atomic_write_text(out, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
