"""The primary single-pass endpoint: the call-site Δlog p of the gold name token.

On every test sample the records hold, at the row that predicts the first token of the
function's name where the test first calls it (``readout == "call"``), ``dlogp_gold`` = log p
of that token under the edit minus under baseline (nats). A knockout is compared with each
control draw by the paired difference of ``dlogp_gold`` over prompts (paired BCa bootstrap,
:func:`analysis.hypothesis.bootstrap_mean_diff`): **predicted** = the knockout lowers the
name's log p more than the control (the whole CI at 1 − α/m below 0), **opposite** = the CI
above 0, **no effect** = the 90% CI inside ±:data:`DLOGP_MARGIN` nats (TOST), else
**inconclusive**.

Old runs lack the columns: :func:`call_rows` returns None and the callers say so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from analysis.equivalence import Effect
from analysis.hypothesis import TestResult, bootstrap_mean_diff
from analysis.pairing import paired
from analysis.verdicts import CallDiff

__all__ = [
    "CALL_COLUMNS",
    "CERTAIN",
    "DLOGP_MARGIN",
    "N_RESAMPLES",
    "after_marker_rows",
    "call_difference",
    "call_power",
    "call_rows",
    "call_verdict",
    "cannot_move",
    "inert_check",
    "mean_ci",
    "paired_bca",
]

CALL_COLUMNS = ("readout", "dlogp_gold")
DLOGP_MARGIN = 0.10
"""Equivalence margin of the call-site Δlog p (nats): exp(0.1) − 1 ≈ 10% of the name's p."""
CERTAIN = 0.99
"""A readout whose median baseline top-1 probability is at least this cannot move."""
N_RESAMPLES = 2000
INERT_TOLERANCE = 0.02


def call_rows(recs: pd.DataFrame | None) -> pd.DataFrame | None:
    """Records read at the call (``readout == "call"`` with a ``dlogp_gold``); None for an
    old run without those columns or rows."""
    if recs is None or any(c not in recs for c in CALL_COLUMNS):
        return None
    rows = recs[(recs["readout"] == "call") & recs["dlogp_gold"].notna()]
    return rows if len(rows) else None


def after_marker_rows(recs: pd.DataFrame | None) -> pd.DataFrame | None:
    """Records read at the token after the marker (``readout == "after_marker"``; old runs:
    the generation prompts, else the test samples)."""
    if recs is None:
        return None
    if "readout" in recs and (recs["readout"] == "after_marker").any():
        return recs[recs["readout"] == "after_marker"]
    if "kind" not in recs:
        return recs
    gen = recs[recs["kind"] == "generation"]
    return gen if len(gen) else recs[recs["kind"] == "test"]


def mean_ci(values: pd.Series | np.ndarray, conf: float = 0.95) -> TestResult | None:
    """Mean of per-prompt values with a paired BCa bootstrap CI (None under 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size < 2:
        return None
    return bootstrap_mean_diff(v, np.zeros(v.size), paired=True, n_resamples=N_RESAMPLES,
                               seed=0, confidence_level=conf)  # fmt: skip


def paired_bca(d: np.ndarray, levels: list[float]) -> dict[float, tuple[float, float]]:
    """BCa bootstrap CIs of mean(d) at several levels from one seeded resample set (seed 0,
    :data:`N_RESAMPLES`): the same intervals as :func:`analysis.hypothesis.bootstrap_mean_diff`
    at each level, resampled once. Data without spread give the point CI."""
    if np.ptp(d) == 0:
        return {lv: (float(d[0]), float(d[0])) for lv in levels}
    out: dict[float, tuple[float, float]] = {}
    res = None
    for lv in levels:
        res = stats.bootstrap(
            (d,), lambda x, axis=-1: np.mean(x, axis=axis), n_resamples=0 if res else N_RESAMPLES,
            confidence_level=lv, method="BCa", vectorized=True, bootstrap_result=res,
            random_state=np.random.default_rng(0),
        )  # fmt: skip
        out[lv] = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return out


def call_difference(
    calls: pd.DataFrame, cond: str, ref: str, *, level_adj: float | None = None,
    margin: float = DLOGP_MARGIN,
) -> CallDiff | None:  # fmt: skip
    """Paired ``dlogp_gold`` of ``cond`` minus ``ref`` over prompts (None under 2 pairs).

    ``level_adj``: the confidence level of the deciding CI (1 − α/m); None skips it.
    """
    p = paired(calls, "dlogp_gold", cond, ref)
    if len(p) < 2:
        return None
    a, b = p["cond"].to_numpy(dtype=float), p["ref"].to_numpy(dtype=float)
    d = a - b
    levels = [0.95, 0.90] + ([] if level_adj is None else [level_adj])
    cis = paired_bca(d, levels)

    def ci(conf: float) -> tuple[float, float]:
        return cis[conf]

    if np.ptp(d) == 0:
        tost = (0.0, 0.0) if abs(d[0]) < margin else (1.0, 1.0)
    else:
        _, lo, hi = ttost_paired(a, b, -margin, margin)
        tost = (float(lo[1]), float(hi[1]))
    return CallDiff(
        n=len(p), effect=float(d.mean()), ci95=ci(0.95), ci90=ci(0.90),
        ci_adj=ci(level_adj) if level_adj is not None else (math.nan, math.nan),
        level_adj=math.nan if level_adj is None else level_adj, margin=margin, tost=tost,
        sd=float(d.std(ddof=1)),
    )  # fmt: skip


def _t_power(es: float, n: np.ndarray, alpha: float) -> np.ndarray:
    """Power of the two-sided one-sample t test at standardized effect ``es`` for each n: the
    noncentral t (scipy), its normal approximation where that gives NaN."""
    df, nc = n - 1, es * np.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    power = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    approx = stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc)
    return np.minimum(np.where(np.isnan(power), approx, power), 1.0)


def call_power(c: CallDiff, alpha: float) -> tuple[float, float]:
    """(power, n for 80%) of the two-sided paired t test at ``alpha`` to detect a difference of
    ``c.margin`` nats at the observed SD of the paired differences; n is the smallest number
    of prompts (up to 100 000) reaching 80%. Differences without spread: (1.0, NaN)."""
    if not c.sd > 0 or c.n < 2:
        return (1.0 if c.sd == 0 else math.nan), math.nan
    es = c.margin / c.sd
    power = float(_t_power(es, np.array([c.n]), alpha)[0])
    grid = np.unique(np.round(np.geomspace(2, 100_000, 400)).astype(int))
    ok = grid[_t_power(es, grid.astype(float), alpha) >= 0.8]
    if not ok.size:
        return power, math.nan
    hi = int(ok[0])
    lo = int(grid[max(int(np.searchsorted(grid, hi)) - 1, 0)])
    fine = np.arange(lo, hi + 1)
    return power, float(fine[_t_power(es, fine.astype(float), alpha) >= 0.8][0])


def call_verdict(c: CallDiff, *, predicted_sign: int, what: str) -> tuple[Effect, str]:
    """The verdict of one call-site comparison (module docstring) and its reason; without a
    deciding CI (a compared control) the 95% CI is read."""
    lo, hi = c.ci95 if math.isnan(c.level_adj) else c.ci_adj
    pct = 95.0 if math.isnan(c.level_adj) else 100 * c.level_adj
    text = (
        f"call-site Δlog p {what} {c.effect:+.3g} nats over {c.n} prompts, "
        f"{pct:.3g}% BCa CI [{lo:+.3g}, {hi:+.3g}]"
    )
    if lo > 0 or hi < 0:
        sign = 1 if lo > 0 else -1
        if sign == predicted_sign:
            return "predicted", f"{text}: excludes 0, as predicted"
        return "opposite", f"{text}: excludes 0, OPPOSITE to the prediction"
    l90, h90 = c.ci90
    if -c.margin < l90 and h90 < c.margin:
        return "none", (
            f"{text}; 90% CI [{l90:+.3g}, {h90:+.3g}] inside ±{c.margin:g} nats: equivalent "
            f"to no effect (TOST p = {max(c.tost):.2g})"
        )
    return "inconclusive", (
        f"{text}; 90% CI [{l90:+.3g}, {h90:+.3g}] reaches past ±{c.margin:g} nats: neither "
        "significant nor equivalent"
    )


def cannot_move(recs: pd.DataFrame | None) -> pd.DataFrame:
    """Per (model, language, readout): the median baseline top-1 probability and whether the
    readout cannot move (median ≥ :data:`CERTAIN`: its next token is certain)."""
    cols = ["model", "language", "readout", "median p_top1_baseline", "n", "can move"]
    if recs is None or "p_top1_baseline" not in recs or "readout" not in recs:
        return pd.DataFrame(columns=cols)
    base = recs[recs["readout"].isin(["call", "after_marker"])]
    base = base.drop_duplicates(["model", "language", "readout", "sample_id"])
    rows = []
    for (m, g, r), grp in base.groupby(["model", "language", "readout"]):
        med = float(grp["p_top1_baseline"].median())
        rows.append({"model": m, "language": g, "readout": r, "median p_top1_baseline": med,
                     "n": len(grp),
                     "can move": "cannot move: next token is certain" if med >= CERTAIN
                     else "yes"})  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def inert_check(recs: pd.DataFrame | None) -> pd.DataFrame:
    """Per (model, language, scope): the largest ``target_rel_dev`` of the inert control
    (targets' attention relative to baseline; must be ≤ 2%)."""
    cols = ["model", "language", "scope", "rows", "max target_rel_dev", "passes"]
    if recs is None or "target_rel_dev" not in recs or "arm" not in recs:
        return pd.DataFrame(columns=cols)
    inert = recs[recs["arm"] == "inert_control"]
    rows = []
    for (m, g, s), grp in inert.groupby(["model", "language", "scope"]):
        v = float(grp["target_rel_dev"].max())
        rows.append({"model": m, "language": g, "scope": s, "rows": len(grp),
                     "max target_rel_dev": v,
                     "passes": "yes" if v <= INERT_TOLERANCE else "**no**"})  # fmt: skip
    return pd.DataFrame(rows, columns=cols)
