"""The causal triangle by scope: knockout × steering of the same scope → an interpretation.

Per model and language (α = ``alpha``; margins: ``margin`` on preservation, ``margin_nats`` on
the call-site Δlog p):

* **Knockout, per scope** (rows/targets/layers; :mod:`plip_nn.scope`), against each draw of
  the **inert control** (``inert_control``: the same drawn keys as the renormalising control,
  their mass given to non-target keys only, so the targets' attention stays at baseline). The
  renormalising ``random_control`` is a compared row and never decides; an old run without
  the inert control falls back to it, with a note. The deciding endpoint is the **call-site
  Δlog p** (:mod:`analysis.callsite`: paired BCa bootstrap, CI at 1 − α/m; predicted = the
  knockout lowers the name's log p more than the control; no effect = the 90% CI inside
  ±``margin_nats``). Old runs without the call readout decide on preservation (exact McNemar,
  Newcombe CIs, :mod:`analysis.equivalence`) or, without generations, on the Wilcoxon test of
  the KL at the prediction.
* **Verdict of a scope**: "control unmatched" when any edited layer has fewer than 80% of its
  (prompt, draw) pairs matched on removed mass (:mod:`analysis.matching`; the knockout's
  effect against baseline is given in words); else "does not reach the output" below the reach
  gate (:mod:`analysis.reach`); else the draws' common verdict, or "draws disagree".
* **Steering** in every scope where it ran (:mod:`analysis.steering`), and each knockout is
  paired with the steering of its *own* scope; a scope without steering reads "steering not
  run" (:func:`analysis.verdicts.interpret`), never "one-way".
* **Family**: the deciding tests of one model and language -- one knockout test per scope and
  the deciding steering tests of every scope -- share one Bonferroni m; every control draw is
  judged at the same level (the draws must agree). :mod:`analysis.families` holds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from analysis.callsite import (
    DLOGP_MARGIN,
    after_marker_rows,
    call_difference,
    call_power,
    call_rows,
    call_verdict,
    mean_ci,
)
from analysis.equivalence import Effect, PairedDifference, classify_change, mcnemar_power
from analysis.equivalence import paired_difference as _pdiff
from analysis.families import bonferroni
from analysis.hypothesis import TestResult, wilcoxon_signed_rank
from analysis.matching import MIN_MATCHED, matching_table, scope_matched
from analysis.pairing import paired
from analysis.reach import Reach, kl_floor, reach, token_identical
from analysis.scopes import scope_order, with_scope
from analysis.steering import assign_roles, manipulation_tests, rank_sign, steering_outcomes
from analysis.steering import steering_raw as _steering_raw
from analysis.verdicts import (
    DECIDING_STEERING,
    DISAGREE,
    EFFECT_WORDS,
    INCONCLUSIVE,
    INTERPRETATIONS,
    OPPOSITE_BOTH,
    OPPOSITE_KNOCKOUT,
    OPPOSITE_STEERING,
    STEERING_NOT_RUN,
    STEERING_UNREACHED,
    STEERING_UNREACHED_CAUSAL,
    UNMATCHED,
    UNREACHED,
    CallDiff,
    DrawResult,
    KnockoutOutcome,
    SteeringOutcome,
    SteeringTest,
    TriangleOutcome,
    interpret,
    interpretation_table,
)

__all__ = [
    "DECIDING_STEERING", "DISAGREE", "EFFECT_WORDS", "INCONCLUSIVE", "INTERPRETATIONS",
    "OPPOSITE_BOTH", "OPPOSITE_KNOCKOUT", "OPPOSITE_STEERING", "STEERING_NOT_RUN",
    "STEERING_UNREACHED", "STEERING_UNREACHED_CAUSAL", "UNMATCHED", "UNREACHED", "CallDiff",
    "DrawResult", "KnockoutOutcome", "SteeringOutcome", "SteeringTest", "TriangleOutcome",
    "classify", "classify_all", "interpret", "interpretation_table", "manipulation_tests",
]  # fmt: skip


def _select(df: pd.DataFrame | None, model: str, language: str) -> pd.DataFrame | None:
    if df is None or not len(df):
        return None
    sub = df[(df["model"] == model) & (df["language"] == language)]
    return sub if len(sub) else None


def _pdiff_of(
    gens: pd.DataFrame | None, column: str, cond: str, ref: str
) -> PairedDifference | None:
    if gens is None or column not in gens:
        return None
    p = paired(gens, column, cond, ref)
    return _pdiff(p["ref"].astype(bool), p["cond"].astype(bool)) if len(p) else None


@dataclass
class _Draw:
    draw: int
    control: str
    diff: PairedDifference | None
    calls: PairedDifference | None
    kl: TestResult | None
    direction: int
    has_call: bool


@dataclass
class _Knock:
    """A scope's raw comparisons before the family correction."""

    scope: str
    draws: list[_Draw]
    compared: list[_Draw]
    reach: Reach
    vs_baseline: TestResult | None
    base_diff: PairedDifference | None
    measure: str
    notes: list[str] = field(default_factory=list)
    after: tuple[float, float] = (math.nan, math.nan)


def _draw_ids(present: set[str], arm: str, scope: str) -> list[int]:
    pre = f"{arm}@{scope}#"
    return sorted({int(c.rsplit("#", 1)[1]) for c in present if c.startswith(pre)})


def _raw_draw(
    d: int, arm: str, ko: str, scope: str, pred: pd.DataFrame | None,
    gens: pd.DataFrame | None, calls: pd.DataFrame | None,
) -> _Draw | None:  # fmt: skip
    ctrl = f"{arm}@{scope}#{d}"
    diff = _pdiff_of(gens, "preserved", ko, ctrl)
    fn = _pdiff_of(gens, "calls_function", ko, ctrl)
    kl, direction = None, 0
    if pred is not None:
        p = paired(pred, "kl", ko, ctrl)
        if len(p) >= 2:
            kl = wilcoxon_signed_rank(p["cond"], p["ref"])
            direction = rank_sign(p["cond"] - p["ref"])
    has_call = calls is not None and len(paired(calls, "dlogp_gold", ko, ctrl)) >= 2
    if diff is None and kl is None and not has_call:
        return None
    return _Draw(d, arm, diff, fn, kl, direction, has_call)


def _knockout_raw(
    scope: str, recs: pd.DataFrame | None, gens: pd.DataFrame | None,
    calls: pd.DataFrame | None, floor: float,
) -> _Knock | None:  # fmt: skip
    ko = f"knockout@{scope}"
    present = set() if recs is None else set(recs["condition"])
    present |= set() if gens is None else set(gens["condition"])
    if ko not in present:
        return None
    notes = []
    inert = _draw_ids(present, "inert_control", scope)
    arm = "inert_control" if inert else "random_control"
    if not inert:
        notes.append("no inert_control in this run (old run): the renormalising random_control "
                     "decides")  # fmt: skip
    pred = after_marker_rows(recs)
    draws = [x for d in _draw_ids(present, arm, scope)
             if (x := _raw_draw(d, arm, ko, scope, pred, gens, calls))]  # fmt: skip
    compared = []
    if inert:
        compared = [x for d in _draw_ids(present, "random_control", scope)
                    if (x := _raw_draw(d, "random_control", ko, scope, pred, gens, calls))]  # fmt: skip
    if not draws:
        return None
    ko_calls = None if calls is None else calls[calls["condition"] == ko]
    has_call = ko_calls is not None and len(ko_calls) > 0
    read = ko_calls if has_call else (pred[pred["condition"] == ko] if pred is not None else None)
    kls = read["kl"] if read is not None and "kl" in read else pd.Series(dtype=float)
    top1 = read["top1_same"] if read is not None and "top1_same" in read else None
    ident = token_identical(gens, ko) if gens is not None and ko in set(gens["condition"]) else None
    dl = ko_calls["dlogp_gold"] if ko_calls is not None and has_call else None
    measure = ("dlogp" if all(x.has_call for x in draws)
               else "preserved" if draws[0].diff is not None else "kl")  # fmt: skip
    at = pred[pred["condition"] == ko] if pred is not None else None
    after = (math.nan, math.nan)
    if at is not None and len(at) and "kl" in at:
        p1 = float(at["p_top1_baseline"].median()) if "p_top1_baseline" in at else math.nan
        after = (float(at["kl"].median()), p1)
    if measure != "dlogp":
        notes.append("no call-site readout (records lack `readout`/`dlogp_gold`: an old run): "
                     f"decided on {'preservation' if measure == 'preserved' else 'the KL'}")  # fmt: skip
    return _Knock(scope=scope, draws=draws, compared=compared,
                  reach=reach(kls, ident, floor, top1, dl),
                  vs_baseline=mean_ci(dl) if dl is not None else None,
                  base_diff=_pdiff_of(gens, "preserved", ko, "baseline"), measure=measure,
                  notes=notes, after=after)  # fmt: skip


def _decide_draw(
    x: _Draw, k: _Knock, calls: pd.DataFrame | None, adj: Callable[[float], float],
    alpha: float, margin: float, margin_nats: float, level: float | None,
) -> DrawResult:  # fmt: skip
    """One draw's verdict; ``level`` None (a compared, never-deciding control) skips the
    deciding CI and reads its Δlog p at 95%."""
    ko, ctrl = f"knockout@{k.scope}", f"{x.control}@{k.scope}#{x.draw}"
    call = None
    if x.has_call and calls is not None:
        call = call_difference(calls, ko, ctrl, level_adj=level, margin=margin_nats)
    p = math.nan
    if k.measure == "dlogp" and call is not None:
        eff, words = call_verdict(call, predicted_sign=-1, what="knockout − control")
        p_adj = math.nan
    elif x.diff is not None:
        p = x.diff.pvalue
        p_adj = adj(p)
        eff, words = classify_change(x.diff, p_adjusted=p_adj, alpha=alpha, margin=margin,
                                     predicted_sign=-1)  # fmt: skip
    else:
        assert x.kl is not None
        p = float(x.kl.pvalue) if x.kl.pvalue is not None else 1.0
        p_adj = adj(p)
        if p_adj < alpha and x.direction != 0:
            eff = "predicted" if x.direction > 0 else "opposite"
            words = (f"median KL difference knockout − control {x.kl.effect:+.3g} nats, "
                     f"p_adj = {p_adj:.3g}: significant")  # fmt: skip
        else:
            eff = "inconclusive"
            words = (f"median KL difference {x.kl.effect:+.3g} nats, p_adj = {p_adj:.3g}: "
                     "not significant (no equivalence margin for KL)")  # fmt: skip
    return DrawResult(draw=x.draw, control=x.control, call=call, diff=x.diff, calls=x.calls,
                      kl=x.kl, kl_direction=x.direction, measure=k.measure, pvalue=p,
                      p_adjusted=p_adj, effect=eff, words=words)  # fmt: skip


def _against_baseline(k: _Knock) -> str:
    """The knockout's effect against baseline, in words (for an unmatched control)."""
    v = k.vs_baseline
    if v is not None:
        return (f"against baseline the knockout changed the name's call-site log p by "
                f"{v.effect:+.3g} nats (95% CI [{v.ci_low:+.3g}, {v.ci_high:+.3g}])")  # fmt: skip
    if k.base_diff is not None:
        d = k.base_diff
        return (f"against baseline the knockout changed preservation by {100 * d.effect:+.1f} pp "
                f"(95% CI [{100 * d.ci95[0]:+.1f}, {100 * d.ci95[1]:+.1f}])")  # fmt: skip
    return "no effect against baseline could be computed"


def _verdict(k: _Knock, draws: list[DrawResult], matched: tuple[float, str]) -> tuple[Effect, str]:
    share, low = matched
    verdicts = {x.effect for x in draws}
    first = draws[0]
    if not math.isnan(share) and share < MIN_MATCHED:
        return "unmatched", (f"control unmatched ({low}; every edited layer needs "
                             f"{100 * MIN_MATCHED:.0f}%): {_against_baseline(k)}")  # fmt: skip
    if not k.reach.reached:
        return "unreached", f"does not reach the output ({k.reach.words})"
    if len(verdicts) == 1:
        more = f"; the same verdict for all {len(draws)} control draws" if len(draws) > 1 else ""
        return first.effect, first.words + more
    listing = ", ".join(f"draw {x.draw}: {EFFECT_WORDS[x.effect]}" for x in draws)
    return "disagree", f"draws disagree ({listing}); first draw: {first.words}"


def classify(
    records: pd.DataFrame | None,
    generations: pd.DataFrame | None,
    noise_floor: pd.DataFrame | None = None,
    *,
    model: str | None = None,
    language: str | None = None,
    alpha: float = 0.05,
    margin: float = 0.10,
    control_match: pd.DataFrame | None = None,
    margin_nats: float = DLOGP_MARGIN,
) -> TriangleOutcome:
    """Classify the triangle of one model and language, scope by scope (module docstring).

    Args:
        records / generations: ``records.parquet`` / ``generations.parquet`` rows (or None).
        noise_floor: ``noise_floor.parquet`` rows (or None).
        model, language: which to classify; may be omitted when the tables hold only one.
        alpha: significance level of the (Bonferroni-adjusted) deciding tests.
        margin: equivalence margin on preservation (share); margin_nats: on Δlog p (nats).
        control_match: ``control_match.parquet`` rows (None: matching is not checked).
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
    calls = call_rows(recs)
    floor = kl_floor(noise_floor, model)

    labels = set()
    for t in (recs, gens):
        if t is not None:
            labels |= set(t.loc[t["arm"] == "knockout", "scope"])
    ordered = scope_order(sorted(labels))
    raw = [k for s in ordered if (k := _knockout_raw(s, recs, gens, calls, floor))]
    match = matching_table(control_match, recs, [(model, language, k.scope) for k in raw])
    steer = _steering_raw(recs, gens, calls, language, floor)
    assign_roles(steer, alpha, bonferroni)
    n_steer = sum(s["role"] == "deciding" for s in steer)
    m = max(len(raw) + n_steer, 1)
    level = 1 - alpha / m

    def adj(p: float) -> float:
        return float(min(1.0, p * m))

    knockouts = []
    notes: list[str] = []
    for k in raw:
        notes.extend(n for n in k.notes if n not in notes)
        draws = [_decide_draw(x, k, calls, adj, alpha, margin, margin_nats, level) for x in k.draws]
        compared = [_decide_draw(x, k, calls, adj, alpha, margin, margin_nats, None)
                    for x in k.compared]  # fmt: skip
        matched = scope_matched(match, model, language, k.scope)
        effect, words = _verdict(k, draws, matched)
        first = draws[0]
        gen_effect: Effect | None = None
        diffs = [x.diff for x in draws if x.diff is not None]
        if k.measure == "dlogp" and diffs:  # the generation draws (fewer than single-pass)
            gv = {classify_change(x, p_adjusted=adj(x.pvalue), alpha=alpha, margin=margin,
                                  predicted_sign=-1)[0] for x in diffs}  # fmt: skip
            gen_effect = gv.pop() if len(gv) == 1 else "disagree"
        cpow, n80 = call_power(first.call, alpha / m) if first.call is not None else (math.nan,) * 2
        power = math.nan
        if first.diff is not None:
            power = mcnemar_power(first.diff.n, first.diff.discordance, margin, alpha / m)
        rates = ((first.diff.cond_rate, first.diff.ref_rate) if first.diff is not None
                 else (math.nan, math.nan))  # fmt: skip
        n = (first.call.n if first.call is not None else first.diff.n if first.diff is not None
             else first.kl.n if first.kl is not None else 0)  # fmt: skip
        knockouts.append(KnockoutOutcome(
            scope=k.scope, effect=effect, words=words, measure=k.measure, draws=tuple(draws),
            reach=k.reach, power=power, knockout_rate=rates[0], control_rate=rates[1],
            n_pairs=n, compared=tuple(compared), vs_baseline=k.vs_baseline,
            matched=matched[0], gen_effect=gen_effect, call_power=cpow, call_n80=n80,
            kl_after=k.after[0], p_top1_after=k.after[1],
        ))  # fmt: skip

    by_scope = steering_outcomes(steer, calls, adj, alpha, margin, level)
    default = next((s for s in scope_order(list(by_scope)) if s in by_scope), None)
    steering = (by_scope[default] if default is not None else SteeringOutcome(
        effect="inconclusive", words=STEERING_NOT_RUN, tests=()))  # fmt: skip
    cells = {k.scope: interpret(k.effect, by_scope[k.scope].effect if k.scope in by_scope
                                else None) for k in knockouts}  # fmt: skip
    rule = (
        f"alpha = {alpha}; margins ±{margin_nats:g} nats call-site Δlog p, ±{100 * margin:.0f} pp "
        f"preservation; Bonferroni over {m} deciding test(s) of {model} / {language} ({len(raw)} "
        f"knockout scope(s), {n_steer} steering condition(s); deciding CIs at {100 * level:.3g}%); "
        "knockout vs each draw of the inert control (the renormalising control is compared, "
        "never deciding), paired BCa bootstrap of the call-site Δlog p, predicted = the name's "
        "log p drops more than under the control, no effect = 90% CI inside the margin (TOST), "
        "every draw must agree; a scope with an edited layer below "
        f"{100 * MIN_MATCHED:.0f}% matched pairs is 'control unmatched'; below the reach gate "
        "'does not reach the output'; steering vs baseline in its own scope, predicted = a rise, "
        "only after a passed manipulation check"
    )
    return TriangleOutcome(
        model=str(model), language=str(language), alpha=alpha, margin=margin, family_size=m,
        knockouts=tuple(knockouts), steering=steering, cells=cells, rule=rule,
        steering_by_scope=by_scope, margin_nats=margin_nats, notes=tuple(notes),
    )  # fmt: skip


def classify_all(
    records: pd.DataFrame | None,
    generations: pd.DataFrame | None,
    noise_floor: pd.DataFrame | None = None,
    *,
    alpha: float = 0.05,
    margin: float = 0.10,
    control_match: pd.DataFrame | None = None,
) -> list[TriangleOutcome]:
    """:func:`classify` for every (model, language) present, sorted by model then language."""
    tables = [t for t in (records, generations) if t is not None and len(t)]
    combos = sorted(
        {(m, g) for t in tables for m, g in zip(t["model"], t["language"], strict=True)}
    )
    return [
        classify(records, generations, noise_floor, model=m, language=g, alpha=alpha,
                 margin=margin, control_match=control_match)
        for m, g in combos
    ]  # fmt: skip
