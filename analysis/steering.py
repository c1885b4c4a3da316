"""Steering, scope by scope: manipulation checks and the deciding tests against baseline.

Each steering arm of :data:`analysis.verdicts.DECIDING_STEERING` runs in a scope (the condition
name's ``rows/targets/layers``). Against ``baseline`` a condition decides on the call-site
Δlog p when the records hold it (predicted = the name's log p rises; BCa CI at 1 − α/m), else
on the paired change in ``preserved`` (exact McNemar; predicted = a rise). It decides only when
its **manipulation check** passes (achieved vs baseline attention moved the intended way:
Wilcoxon signed-rank, Bonferroni over every steering condition of the language) and it reaches
the output (:func:`analysis.reach.reach`). Python SetValue sets Python to its own level: the
roadmap's control, never deciding. A scope's steering effect is predicted if any deciding
condition rises, opposite if one drops and none rises, none if all are equivalent to no change,
"does not reach the output" if none decides because none reaches, else inconclusive.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.callsite import after_marker_rows, call_difference, call_verdict
from analysis.equivalence import Effect, classify_change, paired_difference
from analysis.hypothesis import TestResult, cohens_d, paired_t, wilcoxon_signed_rank
from analysis.pairing import paired
from analysis.reach import reach, token_identical
from analysis.verdicts import DECIDING_STEERING, SteeringOutcome, SteeringTest

__all__ = ["manipulation_tests", "rank_sign", "steering_outcomes", "steering_raw"]

log = logging.getLogger(__name__)

SETVALUE_CONTROL_LANGUAGE = "python"
"""SetValue at the Python level is a no-op control in Python (the roadmap's control)."""


def rank_sign(diff: pd.Series) -> int:
    """Sign of W+ − W− of the Wilcoxon signed-rank test (zeros dropped, average ranks)."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 0
    ranks = rankdata(np.abs(d))
    return int(np.sign(float(ranks[d > 0].sum() - ranks[d < 0].sum())))


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


def _intended(arm: str) -> int:
    if arm.startswith("scale_") and arm not in ("scale_calibrated", "scale_calibrated_x2"):
        return 1 if float(arm.removeprefix("scale_")) > 1 else -1
    return 1


def steering_raw(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None, calls: pd.DataFrame | None,
    language: str, floor: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per steering condition (deciding arms, every scope): manipulation, reach and data."""
    conds: set[str] = set()
    for t in (recs, gens):
        if t is not None:
            conds |= set(t.loc[t["arm"].isin(DECIDING_STEERING), "condition"])
    pred = after_marker_rows(recs)
    out = []
    for cond in sorted(conds):
        arm, _, scope = cond.partition("@")
        call_r = None if calls is None else calls[calls["condition"] == cond]
        call_r = call_r if call_r is not None and len(call_r) else None
        rows_r = pred[pred["condition"] == cond] if pred is not None else None
        rows_r = (
            call_r
            if call_r is not None
            else (rows_r if rows_r is not None and len(rows_r) else None)
        )
        rows_g = gens[gens["condition"] == cond] if gens is not None else None
        rows_g = rows_g if rows_g is not None and len(rows_g) else None
        manip, d_z = manipulation_tests(rows_r) if rows_r is not None else ([], None)
        direction = 0
        if rows_r is not None:
            r = rows_r.dropna(subset=["attn_achieved", "attn_baseline"])
            direction = rank_sign(r["attn_achieved"] - r["attn_baseline"])
        diff = fn_diff = None
        if rows_g is not None:
            p = paired(gens, "preserved", cond, "baseline")
            if len(p):
                diff = paired_difference(p["ref"].astype(bool), p["cond"].astype(bool))
            if gens is not None and "calls_function" in gens:
                p = paired(gens, "calls_function", cond, "baseline")
                if len(p):
                    fn_diff = paired_difference(p["ref"].astype(bool), p["cond"].astype(bool))
        kls = rows_r["kl"] if rows_r is not None and "kl" in rows_r else pd.Series(dtype=float)
        top1 = rows_r["top1_same"] if rows_r is not None and "top1_same" in rows_r else None
        ident = token_identical(gens, cond) if rows_g is not None else None
        dl = None if call_r is None else call_r["dlogp_gold"]
        out.append(dict(arm=arm, scope=scope, condition=cond,
                        manipulation=manip[0] if manip else None, d_z=d_z, direction=direction,
                        intended=_intended(arm), diff=diff, calls=fn_diff,
                        has_call=call_r is not None,
                        control=arm == "set_value_calibrated"
                        and language == SETVALUE_CONTROL_LANGUAGE,
                        reach=reach(kls, ident, floor, top1, dl)))  # fmt: skip
    return out


def assign_roles(raw: list[dict[str, Any]], alpha: float, bonferroni: Callable) -> None:
    """Fill ``manip_adj``, ``manip_ok`` and ``role`` of every steering condition in place."""
    manip_p = [s["manipulation"].pvalue for s in raw if s["manipulation"] is not None]
    adj = iter(bonferroni(manip_p)) if manip_p else iter(())
    for s in raw:
        s["manip_adj"] = float(next(adj)) if s["manipulation"] is not None else math.nan
        s["manip_ok"] = bool(s["manipulation"] is not None and s["manip_adj"] < alpha
                             and s["direction"] == s["intended"])  # fmt: skip
        judged = s["diff"] is not None or s["has_call"]
        if s["control"]:
            s["role"] = "control"
        elif s["intended"] < 0:
            s["role"] = "dose"
        elif not s["manip_ok"] or not judged or not s["reach"].reached:
            s["role"] = "not deciding"
        else:
            s["role"] = "deciding"


def _test(
    s: dict[str, Any], calls: pd.DataFrame | None, adj: Callable[[float], float], alpha: float,
    margin: float, level_adj: float,
) -> SteeringTest:  # fmt: skip
    eff: Effect | None = None
    words, p_adj, call = "", None, None
    if s["role"] == "deciding" and s["has_call"] and calls is not None:
        call = call_difference(calls, s["condition"], "baseline", level_adj=level_adj)
    if s["role"] == "deciding" and call is not None:
        eff, words = call_verdict(call, predicted_sign=1, what="vs baseline")
    elif s["role"] == "deciding":
        p_adj = adj(s["diff"].pvalue)
        eff, words = classify_change(s["diff"], p_adjusted=p_adj, alpha=alpha, margin=margin,
                                     predicted_sign=1)  # fmt: skip
    elif s["role"] == "control":
        words = "sets Python to its own level: the roadmap's control, never deciding"
    elif s["role"] == "not deciding":
        if not s["manip_ok"]:
            words = ("the manipulation check failed: the attention did not move the intended "
                     "way significantly")  # fmt: skip
        elif s["diff"] is None and not s["has_call"]:
            words = "no generations and no call-site readout"
        else:
            words = f"the edit does not reach the output ({s['reach'].words})"
    return SteeringTest(
        arm=s["arm"], condition=s["condition"], role=s["role"], intended=s["intended"],
        manipulation=s["manipulation"], manipulation_p_adjusted=s["manip_adj"],
        manipulation_ok=s["manip_ok"], d_z=math.nan if s["d_z"] is None else s["d_z"],
        diff=s["diff"], p_adjusted=p_adj, effect=eff, words=words, reach=s["reach"],
        scope=s["scope"], call=call, calls=s["calls"],
    )  # fmt: skip


def _outcome(scope: str, tests: list[SteeringTest], raw: list[dict[str, Any]]) -> SteeringOutcome:
    dec = [t for t in tests if t.role == "deciding"]
    unreached = [t for t, s in zip(tests, raw, strict=True)
                 if s["role"] == "not deciding" and s["manip_ok"]
                 and (s["diff"] is not None or s["has_call"]) and not s["reach"].reached]  # fmt: skip
    effect: Effect
    if not dec and unreached:
        effect, words = "unreached", "; ".join(f"{t.arm}: {t.words}" for t in unreached)
    elif not dec:
        effect = "inconclusive"
        words = "no steering condition passed its manipulation check with an output to judge"
    else:
        if any(t.effect == "predicted" for t in dec):
            effect = "predicted"
        elif any(t.effect == "opposite" for t in dec):
            effect = "opposite"
        elif all(t.effect == "none" for t in dec):
            effect = "none"
        else:
            effect = "inconclusive"
        words = "; ".join(f"{t.arm}: {t.words}" for t in dec)
    return SteeringOutcome(effect=effect, words=words, tests=tuple(tests), scope=scope)


def steering_outcomes(
    raw: list[dict[str, Any]], calls: pd.DataFrame | None, adj: Callable[[float], float],
    alpha: float, margin: float, level_adj: float,
) -> dict[str, SteeringOutcome]:  # fmt: skip
    """scope -> its steering outcome (after :func:`assign_roles`)."""
    out = {}
    for scope in dict.fromkeys(s["scope"] for s in raw):
        mine = [s for s in raw if s["scope"] == scope]
        tests = [_test(s, calls, adj, alpha, margin, level_adj) for s in mine]
        out[scope] = _outcome(scope, tests, mine)
    return out
