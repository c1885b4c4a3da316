"""Function names the embedded model trained on; no corpus sample may test one of them.

A prompt whose function name the model has seen defined (and tested) in training can be
completed from memory instead of by copying the name from the prompt, so the corpus only uses
names that occur in none of its training sources:

* **Synthetic stage 1** (``scripts/synthetic_code.py``): every ``verb_noun`` of ``VERBS`` x
  ``NOUNS`` and every bare verb, the complete name pool of ``CodeGenerator``.
* **Copy curricula** (syllable names): a name whose every ``_``-part is 1-3 of the generator's
  ``SYLLABLES`` (``nux_viplo``, but also ``data`` or ``rotate``) may have been drawn, so it is
  refused by its shape. The other half of those random names join random identifier words
  (``cache_row_parse``); each combination is drawn rarely and paired with a random body, so
  they are not checked (see MODEL_CARD.md).
* **Real code** (the training files, the real-function copy documents are cut from them):
  every ``def`` name of the CPython standard library the model was trained on and every ``fn``
  name of its Debian crate sources, gathered by ``scripts/embedded/data.py`` exactly as training
  gathered them, train and validation files alike. The gathered sources must match the ones
  recorded in ``plip_nn/data/model/training_metrics.json`` (file and crate counts).

Names are refused across languages: a Python sample may not use a name the Rust code defines.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRICS = ROOT / "plip_nn" / "data" / "model" / "training_metrics.json"
DATA_DIR = ROOT / "training_data"

_PY_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+([A-Za-z_]\w*)", re.M)
_RS_FN = re.compile(r"\bfn\s+([A-Za-z_]\w*)")


@dataclass(frozen=True)
class TrainedNames:
    """The function names of each training source (see the module docstring)."""

    synthetic: frozenset[str]
    syllable_pattern: re.Pattern[str]
    python_code: frozenset[str]
    rust_code: frozenset[str]

    def reasons(self, name: str) -> list[str]:
        """Why ``name`` is refused (empty when it never occurred in training)."""
        out = []
        if name in self.synthetic:
            out.append("synthetic verb_noun pool")
        if self.syllable_pattern.fullmatch(name):
            out.append("copy-curriculum syllable name")
        if name in self.python_code:
            out.append("def in the training stdlib")
        if name in self.rust_code:
            out.append("fn in the training crates")
        return out


def synthetic_names() -> tuple[frozenset[str], re.Pattern[str]]:
    """The stage-1 ``verb_noun`` pool and the copy curriculum's syllable-name shape."""
    import synthetic_code as sc

    pool = {f"{v}_{n}" for v in sc.VERBS for n in sc.NOUNS} | set(sc.VERBS)
    syllable = "(?:" + "|".join(sorted(sc.SYLLABLES, key=len, reverse=True)) + ")"
    shape = re.compile(rf"{syllable}{{1,3}}(?:_{syllable}{{1,3}})*")
    return frozenset(pool), shape


def defined_names(texts: list[str], pattern: re.Pattern[str]) -> frozenset[str]:
    """Every name ``pattern`` captures in ``texts``."""
    names: set[str] = set()
    for text in texts:
        names.update(pattern.findall(text))
    return frozenset(names)


def _recorded_stdlib(metrics: dict) -> Path:
    match = re.search(r"\((/[^)]+)\)", metrics["data"]["python"]["name"])
    if not match:
        raise SystemExit(f"{METRICS}: no standard-library path in data.python.name")
    return Path(match.group(1))


def load_trained_names(data_dir: Path = DATA_DIR) -> TrainedNames:
    """Gather the training sources as ``scripts/embedded/data.py`` did and collect the names.

    Raises ``SystemExit`` when the gathered sources differ from the recorded ones.
    """
    from embedded.data import gather_python, gather_rust

    metrics = json.loads(METRICS.read_text(encoding="utf-8"))
    stdlib = _recorded_stdlib(metrics)
    if not stdlib.is_dir():
        raise SystemExit(
            f"training stdlib {stdlib} not found: run build_corpus.py with the interpreter "
            "the embedded model was trained with (see MODEL_CARD.md)"
        )
    py_files, _ = gather_python(stdlib)
    rs_files, rs_sources = gather_rust(data_dir)
    recorded = {(c["crate"], c["files"]) for c in metrics["data"]["rust"]}
    gathered = {(c["crate"], c["files"]) for c in rs_sources}
    if len(py_files) != metrics["data"]["python"]["files"] or recorded != gathered:
        raise SystemExit(
            f"gathered training sources differ from {METRICS}: python files {len(py_files)} "
            f"vs {metrics['data']['python']['files']}, crates {sorted(recorded ^ gathered)}; "
            f"delete {data_dir} and rerun"
        )
    synthetic, shape = synthetic_names()
    return TrainedNames(
        synthetic=synthetic,
        syllable_pattern=shape,
        python_code=defined_names(list(py_files.values()), _PY_DEF),
        rust_code=defined_names(list(rs_files.values()), _RS_FN),
    )


def offending(functions: dict[str, str], names: TrainedNames) -> list[str]:
    """``"sample_id: name (reasons)"`` for each sample (id -> tested name) using a trained name."""
    out = []
    for sample_id, name in functions.items():
        reasons = names.reasons(name)
        if reasons:
            out.append(f"{sample_id}: {name} ({', '.join(reasons)})")
    return out
