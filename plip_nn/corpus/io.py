"""Corpus files: reading, loading, annotating, converting and writing them (format in the package doc)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from plip_nn.atomic import atomic_write_text
from plip_nn.corpus.model import (
    DEFAULT_CORPUS_PATH,
    FORMAT_VERSION,
    LISTS,
    Corpus,
    CorpusError,
    FunctionInfo,
    Kind,
    Language,
    Problem,
    Sample,
)
from plip_nn.corpus.python import annotate_python
from plip_nn.corpus.rust import annotate_rust

__all__ = [
    "annotate_file",
    "annotate_prompts",
    "annotate_sample",
    "convert_file",
    "convert_generation_prompts",
    "entries",
    "entry_id",
    "is_generation_prompts",
    "load_corpus",
    "read_json",
    "resolve_corpus_path",
    "sample_from_json",
]

logger = logging.getLogger(__name__)

_REQUIRED = ("id", "code", "marker_char_pos", "marker_pattern", "target_char_positions")


def annotate_sample(raw: Mapping[str, Any], language: Language, kind: Kind) -> Sample:
    """Annotate one ``{id, code}`` entry (optional ``function`` name hint, ``source``).

    Raises:
        CorpusError: Missing fields or unannotatable code; names the sample and why.
    """
    sample_id = raw.get("id")
    if not isinstance(sample_id, str) or not sample_id:
        raise CorpusError(f"entry {dict(raw)!r:.80}: 'id' must be a non-empty string")
    code = raw.get("code")
    if not isinstance(code, str) or not code:
        raise CorpusError(f"sample {sample_id}: 'code' must be a non-empty string")
    hint = raw.get("function")
    hint_name = hint.get("name") if isinstance(hint, Mapping) else hint
    if hint_name is not None and not isinstance(hint_name, str):
        raise CorpusError(f"sample {sample_id}: 'function' must be a name or an object with 'name'")
    if language == "python":
        source = raw.get("source")
        if source is None and isinstance(hint, Mapping):
            source = hint.get("source")
        ann = annotate_python(
            code, kind=kind, function=hint_name, source=source, sample_id=sample_id
        )
    else:
        ann = annotate_rust(code, kind=kind, function=hint_name, sample_id=sample_id)
    return Sample(
        id=sample_id,
        language=language,
        kind=kind,
        code=code,
        marker_char_pos=ann.marker_char_pos,
        marker_pattern=ann.marker_pattern,
        target_char_positions=ann.target_char_positions,
        function=ann.function,
    )


def read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
            "fix the JSON syntax"
        ) from None


def is_generation_prompts(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("prompts"), list)


def annotate_prompts(data: dict[str, Any], path: Path) -> tuple[list[Sample], list[Problem]]:
    """PLIP-rs generation prompts ``{prompts: [{id, prompt, category}]}`` -> Rust samples.

    Returns:
        The samples that annotate, and one ``unannotatable`` problem per prompt that does not.
    """
    samples, problems = [], []
    for i, entry in enumerate(data["prompts"]):
        sid = entry.get("id", f"prompt_{i}") if isinstance(entry, dict) else f"prompts[{i}]"
        if not isinstance(entry, dict) or "prompt" not in entry:
            msg = f"prompts[{i}]: missing field 'prompt'; add it"
            problems.append(
                Problem(path=str(path), sample_id=str(sid), code="missing_field", message=msg)
            )
            continue
        try:
            samples.append(
                annotate_sample({"id": sid, "code": entry["prompt"]}, "rust", "generation")
            )
        except CorpusError as exc:
            problems.append(_unannotatable(path, str(sid), exc))
    return samples, problems


def _unannotatable(path: Path, sample_id: str, exc: Exception) -> Problem:
    message = str(exc).removeprefix(f"sample {sample_id}: ")
    return Problem(path=str(path), sample_id=sample_id, code="unannotatable", message=message)


def convert_generation_prompts(data: dict[str, Any], path: Path) -> list[Sample]:
    """Like :func:`annotate_prompts`, but the first prompt that does not annotate raises.

    Raises:
        CorpusError: A prompt is malformed or cannot be annotated (named, with the reason).
    """
    samples, problems = annotate_prompts(data, path)
    if problems:
        raise CorpusError(str(problems[0]))
    return samples


def _function_from_json(raw: Any) -> FunctionInfo:
    if not isinstance(raw, dict):
        raise ValueError("'function' must be an object {name, params, arity, source}")
    missing = [k for k in ("name", "params", "arity", "source") if k not in raw]
    if missing:
        raise ValueError(f"'function' lacks {missing}; re-run `plip-nn corpus annotate`")
    params = raw["params"]
    if not isinstance(params, list):
        raise ValueError(f"function.params={params!r} must be a list of strings")
    return FunctionInfo(
        name=raw["name"], params=tuple(params), arity=raw["arity"], source=raw["source"]
    )


def sample_from_json(raw: Any, language: Language, kind: Kind) -> Sample:
    if not isinstance(raw, dict):
        raise ValueError(f"entry must be an object, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ValueError(
            f"missing field(s) {missing}; add them or run `plip-nn corpus annotate` on {{id, code}}"
        )
    targets = raw["target_char_positions"]
    if not isinstance(targets, list):
        raise ValueError(f"target_char_positions={targets!r} must be a list of ints")
    return Sample(
        id=raw["id"],
        language=language,
        kind=kind,
        code=raw["code"],
        marker_char_pos=raw["marker_char_pos"],
        marker_pattern=raw["marker_pattern"],
        target_char_positions=tuple(targets),
        function=_function_from_json(raw["function"]) if "function" in raw else None,
        provenance=raw.get("provenance"),
    )


def entries(data: Any, path: Path) -> Iterator[tuple[str, int, Any]]:
    """(list name, index, entry) of an our/universal-format file; format errors raise."""
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: top level must be an object with lists {list(LISTS)}")
    version = data.get("_format_version")
    has_lists = any(k in LISTS for k in data)
    if version is None and has_lists:
        raise CorpusError(
            f"{path}: the file has the sample lists ({', '.join(k for k in data if k in LISTS)}) "
            f'but no "_format_version"; add "_format_version": "{FORMAT_VERSION}" at the top '
            "level (the format these lists follow)"
        )
    if version != FORMAT_VERSION:
        raise CorpusError(
            f"{path}: _format_version={version!r}; expected {FORMAT_VERSION!r} "
            "(or a PLIP-rs generation prompts file: a top-level 'prompts' list)"
        )
    for key, value in data.items():
        if key.startswith("_"):
            continue
        if key not in LISTS:
            raise CorpusError(f"{path}: unknown list {key!r}; use one of {list(LISTS)}")
        if not isinstance(value, list):
            raise CorpusError(f"{path}: {key!r} must be a list of samples")
        for i, entry in enumerate(value):
            yield key, i, entry


def entry_id(key: str, i: int, entry: Any) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        return entry["id"]
    return f"{key}[{i}]"


def resolve_corpus_path(path: str | Path) -> Path:
    """``path``, or the shipped corpus it names (``real`` -> plip_nn/data/corpus/real.json)."""
    p = Path(path)
    named = DEFAULT_CORPUS_PATH.parent / f"{p.name}.json"
    if not p.exists() and p.suffix == "" and len(p.parts) == 1 and named.exists():
        return named
    return p


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Load a corpus: ours, PLIP-rs universal v2.0, or PLIP-rs generation prompts.

    Args:
        path: The JSON file; ``None`` loads :data:`DEFAULT_CORPUS_PATH`.

    Returns:
        The corpus. PLIP-rs generation prompts are annotated on the fly (Rust generation).

    Raises:
        CorpusError: Malformed file or sample; the message names the file, the sample and the fix.
    """
    p = resolve_corpus_path(path) if path is not None else DEFAULT_CORPUS_PATH
    data = read_json(p)
    if is_generation_prompts(data):
        return Corpus(tuple(convert_generation_prompts(data, p)), p)
    samples = []
    for key, i, entry in entries(data, p):
        language, kind = LISTS[key]
        try:
            samples.append(sample_from_json(entry, language, kind))
        except ValueError as exc:
            raise CorpusError(f"{p}: sample {entry_id(key, i, entry)}: {exc}") from None
    return Corpus(tuple(samples), p)


def _write_corpus(corpus: Corpus, out: Path) -> None:
    atomic_write_text(out, json.dumps(corpus.to_json(), indent=1, ensure_ascii=False) + "\n")


def annotate_file(in_path: str | Path, out_path: str | Path) -> tuple[Corpus, list[Problem]]:
    """Annotate ``{id, code}`` entries (any of our lists, or PLIP-rs generation prompts).

    Existing positions in the input are ignored and recomputed. Entries may carry a
    ``function`` name hint and, for Python generation prompts, ``source``. A sample that cannot
    be annotated (or repeats an id) is left out and reported; the others are written.

    Returns:
        The written corpus, and one problem per sample left out (empty when all annotated).

    Raises:
        CorpusError: Malformed input, or no sample could be annotated; nothing is written then.
    """
    src = Path(in_path)
    data = read_json(src)
    if not isinstance(data, dict):
        raise CorpusError(f"{src}: top level must be an object with lists {list(LISTS)}")
    samples: list[Sample] = []
    problems: list[Problem] = []
    if is_generation_prompts(data):
        samples, problems = annotate_prompts(data, src)
    else:
        for key, i, entry in entries({**data, "_format_version": FORMAT_VERSION}, src):
            language, kind = LISTS[key]
            sid = entry_id(key, i, entry)
            if not isinstance(entry, dict):
                msg = f"{key}[{i}]: entry must be an object {{id, code}}"
                problems.append(
                    Problem(path=str(src), sample_id=sid, code="bad_value", message=msg)
                )
                continue
            try:
                samples.append(annotate_sample(entry, language, kind))
            except (CorpusError, ValueError) as exc:
                problems.append(_unannotatable(src, sid, exc))
    kept: dict[str, Sample] = {}
    for s in samples:
        if s.id in kept:
            msg = "id used by an earlier sample; give each sample a unique id"
            problems.append(
                Problem(path=str(src), sample_id=s.id, code="duplicate_id", message=msg)
            )
        else:
            kept[s.id] = s
    if not kept:
        reasons = "".join(f"\n  {p}" for p in problems)
        raise CorpusError(f"{src}: no sample could be annotated; nothing written{reasons}")
    corpus = Corpus(tuple(kept.values()), Path(out_path))
    _write_corpus(corpus, Path(out_path))
    logger.info("annotated %d samples from %s into %s", len(corpus), src, out_path)
    return corpus, problems


def convert_file(in_path: str | Path, out_path: str | Path) -> Corpus:
    """Convert a PLIP-rs file (universal v2.0 or generation prompts) into our format.

    Universal samples keep PLIP-rs's positions (their Rust targets differ from our convention,
    see tests) and gain ``function`` from our annotator when it can find one. Generation
    prompts become ``rust_generation`` samples annotated by our annotator.

    Raises:
        CorpusError: Malformed input.
    """
    src = Path(in_path)
    data = read_json(src)
    if is_generation_prompts(data):
        samples = convert_generation_prompts(data, src)
    else:
        samples = []
        for s in load_corpus(src).samples:
            try:
                ann = (annotate_python if s.language == "python" else annotate_rust)(
                    s.code, kind=s.kind, sample_id=s.id
                )
                s = Sample(**{**s.__dict__, "function": ann.function})
            except CorpusError as exc:
                logger.warning("%s: no function info: %s", src, exc)
            samples.append(s)
    corpus = Corpus(tuple(samples), Path(out_path))
    _write_corpus(corpus, Path(out_path))
    return corpus
