"""Corpus checks: every problem in a file or a loaded corpus, one per sample and cause."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from plip_nn.corpus.io import (
    annotate_prompts,
    entries,
    entry_id,
    is_generation_prompts,
    read_json,
    resolve_corpus_path,
    sample_from_json,
)
from plip_nn.corpus.model import LISTS, Corpus, CorpusError, Problem, Sample

__all__ = ["check_corpus"]


def check_corpus(corpus_or_path: Corpus | str | Path) -> list[Problem]:
    """Every problem in a corpus: format, fields, ranges, duplicates, causally masked edges.

    A target character after the marker character is an edge the causal mask hides (the marker
    cannot attend to it), reported as ``masked``.

    Args:
        corpus_or_path: A loaded corpus, or a file in any supported format.

    Returns:
        The problems, empty when the corpus is fine.
    """
    if isinstance(corpus_or_path, Corpus):
        where = str(corpus_or_path.path or "<corpus>")
        return _masked_problems(corpus_or_path.samples, where)
    p = resolve_corpus_path(corpus_or_path)  # a shipped corpus by name: `real`
    try:
        data = read_json(p)
    except CorpusError as exc:
        return [Problem(path=str(p), sample_id="-", code="malformed_json", message=str(exc))]
    if is_generation_prompts(data):
        annotated, failed = annotate_prompts(data, p)
        return failed + _masked_problems(annotated, str(p))
    problems: list[Problem] = []
    samples = []
    ids: dict[str, str] = {}
    try:
        found = list(entries(data, p))
    except CorpusError as exc:
        return [Problem(path=str(p), sample_id="-", code="format", message=str(exc))]
    for key, i, entry in found:
        sid = entry_id(key, i, entry)
        if sid in ids:
            problems.append(
                Problem(
                    path=str(p),
                    sample_id=sid,
                    code="duplicate_id",
                    message=f"id also used in {ids[sid]}; give each sample a unique id",
                )
            )
        ids.setdefault(sid, f"{key}[{i}]")
        language, kind = LISTS[key]
        try:
            samples.append(sample_from_json(entry, language, kind))
        except ValueError as exc:
            msg = str(exc)
            code = (
                "missing_field"
                if msg.startswith("missing") or "lacks" in msg
                else "out_of_range"
                if "out of range" in msg
                else "bad_value"
            )
            problems.append(Problem(path=str(p), sample_id=sid, code=code, message=msg))
    return problems + _masked_problems(samples, str(p))


def _masked_problems(samples: Iterable[Sample], where: str) -> list[Problem]:
    out = []
    for s in samples:
        masked = s.masked_targets
        if masked:
            out.append(
                Problem(
                    path=where,
                    sample_id=s.id,
                    code="masked",
                    message=(
                        f"marker at char {s.marker_char_pos} precedes target chars "
                        f"{list(masked)}: those edges are masked by causality; put the marker "
                        "after the function"
                    ),
                )
            )
    return out
