"""The causal triangle: knockout effect × steering effect → the seed's four interpretations.

Decision rule (per model and language; α = ``alpha``):

* **Knockout effect** ("is the attention necessary?"). With generations holding ``knockout`` and
  ``random_control``: exact McNemar on ``preserved``, paired by sample, ``random_control`` →
  ``knockout``; predicted = a significant *drop* under knockout. Without generations: Wilcoxon
  signed-rank on per-sample KL(baseline ‖ ·), ``knockout`` vs ``random_control`` (``kind ==
  "test"`` records, paired by sample and layer); predicted = a significantly *larger* KL under
  knockout. ``random_control`` is matched to the knockout on edge count and removed attention
  mass (``experiments.conditions``). The other test, when present, is supporting evidence.
* **Steering effect** ("is the attention malleable?"). Exact McNemar on ``preserved`` from
  generations, ``baseline`` → each of ``set_value_calibrated`` and ``scale_2`` present;
  predicted = a significant *rise* in preservation under any of them. The manipulation check
  (did the edit move the attention?) is paired: Wilcoxon signed-rank of ``attn_achieved`` vs
  ``attn_baseline`` of the same rows, with the paired t and d_z as support. Without
  generations the steering effect cannot be judged (inconclusive).
* The deciding p-values are Bonferroni-corrected over the deciding tests of the outcome
  (1 knockout test + the steering tests; :mod:`analysis.families`); a test is significant when
  p_adj < α. A p-value of 0 is a p-value.
* Each effect is one of ``EFFECTS``: **predicted** (significant in the predicted direction),
  **opposite** (significant in the other direction: reported as such, never as "no effect"),
  **none** (not significant, and powered), **inconclusive** (not significant with low power:
  fewer than ``min_pairs`` pairs, or an exact McNemar test that could not have reached
  p_adj < α even if every pair with room to move had moved -- room = pairs preserved under
  ``random_control`` for knockout, pairs *not* preserved at baseline for steering; the
  smallest attainable exact p with r such pairs is 2·0.5^r). When one steering condition
  rises and another drops, the effect is predicted and the drop is named in the direction.

Outcome matrix (seed, "3.2 Outcome Matrix", extended): predicted × predicted → "causal and
malleable", predicted × none → "causal one-way", none × predicted → "confounded", none × none
→ "epiphenomenal"; any opposite effect → an "opposite direction" outcome that names the side
(it takes precedence over low power on the other side, since it is a finding); otherwise
either side inconclusive → "inconclusive (low power)". ``interpretation_table()`` lists all
sixteen cells.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.families import bonferroni
from analysis.hypothesis import (
    TestResult,
    cohens_d,
    mcnemar_from_pairs,
    mcnemar_odds_ratio,
    paired_t,
    wilcoxon_signed_rank,
)
from analysis.pairing import paired

__all__ = [
    "EFFECTS",
    "INCONCLUSIVE",
    "INTERPRETATIONS",
    "TriangleOutcome",
    "TriangleTest",
    "classify",
    "classify_all",
    "interpret",
    "interpretation_table",
]

log = logging.getLogger(__name__)

Effect = Literal["predicted", "none", "opposite", "inconclusive"]
EFFECTS: tuple[Effect, ...] = ("predicted", "none", "opposite", "inconclusive")
EFFECT_WORDS: dict[str, str] = {
    "predicted": "in the predicted direction",
    "none": "no effect (powered)",
    "opposite": "opposite direction",
    "inconclusive": "inconclusive (low power)",
}
INTERPRETATIONS: dict[tuple[bool, bool], str] = {
    (True, True): "causal and malleable",
    (True, False): "causal one-way",
    (False, True): "confounded",
    (False, False): "epiphenomenal",
}
INCONCLUSIVE = "inconclusive (low power)"
OPPOSITE_KNOCKOUT = "opposite direction (knockout)"
OPPOSITE_STEERING = "opposite direction (steering)"
OPPOSITE_BOTH = "opposite direction (knockout and steering)"
STEERING_CONDITIONS = ("set_value_calibrated", "scale_2")


def interpret(knockout: str, steering: str) -> str:
    """The outcome for one (knockout effect, steering effect) pair of ``EFFECTS``."""
    for e in (knockout, steering):
        if e not in EFFECTS:
            raise ValueError(f"effect {e!r} is not one of {EFFECTS}")
    if knockout == "opposite" and steering == "opposite":
        return OPPOSITE_BOTH
    if knockout == "opposite":
        return OPPOSITE_KNOCKOUT
    if steering == "opposite":
        return OPPOSITE_STEERING
    if "inconclusive" in (knockout, steering):
        return INCONCLUSIVE
    return INTERPRETATIONS[(knockout == "predicted", steering == "predicted")]


def interpretation_table() -> pd.DataFrame:
    """All sixteen (knockout effect, steering effect) cells with their outcome."""
    return pd.DataFrame(
        [
            {
                "knockout effect": EFFECT_WORDS[k],
                "steering effect": EFFECT_WORDS[s],
                "outcome": interpret(k, s),
            }
            for k in EFFECTS
            for s in EFFECTS
        ]
    )


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
        direction: sign of the observed change condition − reference (+1, −1, 0): of c − b
            for McNemar, of the signed-rank sum W+ − W− for Wilcoxon (whose median difference
            can be 0 while the test is significant).
    """

    role: Literal["knockout", "steering", "manipulation"]
    condition: str
    reference: str
    measure: str
    result: TestResult
    p_adjusted: float | None = None
    decides: bool = False
    direction: int = 0


@dataclass(frozen=True, kw_only=True)
class TriangleOutcome:
    """The classified causal triangle for one model and language.

    Attributes:
        model, language: what was classified.
        alpha: significance level of the decision.
        knockout_effect / steering_effect: one of ``EFFECTS``.
        knockout_direction / steering_direction: plain words on the observed direction.
        interpretation: the outcome (``interpret``).
        n_pairs: paired samples behind the knockout and steering decisions.
        tests: every test run, deciding and supporting.
        rule: the decision rule in words (for the report).
        power: the power rule that applied to each side, in words.
        family_size: deciding tests the Bonferroni correction divided α by.
        d_z: paired standardized effect of the manipulation check per steering condition.
    """

    model: str
    language: str
    alpha: float
    knockout_effect: Effect
    steering_effect: Effect
    knockout_direction: str
    steering_direction: str
    interpretation: str
    n_pairs: dict[str, int] = field(default_factory=dict)
    tests: tuple[TriangleTest, ...] = ()
    rule: str = ""
    power: dict[str, str] = field(default_factory=dict)
    family_size: int = 1
    d_z: dict[str, float] = field(default_factory=dict)


def _select(df: pd.DataFrame, model: str, language: str) -> pd.DataFrame:
    return df[(df["model"] == model) & (df["language"] == language)]


def _min_exact_p(room: int) -> float:
    return min(1.0, 2 * 0.5**room)


def _tests_only(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["kind"] == "test"] if "kind" in df else df


def _sign(x: float) -> int:
    return int(np.sign(x))


def _rank_sign(diff: pd.Series) -> int:
    """Sign of W+ − W− of the Wilcoxon signed-rank test (zeros dropped, average ranks)."""
    d = diff.to_numpy(dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 0
    ranks = rankdata(np.abs(d))
    return _sign(float(ranks[d > 0].sum() - ranks[d < 0].sum()))


def _odds(before: pd.Series, after: pd.Series) -> TestResult:
    """Conditional odds ratio of paired booleans (after-only positives / before-only)."""
    x, y = before.astype(bool), after.astype(bool)
    return mcnemar_odds_ratio(int((x & ~y).sum()), int((~x & y).sum()))


def _knockout_tests(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None
) -> tuple[list[TriangleTest], int, int | None]:
    """(tests with the deciding one first, its pair count, room for a drop or None)."""
    tests: list[TriangleTest] = []
    room: int | None = None
    n = 0
    if gens is not None and {"knockout", "random_control"} <= set(gens["condition"]):
        pairs = paired(gens, "preserved", "knockout", "random_control")
        if len(pairs):
            ref = pairs["ref"].astype(bool)
            res = mcnemar_from_pairs(ref, pairs["cond"].astype(bool))
            tests.append(
                TriangleTest(role="knockout", condition="knockout", reference="random_control",
                             measure="preserved", result=res, decides=True,
                             direction=_sign(res.effect))
            )  # fmt: skip
            tests.append(
                TriangleTest(role="knockout", condition="knockout", reference="random_control",
                             measure="preserved", result=_odds(ref, pairs["cond"]))
            )  # fmt: skip
            n, room = len(pairs), int(ref.sum())
    if recs is not None and {"knockout", "random_control"} <= set(recs["condition"]):
        pairs = paired(
            _tests_only(recs), "kl", "knockout", "random_control", ["sample_id", "layer"]
        )
        if len(pairs):
            res = wilcoxon_signed_rank(pairs["cond"], pairs["ref"])
            decides = not tests
            tests.append(
                TriangleTest(role="knockout", condition="knockout", reference="random_control",
                             measure="kl", result=res, decides=decides,
                             direction=_rank_sign(pairs["cond"] - pairs["ref"]))
            )  # fmt: skip
            if decides:
                n = len(pairs)
    tests.sort(key=lambda t: not t.decides)
    return tests, n, room


def manipulation_tests(rows: pd.DataFrame) -> tuple[list[TestResult], float | None]:
    """Paired manipulation check on one condition's rows: (Wilcoxon, paired t), d_z.

    ``attn_achieved`` vs ``attn_baseline`` of the same rows; tests undefined on the data
    (e.g. no spread) are left out and logged.
    """
    rows = rows.dropna(subset=["attn_achieved", "attn_baseline"])
    out: list[TestResult] = []
    d_z: float | None = None
    if len(rows) < 2:
        return out, d_z
    a, b = rows["attn_achieved"], rows["attn_baseline"]
    out.append(wilcoxon_signed_rank(a, b))
    for what, fn in (("paired t", paired_t), ("d_z", None)):
        try:
            if fn is None:
                d_z = cohens_d(a, b, paired=True)
            else:
                out.append(fn(a, b))
        except ValueError as exc:
            log.info("manipulation %s skipped: %s", what, exc)
    return out, d_z


def _steering_tests(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None
) -> tuple[list[TriangleTest], dict[str, tuple[int, int]], dict[str, float]]:
    """(tests, {condition: (pairs, room for a rise)}, {condition: d_z}) for steering."""
    tests: list[TriangleTest] = []
    info: dict[str, tuple[int, int]] = {}
    dz: dict[str, float] = {}
    for cond in STEERING_CONDITIONS:
        if gens is not None and {cond, "baseline"} <= set(gens["condition"]):
            pairs = paired(gens, "preserved", cond, "baseline")
            if len(pairs):
                base = pairs["ref"].astype(bool)
                res = mcnemar_from_pairs(base, pairs["cond"].astype(bool))
                tests.append(
                    TriangleTest(role="steering", condition=cond, reference="baseline",
                                 measure="preserved", result=res, decides=True,
                                 direction=_sign(res.effect))
                )  # fmt: skip
                tests.append(
                    TriangleTest(role="steering", condition=cond, reference="baseline",
                                 measure="preserved", result=_odds(base, pairs["cond"]))
                )  # fmt: skip
                info[cond] = (len(pairs), int((~base).sum()))
        if recs is not None:
            results, d = manipulation_tests(_tests_only(recs[recs["condition"] == cond]))
            for res in results:
                tests.append(
                    TriangleTest(role="manipulation", condition=cond,
                                 reference="baseline attention", measure="attention", result=res)
                )  # fmt: skip
            if d is not None:
                dz[cond] = d
    return tests, info, dz


def _significant(t: TriangleTest, alpha: float) -> bool:
    assert t.p_adjusted is not None
    return t.p_adjusted < alpha


def classify(
    records: pd.DataFrame | None,
    generations: pd.DataFrame | None,
    *,
    model: str | None = None,
    language: str | None = None,
    alpha: float = 0.05,
    min_pairs: int = 10,
    family_size: int | None = None,
) -> TriangleOutcome:
    """Classify the causal triangle of one model and language (rule in the module docstring).

    Args:
        records: ``records.parquet`` rows (or None).
        generations: ``generations.parquet`` rows (or None).
        model, language: which to classify; may be omitted when the tables hold only one.
        alpha: significance level for the (Bonferroni-adjusted) deciding tests.
        min_pairs: below this many pairs a non-significant test is inconclusive.
        family_size: Bonferroni m to use instead of this outcome's own deciding tests (a
            study-wide correction over several models and languages); must be at least the
            number of deciding tests here.
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
    st_tests, st_info, dz = _steering_tests(recs, gens)
    deciding = [t for t in (*ko_tests, *st_tests) if t.decides]
    m = max(len(deciding), 1)
    if family_size is not None:
        if family_size < m:
            raise ValueError(f"family_size={family_size} is below the {m} deciding tests here")
        m = family_size
    raw = [float(t.result.pvalue) for t in deciding if t.result.pvalue is not None]
    if len(raw) != len(deciding):
        raise ValueError("a deciding test has no p-value; the decision needs one")
    adj = [min(1.0, p * m) for p in raw] if family_size is not None else list(bonferroni(raw))
    adjusted = {id(t): float(a) for t, a in zip(deciding, adj, strict=True)}
    alpha_adj = alpha / m

    def _adj(t: TriangleTest) -> TriangleTest:
        return replace(t, p_adjusted=adjusted[id(t)]) if t.decides else t

    ko_tests = [_adj(t) for t in ko_tests]
    st_tests = [_adj(t) for t in st_tests]
    power: dict[str, str] = {}

    # Knockout decision.
    ko_effect: Effect
    ko_dec = next((t for t in ko_tests if t.decides), None)
    if ko_dec is None:
        ko_effect, ko_dir = "inconclusive", "no knockout vs random_control data"
        power["knockout"] = "no deciding test"
    else:
        eff = ko_dec.result.effect
        if ko_dec.measure == "preserved":
            predicted = ko_dec.direction < 0
            ko_dir = f"preservation {eff:+.3f} under knockout vs random_control"
        else:
            predicted = ko_dec.direction > 0
            ko_dir = f"median KL difference knockout - random_control {eff:+.4g} nats"
        low_power = ko_n < min_pairs or (ko_room is not None and _min_exact_p(ko_room) >= alpha_adj)
        power["knockout"] = (
            f"{ko_n} pairs (need >= {min_pairs})"
            + (
                f"; {ko_room} pairs preserved under random_control could drop "
                f"(smallest attainable p {_min_exact_p(ko_room):.3g} vs alpha_adj {alpha_adj:.3g})"
                if ko_room is not None
                else ""
            )
            + ("; low power" if low_power else "; powered")
        )
        if _significant(ko_dec, alpha) and ko_dec.direction != 0:
            ko_effect = "predicted" if predicted else "opposite"
            ko_dir += (
                " (significant, predicted direction)"
                if predicted
                else " (significant, OPPOSITE to the predicted direction)"
            )
        else:
            ko_effect = "inconclusive" if low_power else "none"

    # Steering decision.
    st_effect: Effect
    st_dec = [t for t in st_tests if t.decides]
    if not st_dec:
        st_effect, st_dir = (
            "inconclusive",
            "no steering generations (preservation cannot be judged)",
        )
        power["steering"] = "no deciding test"
    else:
        st_dir = "; ".join(
            f"preservation {t.result.effect:+.3f} under {t.condition} vs baseline" for t in st_dec
        )
        improved = [t for t in st_dec if _significant(t, alpha) and t.direction > 0]
        harmed = [t for t in st_dec if _significant(t, alpha) and t.direction < 0]
        powered = [
            c
            for c, (n, room) in st_info.items()
            if n >= min_pairs and _min_exact_p(room) < alpha_adj
        ]
        power["steering"] = "; ".join(
            f"{c}: {n} pairs, {room} not preserved at baseline could rise (smallest attainable "
            f"p {_min_exact_p(room):.3g} vs alpha_adj {alpha_adj:.3g}) -> "
            + ("powered" if c in powered else "low power")
            for c, (n, room) in st_info.items()
        )
        if improved:
            st_effect = "predicted"
        elif harmed:
            st_effect = "opposite"
        else:
            st_effect = "none" if powered else "inconclusive"
        if harmed:
            st_dir += (
                " (significant drop, OPPOSITE to the predicted direction, for "
                + ", ".join(t.condition for t in harmed)
                + ")"
            )
        if improved:
            st_dir += " (significant rise for " + ", ".join(t.condition for t in improved) + ")"

    interpretation = interpret(ko_effect, st_effect)
    n_pairs = {"knockout": ko_n, **{c: n for c, (n, _) in st_info.items()}}
    ko_test = (
        "exact McNemar on preserved"
        if ko_dec is not None and ko_dec.measure == "preserved"
        else "Wilcoxon signed-rank on KL"
    )
    rule = (
        f"alpha={alpha}; Bonferroni over {m} deciding test(s) (alpha_adj={alpha_adj:.4g}); "
        f"knockout: {ko_test} knockout vs the mass-matched random_control, predicted = "
        "significant drop in preservation / rise in KL; "
        f"steering: exact McNemar on preserved vs baseline ({', '.join(st_info) or 'none'}), "
        "predicted = significant rise; a significant change the other way is 'opposite'; "
        f"inconclusive when non-significant with < {min_pairs} pairs or too few pairs with "
        "room to move"
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
        power=power,
        family_size=m,
        d_z=dz,
    )
    log.info("%s/%s: %s", model, language, interpretation)
    return outcome


def classify_all(
    records: pd.DataFrame | None,
    generations: pd.DataFrame | None,
    *,
    alpha: float = 0.05,
    min_pairs: int = 10,
    study_wide: bool = False,
) -> list[TriangleOutcome]:
    """``classify`` for every (model, language) present, sorted by model then language.

    ``study_wide``: Bonferroni over the deciding tests of *every* (model, language) together
    (the whole outcome matrix as one family) instead of within each outcome.
    """
    tables = [t for t in (records, generations) if t is not None and len(t)]
    combos = sorted(
        {(m, lang) for t in tables for m, lang in zip(t["model"], t["language"], strict=True)}
    )
    outs = [
        classify(records, generations, model=m, language=lang, alpha=alpha, min_pairs=min_pairs)
        for m, lang in combos
    ]
    if not study_wide:
        return outs
    total = sum(sum(t.decides for t in o.tests) for o in outs)
    return [
        classify(records, generations, model=m, language=lang, alpha=alpha,
                 min_pairs=min_pairs, family_size=max(total, 1))
        for m, lang in combos
    ]  # fmt: skip
