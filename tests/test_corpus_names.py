"""The corpus never tests a function name the embedded model trained on (issue 29).

``scripts/corpus_sources/trained_names.py`` collects the names; ``scripts/build_corpus.py``
fails on them. The synthetic pool and the syllable shape need no training data; the real-code
names need the gathered training sources (``training_data/``, downloaded by the build).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import build_corpus  # noqa: E402
from corpus_sources import trained_names  # noqa: E402
from synthetic_code import NOUNS, SYLLABLES, VERBS, CodeGenerator  # noqa: E402

from plip_nn.corpus import load_corpus  # noqa: E402


def _names(
    python: frozenset[str] = frozenset(), rust: frozenset[str] = frozenset()
) -> trained_names.TrainedNames:
    pool, shape = trained_names.synthetic_names()
    return trained_names.TrainedNames(
        synthetic=pool, syllable_pattern=shape, python_code=frozenset(python),
        rust_code=frozenset(rust),
    )  # fmt: skip


def test_synthetic_pool_is_the_generators_name_pool() -> None:
    pool, _ = trained_names.synthetic_names()
    gen = CodeGenerator(seed=0, exclude=())
    assert set(gen.names) <= pool  # every name stage 1 could draw
    assert len(pool) == len(VERBS) * len(NOUNS) + len(VERBS)
    assert "count_words" in pool and "sum" in pool and "vowel_ratio" not in pool


def test_syllable_shape_matches_every_random_syllable_name() -> None:
    names = _names()
    gen = CodeGenerator(seed=3, exclude=(), random_names=True)
    drawn = [gen.random_identifier(words=(1, 2, 3), max_syllables=3) for _ in range(300)]
    assert all(names.syllable_pattern.fullmatch(n) for n in drawn)
    assert "copy-curriculum syllable name" in names.reasons(SYLLABLES[0] + SYLLABLES[-1])
    assert names.reasons("data")  # da + ta: a name the copy curriculum could draw
    assert not names.syllable_pattern.fullmatch("vowel_ratio")  # 'vo' + 'wel': 'wel' is none


def test_reasons_and_offending_list_each_source() -> None:
    names = _names(python=frozenset({"median"}), rust=frozenset({"gcd", "median"}))
    assert names.reasons("median") == ["def in the training stdlib", "fn in the training crates"]
    assert names.reasons("scale_price") == ["synthetic verb_noun pool"]
    assert names.reasons("greatest_divisor") == []
    bad = trained_names.offending({"py_a": "gcd", "py_b": "greatest_divisor"}, names)
    assert bad == ["py_a: gcd (fn in the training crates)"]


def test_defined_names_reads_def_and_fn() -> None:
    py = "def top():\n    pass\n\nclass A:\n    async def inner(self):\n        pass\n"
    rs = "pub fn alpha(x: u8) {}\nimpl B { fn beta<T>(&self) {} }\n"
    assert trained_names.defined_names([py], trained_names._PY_DEF) == {"top", "inner"}
    assert trained_names.defined_names([rs], trained_names._RS_FN) == {"alpha", "beta"}


def test_build_fails_naming_the_offending_samples() -> None:
    corpus = load_corpus()
    sample = corpus.select(language="python", kind="test")[0]
    assert sample.function is not None
    names = _names(python=frozenset({sample.function.name}))
    with pytest.raises(SystemExit, match=re.escape(f"{sample.id}: {sample.function.name}")):
        build_corpus.check_names(corpus, names)
    build_corpus.check_names(corpus, _names())  # the shipped corpus passes without real names


@pytest.mark.skipif(
    not (trained_names.DATA_DIR / "rust_tree").exists(),
    reason="training sources not gathered (scripts/build_corpus.py downloads them)",
)
def test_shipped_corpus_uses_no_trained_name() -> None:
    build_corpus.check_names(load_corpus(), trained_names.load_trained_names())
