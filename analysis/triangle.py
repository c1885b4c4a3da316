"""The causal triangle: knockout effect × steering effect → the seed's four interpretations.

Decision rule (per model and language; α = ``alpha``):

* **Knockout effect** ("is the attention necessary?"). With generations holding ``knockout`` and
  ``random_control``: exact McNemar on ``preserved``, paired by sample, ``random_control`` →
  ``knockout``; an effect is a significant *drop* under knockout. Without generations: Wilcoxon
  signed-rank on per-sample KL(baseline ‖ ·), ``knockout`` vs ``random_control`` (``kind ==
  "test"`` records, paired by sample and layer); an effect is a significantly *larger* KL
  under knockout. The other test, when present, is reported as supporting evidence.
* **Steering effect** ("is the attention malleable?"). Exact McNemar on ``preserved`` from
  generations, ``baseline`` → each of ``set_value_calibrated`` and ``scale_2`` present; an
  effect is a significant *rise* in preservation under any of them. Welch t on the attention
  level (``attn_achieved`` under the condition vs ``attn_baseline``) is reported as the
  manipulation check. Without generations the steering effect cannot be judged (inconclusive).
* The deciding p-values are Bonferroni-corrected over the deciding tests of the outcome
  (1 knockout test + the steering tests); an effect needs p_adj < α in the predicted
  direction. A significant change in the opposite direction counts as "no effect" (noted).
* **Inconclusive (low power)** instead of "no effect" when a non-significant test had fewer
  than ``min_pairs`` pairs, or when the exact McNemar test could not have reached p_adj < α
  even if every pair with room to move had moved (room = pairs preserved under
  ``random_control`` for knockout, pairs *not* preserved at baseline for steering; the
  smallest attainable exact p with r such pairs is 2·0.5^r).

Outcome matrix (seed, "3.2 Outcome Matrix"): effect × improvement → "causal and malleable",
effect × none → "causal one-way", none × improvement → "confounded", none × none →
"epiphenomenal"; either side inconclusive → "inconclusive (low power)".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from analysis.hypothesis import TestResult, mcnemar_from_pairs, welch_t, wilcoxon_signed_rank

__all__ = ["INTERPRETATIONS", "TriangleOutcome", "TriangleTest", "classify", "classify_all"]

log = logging.getLogger(__name__)

INTERPRETATIONS: dict[tuple[bool, bool], str] = {
    (True, True): "causal and malleable",
    (True, False): "causal one-way",
    (False, True): "confounded",
    (False, False): "epiphenomenal",
}
INCONCLUSIVE = "inconclusive (low power)"
STEERING_CONDITIONS = ("set_value_calibrated", "scale_2")


@dataclass(frozen=True, kw_only=True)
class TriangleTest:
    """One test behind an outcome.

    Attributes:
        role: ``knockout`` / ``steering`` (deciding or supporting) or ``manipulation``.
        condition: the compared condition; reference: what it is compared with.
        measure: ``preserved``, ``kl`` or ``attention``.
        result: the test.
        p_adjusted: Bonferroni-adjusted p over the deciding tests (None when not deciding).
        decides: whether the outcome's decision rests on this test.
    """

    role: Literal["knockout", "steering", "manipulation"]
    condition: str
    reference: str
    measure: str
    result: TestResult
    p_adjusted: float | None = None
    decides: bool = False


@dataclass(frozen=True, kw_only=True)
class TriangleOutcome:
    """The classified causal triangle for one model and language.

    Attributes:
        model, language: what was classified.
        alpha: significance level of the decision.
        knockout_effect / steering_effect: True / False, or None when inconclusive.
        knockout_direction / steering_direction: plain words on the observed direction.
        interpretation: one of the four seed interpretations or ``INCONCLUSIVE``.
        n_pairs: paired samples behind the knockout and steering decisions.
        tests: every test run, deciding and supporting.
        rule: the decision rule in words (for the report).
    """

    model: str
    language: str
    alpha: float
    knockout_effect: bool | None
    steering_effect: bool | None
    knockout_direction: str
    steering_direction: str
    interpretation: str
    n_pairs: dict[str, int] = field(default_factory=dict)
    tests: tuple[TriangleTest, ...] = ()
    rule: str = ""


def _select(df: pd.DataFrame, model: str, language: str) -> pd.DataFrame:
    return df[(df["model"] == model) & (df["language"] == language)]


def _paired(df: pd.DataFrame, column: str, cond: str, ref: str, keys: list[str]) -> pd.DataFrame:
    """Rows of ``cond`` and ``ref`` joined on ``keys``: columns ``ref`` and ``cond``."""
    parts = []
    for name in (ref, cond):
        sub = df[df["condition"] == name]
        if "experiment" in sub and (sub["experiment"] == "triangle").any():
            sub = sub[sub["experiment"] == "triangle"]
        dup = sub.duplicated(keys)
        if dup.any():
            raise ValueError(
                f"condition {name!r} has several rows per {keys} "
                f"(e.g. {sub.loc[dup, keys].iloc[0].tolist()}); keep one row per sample"
            )
        parts.append(sub.set_index(keys)[column].rename(name))
    return pd.concat(parts, axis=1, join="inner").dropna()


def _min_exact_p(room: int) -> float:
    return min(1.0, 2 * 0.5**room)


def _knockout_tests(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None
) -> tuple[list[TriangleTest], int, int | None]:
    """(tests with the deciding one first, its pair count, room for a drop or None)."""
    tests: list[TriangleTest] = []
    room: int | None = None
    n = 0
    has_gen = gens is not None and {"knockout", "random_control"} <= set(gens["condition"])
    if has_gen:
        assert gens is not None
        pairs = _paired(gens, "preserved", "knockout", "random_control", ["sample_id"])
        if len(pairs):
            res = mcnemar_from_pairs(
                pairs["random_control"].astype(bool), pairs["knockout"].astype(bool)
            )
            tests.append(
                TriangleTest(
                    role="knockout",
                    condition="knockout",
                    reference="random_control",
                    measure="preserved",
                    result=res,
                    decides=True,
                )
            )
            n, room = len(pairs), int(pairs["random_control"].astype(bool).sum())
    if recs is not None and {"knockout", "random_control"} <= set(recs["condition"]):
        sub = recs[recs["kind"] == "test"] if "kind" in recs else recs
        pairs = _paired(sub, "kl", "knockout", "random_control", ["sample_id", "layer"])
        if len(pairs):
            res = wilcoxon_signed_rank(pairs["knockout"], pairs["random_control"])
            decides = not tests
            tests.append(
                TriangleTest(
                    role="knockout",
                    condition="knockout",
                    reference="random_control",
                    measure="kl",
                    result=res,
                    decides=decides,
                )
            )
            if decides:
                n = len(pairs)
    tests.sort(key=lambda t: not t.decides)
    return tests, n, room


def _steering_tests(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None
) -> tuple[list[TriangleTest], dict[str, tuple[int, int]]]:
    """(tests, {condition: (pairs, room for a rise)}) for the steering conditions present."""
    tests: list[TriangleTest] = []
    info: dict[str, tuple[int, int]] = {}
    for cond in STEERING_CONDITIONS:
        if gens is not None and {cond, "baseline"} <= set(gens["condition"]):
            pairs = _paired(gens, "preserved", cond, "baseline", ["sample_id"])
            if len(pairs):
                base = pairs["baseline"].astype(bool)
                res = mcnemar_from_pairs(base, pairs[cond].astype(bool))
                tests.append(
                    TriangleTest(
                        role="steering",
                        condition=cond,
                        reference="baseline",
                        measure="preserved",
                        result=res,
                        decides=True,
                    )
                )
                info[cond] = (len(pairs), int((~base).sum()))
        if recs is not None:
            rows = recs[recs["condition"] == cond].dropna(subset=["attn_achieved", "attn_baseline"])
            if len(rows) >= 2:
                try:
                    res = welch_t(rows["attn_achieved"], rows["attn_baseline"])
                except ValueError as exc:
                    log.info("manipulation check for %s skipped: %s", cond, exc)
                else:
                    tests.append(
                        TriangleTest(
                            role="manipulation",
                            condition=cond,
                            reference="baseline attention",
                            measure="attention",
                            result=res,
                        )
                    )
    return tests, info


def classify(
    records: pd.DataFrame | None,
    generations: pd.DataFrame | None,
    *,
    model: str | None = None,
    language: str | None = None,
    alpha: float = 0.05,
    min_pairs: int = 10,
) -> TriangleOutcome:
    """Classify the causal triangle of one model and language (rule in the module docstring).

    Args:
        records: ``records.parquet`` rows (or None).
        generations: ``generations.parquet`` rows (or None).
        model, language: which to classify; may be omitted when the tables hold only one.
        alpha: significance level for the (Bonferroni-adjusted) deciding tests.
        min_pairs: below this many pairs a non-significant test is inconclusive.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    tables = [t for t in (records, generations) if t is not None and len(t)]
    if not tables:
        raise ValueError("classify needs records or generations with rows; both are empty/None")
    for t in tables:
        missing = {"model", "language", "condition", "sample_id"} - set(t.columns)
        if missing:
            raise ValueError(f"table lacks columns {sorted(missing)} (see docs/RECORDS.md)")
    combos = sorted(
        {(m, lang) for t in tables for m, lang in zip(t["model"], t["language"], strict=True)}
    )
    if model is None or language is None:
        picks = [(m, lang) for m, lang in combos if model in (None, m) and language in (None, lang)]
        if len(picks) != 1:
            raise ValueError(f"pass model= and language=: the tables hold {picks or combos}")
        model, language = picks[0]
    if (model, language) not in combos:
        raise ValueError(f"no rows for model={model!r} language={language!r}; present: {combos}")
    recs = _select(records, model, language) if records is not None and len(records) else None
    gens = (
        _select(generations, model, language)
        if generations is not None and len(generations)
        else None
    )

    ko_tests, ko_n, ko_room = _knockout_tests(recs, gens)
    st_tests, st_info = _steering_tests(recs, gens)
    deciding = [t for t in (*ko_tests, *st_tests) if t.decides]
    m = max(len(deciding), 1)
    adjusted = {id(t): min(1.0, float(t.result.pvalue or 1.0) * m) for t in deciding}
    alpha_adj = alpha / m

    def _adj(t: TriangleTest) -> TriangleTest:
        if not t.decides:
            return t
        return TriangleTest(
            role=t.role,
            condition=t.condition,
            reference=t.reference,
            measure=t.measure,
            result=t.result,
            p_adjusted=adjusted[id(t)],
            decides=True,
        )

    ko_tests = [_adj(t) for t in ko_tests]
    st_tests = [_adj(t) for t in st_tests]

    # Knockout decision.
    ko_effect: bool | None
    ko_dec = next((t for t in ko_tests if t.decides), None)
    if ko_dec is None:
        ko_effect, ko_dir = None, "no knockout vs random_control data"
    else:
        eff = ko_dec.result.effect
        if ko_dec.measure == "preserved":
            predicted, ko_dir = eff < 0, f"preservation {eff:+.3f} under knockout vs random_control"
        else:
            predicted, ko_dir = (
                eff > 0,
                f"median KL difference knockout - random_control {eff:+.4g} nats",
            )
        sig = (ko_dec.p_adjusted or 1.0) < alpha
        low_power = ko_n < min_pairs or (ko_room is not None and _min_exact_p(ko_room) >= alpha_adj)
        if sig:
            ko_effect = predicted
            if not predicted:
                ko_dir += " (significant, opposite to the predicted direction)"
        else:
            ko_effect = None if low_power else False

    # Steering decision.
    st_effect: bool | None
    st_dec = [t for t in st_tests if t.decides]
    if not st_dec:
        st_effect, st_dir = None, "no steering generations (preservation cannot be judged)"
    else:
        st_dir = "; ".join(
            f"preservation {t.result.effect:+.3f} under {t.condition} vs baseline" for t in st_dec
        )
        improved = [t for t in st_dec if (t.p_adjusted or 1.0) < alpha and t.result.effect > 0]
        harmed = [t for t in st_dec if (t.p_adjusted or 1.0) < alpha and t.result.effect < 0]
        if improved:
            st_effect = True
        else:
            powered = [
                c
                for c, (n, room) in st_info.items()
                if n >= min_pairs and _min_exact_p(room) < alpha_adj
            ]
            st_effect = False if (powered or harmed) else None
        if harmed:
            st_dir += " (significant drop for " + ", ".join(t.condition for t in harmed) + ")"

    if ko_effect is None or st_effect is None:
        interpretation = INCONCLUSIVE
    else:
        interpretation = INTERPRETATIONS[(ko_effect, st_effect)]
    n_pairs = {"knockout": ko_n, **{c: n for c, (n, _) in st_info.items()}}
    rule = (
        f"alpha={alpha}; Bonferroni over {m} deciding test(s) (alpha_adj={alpha_adj:.4g}); "
        f"knockout: {'exact McNemar on preserved' if ko_dec is not None and ko_dec.measure == 'preserved' else 'Wilcoxon signed-rank on KL'} "
        f"knockout vs random_control, effect = significant in the predicted direction; "
        f"steering: exact McNemar on preserved vs baseline ({', '.join(st_info) or 'none'}), effect = significant rise; "
        f"inconclusive when non-significant with < {min_pairs} pairs or too few pairs with room to move"
    )
    outcome = TriangleOutcome(
        model=str(model),
        language=str(language),
        alpha=alpha,
        knockout_effect=ko_effect,
        steering_effect=st_effect,
        knockout_direction=ko_dir,
        steering_direction=st_dir,
        interpretation=interpretation,
        n_pairs=n_pairs,
        tests=(*ko_tests, *st_tests),
        rule=rule,
    )
    log.info("%s/%s: %s", model, language, interpretation)
    return outcome


def classify_all(
    records: pd.DataFrame | None,
    generations: pd.DataFrame | None,
    *,
    alpha: float = 0.05,
    min_pairs: int = 10,
) -> list[TriangleOutcome]:
    """``classify`` for every (model, language) present, sorted by model then language."""
    tables = [t for t in (records, generations) if t is not None and len(t)]
    combos = sorted(
        {(m, lang) for t in tables for m, lang in zip(t["model"], t["language"], strict=True)}
    )
    return [
        classify(records, generations, model=m, language=lang, alpha=alpha, min_pairs=min_pairs)
        for m, lang in combos
    ]
