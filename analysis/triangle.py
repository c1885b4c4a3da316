"""The causal triangle by scope: knockout × steering → the seed's interpretations, extended.

Per model and language (α = ``alpha``, equivalence margin ``margin``):

* **Knockout, per scope** (rows/targets/layers; :mod:`plip_nn.scope`): with generations, the
  paired change in ``preserved``, knockout − random control, for each control draw: exact
  McNemar, Newcombe CIs (:mod:`analysis.equivalence`). Predicted = a significant *drop*. A
  draw's verdict is :func:`analysis.equivalence.classify_change`; the scope's verdict is the
  draws' common verdict, or *inconclusive* when the draws disagree (the result would depend
  on the control draw). Without generations, the Wilcoxon test of the per-prompt KL at the
  prediction, knockout vs control, decides (predicted = a significantly larger KL; there is no
  KL margin, so a null is inconclusive).
* **Reach gate** (:mod:`analysis.reach`): a scope whose knockout stays at the KL noise floor
  and leaves almost every generation unchanged **does not reach the output**; that, and never
  "no effect", is its verdict.
* **Steering**, in the default scope at the chosen layer: each of ``scale_2``,
  ``scale_calibrated`` and ``set_value_calibrated`` against ``baseline`` (paired change in
  ``preserved``; predicted = a rise). A condition decides only if its **manipulation check**
  passes: its achieved attention moved the intended way (Wilcoxon signed-rank of achieved vs
  baseline level, Bonferroni over the steering conditions, p_adj < α), and only if it reaches
  the output (the knockouts' reach gate, applied to its own KL, top-1 and generations). The Python SetValue
  condition sets Python to its own level: it is the roadmap's control and never decides. The
  effect is predicted if any deciding condition rises significantly, opposite if one drops and
  none rises, none if every deciding condition is equivalent to no change, else inconclusive.
* **Family**: the deciding tests of one model and language -- one knockout test per scope and
  the deciding steering tests -- are Bonferroni-corrected together (m = their number); every
  control draw is adjusted with that same m (the draws must agree, which only makes the
  decision stricter). :mod:`analysis.families` holds the correction.

Each (scope, language) cell interprets (knockout effect in that scope, steering effect):
predicted × predicted → "causal and malleable", predicted × none → "causal one-way",
none × predicted → "confounded", none × none → "epiphenomenal"; an opposite effect names its
side; "does not reach the output" when the knockout never reached it; a steering condition
whose edit does not reach the output (the same gate) does not decide, and when no steering
condition decides for that reason the steering side reads "does not reach the output", so the
cell never reads "epiphenomenal" on an edit that moved nothing; otherwise "inconclusive".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.equivalence import (
    EFFECTS,
    Effect,
    PairedDifference,
    classify_change,
    mcnemar_power,
    paired_difference,
)
from analysis.families import bonferroni
from analysis.hypothesis import TestResult, cohens_d, paired_t, wilcoxon_signed_rank
from analysis.pairing import paired
from analysis.reach import Reach, kl_floor, reach, token_identical
from analysis.scopes import scope_order, with_scope

__all__ = [
    "DECIDING_STEERING",
    "EFFECT_WORDS",
    "INCONCLUSIVE",
    "INTERPRETATIONS",
    "UNREACHED",
    "DrawResult",
    "KnockoutOutcome",
    "SteeringOutcome",
    "SteeringTest",
    "TriangleOutcome",
    "classify",
    "classify_all",
    "interpret",
    "interpretation_table",
    "manipulation_tests",
]

log = logging.getLogger(__name__)

EFFECT_WORDS: dict[str, str] = {
    "predicted": "in the predicted direction",
    "none": "no effect (equivalent within the margin)",
    "opposite": "opposite direction",
    "inconclusive": "inconclusive",
    "unreached": "the edit does not reach the output",
}
INTERPRETATIONS: dict[tuple[bool, bool], str] = {
    (True, True): "causal and malleable",
    (True, False): "causal one-way",
    (False, True): "confounded",
    (False, False): "epiphenomenal",
}
INCONCLUSIVE = "inconclusive"
UNREACHED = "the edit does not reach the output"
OPPOSITE_KNOCKOUT = "opposite direction (knockout)"
OPPOSITE_STEERING = "opposite direction (steering)"
OPPOSITE_BOTH = "opposite direction (knockout and steering)"
STEERING_UNREACHED = "inconclusive (steering does not reach the output)"
STEERING_UNREACHED_CAUSAL = "causal (knockout); steering does not reach the output"
DECIDING_STEERING = ("scale_2", "scale_calibrated", "set_value_calibrated")
"""The steering arms that may decide (others are the dose-response of H2)."""
SETVALUE_CONTROL_LANGUAGE = "python"
"""SetValue at the Python level is a no-op control in Python (the roadmap's control)."""


def interpret(knockout: str, steering: str) -> str:
    """The outcome of one (knockout effect, steering effect) pair of :data:`EFFECTS`."""
    for e in (knockout, steering):
        if e not in EFFECTS:
            raise ValueError(f"effect {e!r} is not one of {EFFECTS}")
    if knockout == "unreached":
        return UNREACHED
    if knockout == "opposite" and steering == "opposite":
        return OPPOSITE_BOTH
    if knockout == "opposite":
        return OPPOSITE_KNOCKOUT
    if steering == "opposite":
        return OPPOSITE_STEERING
    if steering == "unreached":
        return STEERING_UNREACHED_CAUSAL if knockout == "predicted" else STEERING_UNREACHED
    if "inconclusive" in (knockout, steering):
        return INCONCLUSIVE
    return INTERPRETATIONS[(knockout == "predicted", steering == "predicted")]


def interpretation_table() -> pd.DataFrame:
    """Every (knockout effect, steering effect) cell with its outcome."""
    return pd.DataFrame(
        [
            {"knockout effect": EFFECT_WORDS[k], "steering effect": EFFECT_WORDS[s],
             "outcome": interpret(k, s)}
            for k in EFFECTS
            for s in EFFECTS
        ]
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DrawResult:
    """One control draw's comparison with the knockout of a scope.

    Attributes:
        draw: the control draw.
        diff: paired change in ``preserved``, knockout − control (None without generations).
        kl: Wilcoxon signed-rank of KL at the prediction, knockout vs control (None without
            records); effect = median difference.
        kl_direction: sign of the rank sums (W+ − W−) of knockout − control KL.
        pvalue / p_adjusted: the deciding test's p (preservation when there are generations,
            else KL) and its Bonferroni adjustment over the family.
        effect / words: the draw's verdict and its reason.
    """

    draw: int
    diff: PairedDifference | None
    kl: TestResult | None
    kl_direction: int
    pvalue: float
    p_adjusted: float
    effect: Effect
    words: str


@dataclass(frozen=True, kw_only=True)
class KnockoutOutcome:
    """The knockout verdict of one scope in one language.

    Attributes:
        scope: the scope label (``rows/targets/layers``).
        effect / words: the verdict and its reason in words.
        measure: ``preserved`` (generations decide) or ``kl`` (single passes only).
        draws: one result per control draw (the first decides with the others).
        reach: whether the knockout reached the output.
        power: power of the exact McNemar test at α_adj to detect a ``margin`` drop, at the
            observed discordance (NaN without generations).
        knockout_rate / control_rate: preservation under knockout and the first control.
        n_pairs: pairs behind the first draw's decision.
    """

    scope: str
    effect: Effect
    words: str
    measure: str
    draws: tuple[DrawResult, ...]
    reach: Reach
    power: float
    knockout_rate: float
    control_rate: float
    n_pairs: int


@dataclass(frozen=True, kw_only=True)
class SteeringTest:
    """One steering condition against baseline.

    Attributes:
        arm / condition: the arm (``scale_2``) and its full condition name.
        role: ``deciding``, ``control`` (Python SetValue), ``not deciding`` (manipulation
            failed), or ``dose`` (H2 evidence only).
        intended: the intended direction of the attention change (+1 raise, −1 lower).
        manipulation: Wilcoxon of achieved vs baseline attention (None without records).
        manipulation_p_adjusted: Bonferroni over the steering conditions of this language.
        manipulation_ok: the attention moved the intended way, significantly.
        d_z: paired standardized effect of the manipulation.
        diff: paired change in ``preserved`` vs baseline (None without generations).
        p_adjusted: Bonferroni over the triangle family (deciding tests only).
        effect / words: verdict of a deciding test (words: why a test does not decide).
        reach: whether the condition reached the output (the knockouts' gate).
    """

    arm: str
    condition: str
    role: str
    intended: int
    manipulation: TestResult | None
    manipulation_p_adjusted: float
    manipulation_ok: bool
    d_z: float
    diff: PairedDifference | None
    p_adjusted: float | None
    effect: Effect | None
    words: str
    reach: Reach | None = None


@dataclass(frozen=True, kw_only=True)
class SteeringOutcome:
    effect: Effect
    words: str
    tests: tuple[SteeringTest, ...]


@dataclass(frozen=True, kw_only=True)
class TriangleOutcome:
    """The triangle of one model and language, by scope.

    Attributes:
        model, language: what was classified.
        alpha, margin: decision level and equivalence margin.
        family_size: deciding tests the Bonferroni correction divided α by.
        knockouts: one verdict per knockout scope, in reading order.
        steering: the steering verdict (default scope).
        cells: scope -> interpretation of (knockout in that scope, steering).
        rule: the decision rule in words.
    """

    model: str
    language: str
    alpha: float
    margin: float
    family_size: int
    knockouts: tuple[KnockoutOutcome, ...]
    steering: SteeringOutcome
    cells: dict[str, str] = field(default_factory=dict)
    rule: str = ""

    def knockout(self, scope: str) -> KnockoutOutcome | None:
        return next((k for k in self.knockouts if k.scope == scope), None)


def _select(df: pd.DataFrame | None, model: str, language: str) -> pd.DataFrame | None:
    if df is None or not len(df):
        return None
    sub = df[(df["model"] == model) & (df["language"] == language)]
    return sub if len(sub) else None


def _rank_sign(diff: pd.Series) -> int:
    """Sign of W+ − W− of the Wilcoxon signed-rank test (zeros dropped, average ranks)."""
    d = diff.to_numpy(dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 0
    ranks = rankdata(np.abs(d))
    return int(np.sign(float(ranks[d > 0].sum() - ranks[d < 0].sum())))


def _prediction_records(recs: pd.DataFrame | None) -> pd.DataFrame | None:
    """Records read at the prediction of the generation prompts (test samples when none)."""
    if recs is None or "kind" not in recs:
        return recs
    gen = recs[recs["kind"] == "generation"]
    return gen if len(gen) else recs[recs["kind"] == "test"]


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
    try:
        out.append(paired_t(a, b))
    except ValueError as exc:
        log.info("manipulation paired t skipped: %s", exc)
    try:
        d_z = cohens_d(a, b, paired=True)
    except ValueError as exc:
        log.info("manipulation d_z skipped: %s", exc)
    return out, d_z


@dataclass
class _Knock:
    """A scope's raw comparisons before the family correction."""

    scope: str
    draws: list[tuple[int, PairedDifference | None, TestResult | None, int]]
    reach: Reach
    rates: tuple[float, float]
    n: int


def _knockout_raw(
    scope: str, recs: pd.DataFrame | None, gens: pd.DataFrame | None, floor: float
) -> _Knock | None:
    ko = f"knockout@{scope}"
    present = set() if recs is None else set(recs["condition"])
    present |= set() if gens is None else set(gens["condition"])
    if ko not in present:
        return None
    draw_ids = sorted(
        {int(c.rsplit("#", 1)[1]) for c in present if c.startswith(f"random_control@{scope}#")}
    )
    pred = _prediction_records(recs)
    out: list[tuple[int, PairedDifference | None, TestResult | None, int]] = []
    rates = (math.nan, math.nan)
    n = 0
    for d in draw_ids:
        ctrl = f"random_control@{scope}#{d}"
        diff = None
        if gens is not None and ko in set(gens["condition"]) and ctrl in set(gens["condition"]):
            p = paired(gens, "preserved", ko, ctrl)
            if len(p):
                diff = paired_difference(p["ref"].astype(bool), p["cond"].astype(bool))
        kl = None
        direction = 0
        if pred is not None and ko in set(pred["condition"]) and ctrl in set(pred["condition"]):
            p = paired(pred, "kl", ko, ctrl)
            if len(p):
                kl = wilcoxon_signed_rank(p["cond"], p["ref"])
                direction = _rank_sign(p["cond"] - p["ref"])
        if diff is None and kl is None:
            continue
        if not out and diff is not None:
            rates, n = (diff.cond_rate, diff.ref_rate), diff.n
        elif not out and kl is not None:
            n = kl.n
        out.append((d, diff, kl, direction))
    if not out:
        return None
    rows = pred[pred["condition"] == ko] if pred is not None else None
    kls = rows["kl"] if rows is not None else pd.Series(dtype=float)
    top1 = rows["top1_same"] if rows is not None and "top1_same" in rows else None
    ident = token_identical(gens, ko) if gens is not None and ko in set(gens["condition"]) else None
    return _Knock(scope, out, reach(kls, ident, floor, top1), rates, n)


def _steering_raw(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None, language: str, floor: float
) -> list[dict]:
    """Per steering arm of the default scope: manipulation and preservation vs baseline."""
    present = set() if recs is None else set(recs["arm"])
    present |= set() if gens is None else set(gens["arm"])
    arms = [a for a in DECIDING_STEERING if a in present]
    out = []
    pred = _prediction_records(recs)
    for arm in arms:
        rows_r = pred[pred["arm"] == arm] if pred is not None else None
        rows_g = gens[gens["arm"] == arm] if gens is not None else None
        rows_r = rows_r if rows_r is not None and len(rows_r) else None
        rows_g = rows_g if rows_g is not None and len(rows_g) else None
        some = rows_r if rows_r is not None else rows_g
        if some is None:
            continue
        cond = str(some["condition"].iloc[0])
        manip, d_z = manipulation_tests(rows_r) if rows_r is not None else ([], None)
        wil = manip[0] if manip else None
        direction = 0
        if rows_r is not None and len(rows_r):
            r = rows_r.dropna(subset=["attn_achieved", "attn_baseline"])
            direction = _rank_sign(r["attn_achieved"] - r["attn_baseline"])
        if arm.startswith("scale_") and arm not in ("scale_calibrated",):
            intended = 1 if float(arm.removeprefix("scale_")) > 1 else -1
        else:
            intended = 1
        diff = None
        if gens is not None and cond in set(gens["condition"]):
            p = paired(gens, "preserved", cond, "baseline")
            if len(p):
                diff = paired_difference(p["ref"].astype(bool), p["cond"].astype(bool))
        control = arm == "set_value_calibrated" and language == SETVALUE_CONTROL_LANGUAGE
        kls = rows_r["kl"] if rows_r is not None and "kl" in rows_r else pd.Series(dtype=float)
        top1 = rows_r["top1_same"] if rows_r is not None and "top1_same" in rows_r else None
        ident = (
            token_identical(gens, cond)
            if gens is not None and cond in set(gens["condition"])
            else None
        )
        out.append(dict(arm=arm, condition=cond, manipulation=wil, d_z=d_z, direction=direction,
                        intended=intended, diff=diff, control=control,
                        reach=reach(kls, ident, floor, top1)))  # fmt: skip
    return out


def classify(
    records: pd.DataFrame | None,
    generations: pd.DataFrame | None,
    noise_floor: pd.DataFrame | None = None,
    *,
    model: str | None = None,
    language: str | None = None,
    alpha: float = 0.05,
    margin: float = 0.10,
) -> TriangleOutcome:
    """Classify the triangle of one model and language, scope by scope (module docstring).

    Args:
        records: ``records.parquet`` rows (or None).
        generations: ``generations.parquet`` rows (or None).
        noise_floor: ``noise_floor.parquet`` rows (or None: the reach gate then rests on the
            generations alone).
        model, language: which to classify; may be omitted when the tables hold only one.
        alpha: significance level of the (Bonferroni-adjusted) deciding tests.
        margin: equivalence margin on preservation (TOST with the 90% CI).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    if not 0 < margin < 1:
        raise ValueError(f"margin must lie in (0, 1); got {margin!r}")
    tables = [t for t in (records, generations) if t is not None and len(t)]
    if not tables:
        raise ValueError("classify needs records or generations with rows; both are empty/None")
    for t in tables:
        missing = {"model", "language", "condition", "sample_id"} - set(t.columns)
        if missing:
            raise ValueError(f"table lacks columns {sorted(missing)} (see docs/RECORDS.md)")
    combos = sorted(
        {(m, g) for t in tables for m, g in zip(t["model"], t["language"], strict=True)}
    )
    if model is None or language is None:
        picks = [(m, g) for m, g in combos if model in (None, m) and language in (None, g)]
        if len(picks) != 1:
            raise ValueError(f"pass model= and language=: the tables hold {picks or combos}")
        model, language = picks[0]
    if (model, language) not in combos:
        raise ValueError(f"no rows for model={model!r} language={language!r}; present: {combos}")
    recs = _select(None if records is None else with_scope(records), model, language)
    gens = _select(None if generations is None else with_scope(generations), model, language)
    floor = kl_floor(noise_floor, model)

    labels = set()
    for t in (recs, gens):
        if t is not None:
            labels |= set(t.loc[t["arm"] == "knockout", "scope"])
    raw = [k for s in scope_order(sorted(labels)) if (k := _knockout_raw(s, recs, gens, floor))]
    steer_raw = _steering_raw(recs, gens, language, floor)

    # Manipulation family: every steering arm tested here.
    manip_p = [s["manipulation"].pvalue for s in steer_raw if s["manipulation"] is not None]
    manip_adj = iter(bonferroni(manip_p)) if manip_p else iter(())
    for s in steer_raw:
        s["manip_adj"] = float(next(manip_adj)) if s["manipulation"] is not None else math.nan
        s["manip_ok"] = bool(
            s["manipulation"] is not None and s["manip_adj"] < alpha
            and s["direction"] == s["intended"]
        )  # fmt: skip
        if s["control"]:
            s["role"] = "control"
        elif s["intended"] < 0:
            s["role"] = "dose"
        elif not s["manip_ok"] or s["diff"] is None or not s["reach"].reached:
            s["role"] = "not deciding"
        else:
            s["role"] = "deciding"
    deciding_steer = [s for s in steer_raw if s["role"] == "deciding"]
    m = max(len(raw) + len(deciding_steer), 1)

    def adj(p: float) -> float:
        return float(min(1.0, p * m))

    knockouts = []
    for k in raw:
        draws = []
        for d, diff, kl, direction in k.draws:
            if diff is not None:
                p = diff.pvalue
                eff, words = classify_change(diff, p_adjusted=adj(p), alpha=alpha, margin=margin,
                                             predicted_sign=-1)  # fmt: skip
            else:
                assert kl is not None
                p = float(kl.pvalue) if kl.pvalue is not None else 1.0
                if adj(p) < alpha and direction != 0:
                    eff = "predicted" if direction > 0 else "opposite"
                    words = (f"median KL difference knockout − control {kl.effect:+.3g} nats, "
                             f"p_adj = {adj(p):.3g}: significant")  # fmt: skip
                else:
                    eff = "inconclusive"
                    words = (f"median KL difference {kl.effect:+.3g} nats, p_adj = {adj(p):.3g}: "
                             "not significant (no equivalence margin for KL)")  # fmt: skip
            draws.append(DrawResult(draw=d, diff=diff, kl=kl, kl_direction=direction, pvalue=p,
                                    p_adjusted=adj(p), effect=eff, words=words))  # fmt: skip
        verdicts = {x.effect for x in draws}
        first = draws[0]
        measure = "preserved" if first.diff is not None else "kl"
        if not k.reach.reached:
            effect: Effect = "unreached"
            words = f"the edit does not reach the output ({k.reach.words})"
        elif len(verdicts) == 1:
            effect, words = first.effect, first.words
            if len(draws) > 1:
                words += f"; the same verdict for all {len(draws)} control draws"
        else:
            effect = "inconclusive"
            words = (
                "the verdict depends on the control draw ("
                + ", ".join(f"draw {x.draw}: {x.effect}" for x in draws)
                + f"); first draw: {first.words}"
            )
        power = math.nan
        if first.diff is not None:
            power = mcnemar_power(first.diff.n, first.diff.discordance, margin, alpha / m)
        knockouts.append(KnockoutOutcome(
            scope=k.scope, effect=effect, words=words, measure=measure, draws=tuple(draws),
            reach=k.reach, power=power, knockout_rate=k.rates[0], control_rate=k.rates[1],
            n_pairs=k.n,
        ))  # fmt: skip

    tests = []
    for s in steer_raw:
        eff_s: Effect | None = None
        words = ""
        p_adj = None
        if s["role"] == "deciding":
            p_adj = adj(s["diff"].pvalue)
            eff_s, words = classify_change(s["diff"], p_adjusted=p_adj, alpha=alpha,
                                           margin=margin, predicted_sign=1)  # fmt: skip
        elif s["role"] == "control":
            words = "sets Python to its own level: the roadmap's control, never deciding"
        elif s["role"] == "not deciding":
            if not s["manip_ok"]:
                words = ("the manipulation check failed: the attention did not move the "
                         "intended way significantly")  # fmt: skip
            elif s["diff"] is None:
                words = "no generations"
            else:
                words = f"the edit does not reach the output ({s['reach'].words})"
        tests.append(SteeringTest(
            arm=s["arm"], condition=s["condition"], role=s["role"], intended=s["intended"],
            manipulation=s["manipulation"], manipulation_p_adjusted=s["manip_adj"],
            manipulation_ok=s["manip_ok"], d_z=math.nan if s["d_z"] is None else s["d_z"],
            diff=s["diff"], p_adjusted=p_adj, effect=eff_s, words=words, reach=s["reach"],
        ))  # fmt: skip
    dec = [t for t in tests if t.role == "deciding"]
    st_effect: Effect
    unreached = [t for t, s in zip(tests, steer_raw, strict=True)
                 if s["role"] == "not deciding" and s["manip_ok"] and s["diff"] is not None
                 and not s["reach"].reached]  # fmt: skip
    if not dec and unreached:
        st_effect = "unreached"
        st_words = "; ".join(f"{t.arm}: {t.words}" for t in unreached)
    elif not dec:
        st_effect = "inconclusive"
        st_words = "no steering condition passed its manipulation check with generations to judge"
    else:
        ups = [t for t in dec if t.effect == "predicted"]
        downs = [t for t in dec if t.effect == "opposite"]
        if ups:
            st_effect = "predicted"
        elif downs:
            st_effect = "opposite"
        elif all(t.effect == "none" for t in dec):
            st_effect = "none"
        else:
            st_effect = "inconclusive"
        st_words = "; ".join(f"{t.arm}: {t.words}" for t in dec)
    steering = SteeringOutcome(effect=st_effect, words=st_words, tests=tuple(tests))
    cells = {k.scope: interpret(k.effect, st_effect) for k in knockouts}
    rule = (
        f"alpha = {alpha}, margin = ±{100 * margin:.0f} pp preservation; Bonferroni over {m} "
        f"deciding test(s) of {model} / {language} ({len(raw)} knockout scope(s) and "
        f"{len(deciding_steer)} steering condition(s); alpha_adj = {alpha / m:.3g}); knockout: "
        "exact McNemar on preserved, knockout vs each mass-matched control draw, Newcombe CIs, "
        "predicted = significant drop, no effect = 90% CI inside the margin, draws must agree; "
        "steering: the same vs baseline, predicted = significant rise, only after a passed "
        "manipulation check; a scope whose knockout stays at the KL noise floor and changes "
        "almost no generation does not reach the output"
    )
    return TriangleOutcome(
        model=str(model), language=str(language), alpha=alpha, margin=margin, family_size=m,
        knockouts=tuple(knockouts), steering=steering, cells=cells, rule=rule,
    )  # fmt: skip


def classify_all(
    records: pd.DataFrame | None,
    generations: pd.DataFrame | None,
    noise_floor: pd.DataFrame | None = None,
    *,
    alpha: float = 0.05,
    margin: float = 0.10,
) -> list[TriangleOutcome]:
    """:func:`classify` for every (model, language) present, sorted by model then language."""
    tables = [t for t in (records, generations) if t is not None and len(t)]
    combos = sorted(
        {(m, g) for t in tables for m, g in zip(t["model"], t["language"], strict=True)}
    )
    return [
        classify(records, generations, noise_floor, model=m, language=g, alpha=alpha,
                 margin=margin)
        for m, g in combos
    ]  # fmt: skip
