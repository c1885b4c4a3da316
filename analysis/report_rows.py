"""The rows of ``stats.csv``: one builder per family (:mod:`analysis.families`).

Every row names its family, model, language, condition and scope; ``counted`` marks the rows
a family corrects over. Equivalence decisions get a row of family ``equivalence`` each, with
the margin, the 90% CI and both one-sided TOST p-values in their own columns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.callsite import after_marker_rows, call_rows, mean_ci
from analysis.dose import H2Result
from analysis.equivalence import PairedDifference, paired_difference, tost_paired_proportions
from analysis.families import adjust_table
from analysis.hypothesis import TestResult, bootstrap_mean_diff, wilcoxon_signed_rank
from analysis.languages import H1Result, MarkerResult, ObserveResult
from analysis.pairing import paired
from analysis.scopes import scope_order
from analysis.verdicts import EFFECT_WORDS, CallDiff, TriangleOutcome

__all__ = [
    "STATS_COLUMNS", "callsite_rows", "equivalence_rows", "h1_rows", "h2_rows",
    "knockout_kl_rows", "marker_rows", "observe_rows", "outcome_rows", "preservation_rows",
    "stats_table",
]  # fmt: skip

log = logging.getLogger(__name__)

STATS_COLUMNS = [
    "family", "model", "test", "language", "condition", "scope", "statistic", "pvalue",
    "p_bonferroni", "p_holm", "family_size", "counted", "effect", "ci_low", "ci_high", "n",
    "margin", "ci90_low", "ci90_high", "tost_p_low", "tost_p_high", "power", "n_for_80", "note",
]  # fmt: skip
_ADJUSTED = ("p_holm",)


def _row(
    family: str, model: str, lang: str, cond: str, res: TestResult, *, test: str = "",
    counted: bool = False, scope: str = "",
) -> dict[str, Any]:  # fmt: skip
    return {
        "family": family, "model": model, "test": test or res.name, "language": lang,
        "condition": cond, "scope": scope, "statistic": res.statistic,
        "pvalue": np.nan if res.pvalue is None else res.pvalue, "counted": counted,
        "effect": res.effect, "ci_low": res.ci_low, "ci_high": res.ci_high, "n": res.n,
        "note": res.note,
    }  # fmt: skip


def _diff_row(
    family: str, model: str, lang: str, cond: str, diff: PairedDifference, *, ref: str,
    counted: bool, scope: str = "", p_adjusted: float | None = None, m: int = 0,
    column: str = "preserved",
) -> dict[str, Any]:  # fmt: skip
    row = {
        "family": family, "model": model, "test": "mcnemar_exact (newcombe ci)", "language": lang,
        "condition": cond, "scope": scope, "statistic": float(min(diff.b, diff.c)),
        "pvalue": diff.pvalue, "counted": counted, "effect": diff.effect,
        "ci_low": diff.ci95[0], "ci_high": diff.ci95[1], "n": diff.n,
        "ci90_low": diff.ci90[0], "ci90_high": diff.ci90[1],
        "note": f"{column}, {cond} vs {ref}: b={diff.b} c={diff.c}; effect (c-b)/n with "
        "Newcombe 95% CI (90% CI in ci90_*)",
    }  # fmt: skip
    if p_adjusted is not None and not counted:
        row["p_bonferroni"], row["family_size"] = p_adjusted, m
    return row


def _call_row(
    family: str, model: str, lang: str, cond: str, c: CallDiff, *, ref: str, scope: str,
    note: str = "",
) -> dict[str, Any]:  # fmt: skip
    adj = ("" if math.isnan(c.level_adj) else
           f"; deciding {100 * c.level_adj:.3g}% CI [{c.ci_adj[0]:+.4g}, {c.ci_adj[1]:+.4g}]")  # fmt: skip
    return {
        "family": family, "model": model, "test": "paired BCa bootstrap (call-site Δlog p)",
        "language": lang, "condition": cond, "scope": scope, "statistic": c.effect,
        "pvalue": np.nan, "counted": False, "effect": c.effect, "ci_low": c.ci95[0],
        "ci_high": c.ci95[1], "n": c.n, "ci90_low": c.ci90[0], "ci90_high": c.ci90[1],
        "note": f"dlogp_gold, {cond} − {ref} (nats){adj}{note}",
    }  # fmt: skip


def _try(what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except ValueError as exc:
        log.info("skipped %s: %s", what, exc)
        return None


def _ctrl0(grp: pd.DataFrame, scope: str) -> str:
    inert = f"inert_control@{scope}#0"
    return inert if inert in set(grp["condition"]) else f"random_control@{scope}#0"


def knockout_kl_rows(recs: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """KL after the marker (secondary), each knockout vs its deciding control's draw 0."""
    pred = after_marker_rows(recs)
    if pred is None:
        return
    for (model, lang), grp in pred.groupby(["model", "language"]):
        for scope in scope_order(sorted(set(grp.loc[grp["arm"] == "knockout", "scope"]))):
            ko, ctrl = f"knockout@{scope}", _ctrl0(grp, scope)
            p = paired(grp, "kl", ko, ctrl)
            if not len(p):
                continue
            res = _try("wilcoxon", wilcoxon_signed_rank, p["cond"], p["ref"])
            if res is not None:
                yield _row("knockout_kl", str(model), str(lang), ko, res, counted=True, scope=scope)
            boot = _try("bootstrap", bootstrap_mean_diff, p["cond"], p["ref"], paired=True,
                        n_resamples=2000, seed=0)  # fmt: skip
            if boot is not None:
                yield _row("knockout_kl", str(model), str(lang), ko, boot, scope=scope)


def callsite_rows(recs: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """Every edited condition's call-site Δlog p against baseline (mean, BCa 95% CI)."""
    calls = call_rows(recs)
    if calls is None:
        return
    for (model, lang, cond), grp in calls.groupby(["model", "language", "condition"]):
        if cond == "baseline":
            continue
        res = mean_ci(grp["dlogp_gold"])
        if res is not None:
            yield _row("callsite", str(model), str(lang), str(cond), res,
                       test="mean dlogp_gold vs baseline (BCa)", scope=str(grp["scope"].iloc[0]))  # fmt: skip


def preservation_rows(gens: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """``preserved`` (counted) and ``calls_function`` (shown) of each condition vs baseline."""
    for (model, lang), grp in gens.groupby(["model", "language"]):
        for cond in sorted(set(grp["condition"]) - {"baseline"}):
            scope = str(grp.loc[grp["condition"] == cond, "scope"].iloc[0])
            for column, counted in (("preserved", True), ("calls_function", False)):
                if column not in grp:
                    continue
                p = paired(grp, column, cond, "baseline")
                if not len(p):
                    continue
                diff = paired_difference(p["ref"].astype(bool), p["cond"].astype(bool))
                row = _diff_row("preservation", str(model), str(lang), cond, diff,
                                ref="baseline", counted=counted, scope=scope, column=column)  # fmt: skip
                row["test"] = f"mcnemar_exact (newcombe ci): {column}"
                yield row


def outcome_rows(outcomes: Sequence[TriangleOutcome]) -> Iterable[dict[str, Any]]:
    """Manipulation checks, the deciding tests (family ``triangle``) and compared controls."""
    for o in outcomes:
        for st in o.steering_by_scope.values():
            for t in st.tests:
                if t.manipulation is not None:
                    row = _row("manipulation", o.model, o.language, t.condition, t.manipulation,
                               counted=True, scope=t.scope)  # fmt: skip
                    row["note"] += f"; role {t.role}"
                    yield row
        for k in o.knockouts:
            for d in (*k.draws, *k.compared):
                deciding = d in k.draws
                ko = f"knockout@{k.scope}"
                ref = f"{d.control}@{k.scope}#{d.draw}"
                tail = (f"; deciding test vs control draw {d.draw}: {d.effect}" if deciding
                        else f"; compared (renormalising) control draw {d.draw}, never deciding")  # fmt: skip
                family = "triangle" if deciding else "compared"
                if d.measure == "dlogp" and d.call is not None:
                    row = _call_row(family, o.model, o.language, ko, d.call, ref=ref,
                                    scope=k.scope, note=tail)  # fmt: skip
                elif d.diff is not None:
                    first = deciding and d.draw == k.draws[0].draw
                    row = _diff_row(family, o.model, o.language, ko, d.diff, ref=ref,
                                    counted=first, scope=k.scope, p_adjusted=d.p_adjusted,
                                    m=o.family_size)  # fmt: skip
                    row["note"] += tail
                elif d.kl is not None:
                    first = deciding and d.draw == k.draws[0].draw
                    row = _row(family, o.model, o.language, ko, d.kl, counted=first, scope=k.scope)
                    if not first:
                        row["p_bonferroni"], row["family_size"] = d.p_adjusted, o.family_size
                    row["note"] += tail
                else:
                    continue
                yield row
        for st in o.steering_by_scope.values():
            for t in st.tests:
                if t.role != "deciding":
                    continue
                if t.call is not None:
                    row = _call_row("triangle", o.model, o.language, t.condition, t.call,
                                    ref="baseline", scope=t.scope)  # fmt: skip
                elif t.diff is not None:
                    row = _diff_row("triangle", o.model, o.language, t.condition, t.diff,
                                    ref="baseline", counted=True, scope=t.scope)  # fmt: skip
                else:
                    continue
                row["note"] += f"; deciding steering test: {t.effect}"
                yield row


def _eq_row(o: TriangleOutcome, cond: str, scope: str, ref: str, *, call: CallDiff | None,
            diff: PairedDifference | None, verdict: str) -> dict[str, Any] | None:  # fmt: skip
    base = {"family": "equivalence", "model": o.model, "language": o.language,
            "condition": cond, "scope": scope, "counted": False, "pvalue": np.nan}  # fmt: skip
    if call is not None:
        lo, hi = call.ci90
        inside = -call.margin < lo and hi < call.margin
        return {**base, "test": "TOST (paired t) on call-site Δlog p", "statistic": call.effect,
                "effect": call.effect, "ci_low": call.ci95[0], "ci_high": call.ci95[1],
                "n": call.n, "margin": call.margin, "ci90_low": lo, "ci90_high": hi,
                "tost_p_low": call.tost[0], "tost_p_high": call.tost[1],
                "note": f"{cond} − {ref}, nats; BCa 90% CI {'inside' if inside else 'not inside'} "
                f"±{call.margin:g}; verdict {verdict}"}  # fmt: skip
    if diff is not None:
        p_lo, p_hi = tost_paired_proportions(diff, o.margin)
        inside = -o.margin < diff.ci90[0] and diff.ci90[1] < o.margin
        return {**base, "test": "TOST (Wald, McNemar variance) on preserved",
                "statistic": diff.effect, "effect": diff.effect, "ci_low": diff.ci95[0],
                "ci_high": diff.ci95[1], "n": diff.n, "margin": o.margin,
                "ci90_low": diff.ci90[0], "ci90_high": diff.ci90[1], "tost_p_low": p_lo,
                "tost_p_high": p_hi,
                "note": f"{cond} − {ref}, share; Newcombe 90% CI "
                f"{'inside' if inside else 'not inside'} ±{o.margin:g}; verdict {verdict}"}  # fmt: skip
    return None


def equivalence_rows(outcomes: Sequence[TriangleOutcome]) -> Iterable[dict[str, Any]]:
    """One row per equivalence decision: every deciding draw and deciding steering test."""
    for o in outcomes:
        for k in o.knockouts:
            for d in k.draws:
                ref = f"{d.control}@{k.scope}#{d.draw}"
                call = d.call if d.measure == "dlogp" else None
                row = _eq_row(o, f"knockout@{k.scope}", k.scope, ref, call=call,
                              diff=None if call is not None else d.diff,
                              verdict=EFFECT_WORDS[d.effect])  # fmt: skip
                if row is not None:
                    yield row
        for st in o.steering_by_scope.values():
            for t in st.tests:
                if t.role == "deciding" and t.effect is not None:
                    row = _eq_row(o, t.condition, t.scope, "baseline", call=t.call,
                                  diff=None if t.call is not None else t.diff,
                                  verdict=EFFECT_WORDS[t.effect])  # fmt: skip
                    if row is not None:
                        yield row


def h1_rows(results: Sequence[H1Result]) -> Iterable[dict[str, Any]]:
    """Each language's H1 effect (shown) and Python − Rust (Welch p counted: Holm)."""
    for r in results:
        for lang, res in (("python", r.python), ("rust", r.rust), ("python-rust", r.difference)):
            if res is None:
                continue
            row = _row("h1", r.model, lang, f"knockout@{r.scope}", res,
                       test=f"{r.measure} ({res.name})", scope=r.scope)  # fmt: skip
            if lang == "python-rust":
                row["pvalue"] = r.pvalue
                row["counted"] = not math.isnan(r.pvalue)
                row["note"] += f"; p = Welch t; control {r.control}; H1: {r.verdict}"
            yield row


def h2_rows(results: Sequence[H2Result]) -> Iterable[dict[str, Any]]:
    """GEE trend (counted unless not estimable), permutation cross-check, hinge slopes."""
    for r in results:
        base = {"family": "h2", "model": r.model, "language": r.language,
                "condition": "scale dose", "scope": r.scope, "n": r.n_rows}  # fmt: skip
        ok = r.status == "estimated" and not math.isnan(r.slope_p)
        yield {**base, "test": "gee_logistic_trend", "statistic": r.slope, "pvalue": r.slope_p,
               "counted": ok, "effect": r.slope, "ci_low": r.slope_ci[0],
               "ci_high": r.slope_ci[1],
               "note": f"{r.status}; GEE logistic, exchangeable, {r.n_prompts} prompts as "
               "clusters; effect = log-odds of preservation per doubling of the Scale dose"}  # fmt: skip
        yield {**base, "test": "permutation_trend", "statistic": np.nan, "pvalue": r.perm_p,
               "counted": False, "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan,
               "note": "cross-check: outcomes permuted among doses within each prompt, 9999 "
               "permutations, seed 0"}  # fmt: skip
        for what, v in (("slope up to the Python level", r.before),
                        ("slope beyond the Python level", r.after)):  # fmt: skip
            yield {**base, "test": f"gee_hinge: {what}", "statistic": v[0], "pvalue": v[3],
                   "counted": False, "effect": v[0], "ci_low": v[1], "ci_high": v[2],
                   "note": f"hinge at Scale {r.knot:.3g} (the Python level); {r.verdict}"}  # fmt: skip


def observe_rows(results: Sequence[ObserveResult]) -> Iterable[dict[str, Any]]:
    for r in results:
        row = _row("observe", r.model, "python-rust", "baseline", r.test, test=f"welch_t ({r.view})",
                   counted=True, scope=r.scope)  # fmt: skip
        row["note"] += f"; Cohen's d {r.d:.3g}; ratio Python/Rust {r.ratio:.3g}"
        yield row


def marker_rows(results: Sequence[MarkerResult]) -> Iterable[dict[str, Any]]:
    for r in results:
        row = _row("markers", r.model, r.language, f"layer {r.layer}", r.test,
                   test=f"welch_t real vs false ({r.view})", counted=True)  # fmt: skip
        row["note"] += (f"; real mean {r.real_mean:.3g} (n={r.n_real}) vs false "
                        f"{r.false_mean:.3g} (n={r.n_false}); Cohen's d {r.d:.3g}")  # fmt: skip
        yield row


def stats_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[c for c in STATS_COLUMNS if c not in _ADJUSTED])
    return adjust_table(df)[STATS_COLUMNS]
