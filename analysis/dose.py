"""H2: does preservation rise with the steering dose up to the Python level, then plateau?

Per model, language and steering scope (H2 runs in every scope where steering reaches the
output), over the generations under ``baseline`` (dose 1) and every Scale arm of that scope (``scale_<f>``, ``scale_calibrated``, ``scale_calibrated_x2``), with
``x = log2(dose)``:

* **Trend**: GEE logistic regression ``preserved ~ x`` with prompts as clusters
  (exchangeable working correlation; statsmodels), which respects the pairing of the doses
  of one prompt. Cross-check: a paired permutation trend test -- the statistic is
  ``Σ (x − mean x of the prompt) · preserved``, and the outcomes are permuted among the doses
  *within* each prompt (seeded).
* **Plateau**: a hinge at the dose that brings the language to the Python level (1 for Python,
  the calibrated Scale factor for Rust): ``preserved ~ x + max(0, x − knot)``. The slope up to
  the level is ``b1``, beyond it ``b1 + b2``. "Rises, then plateaus" is shown when ``b1 > 0``
  significantly and the slope beyond is not significantly positive while ``b2 < 0``
  significantly. Python, already at its level at dose 1, is the control: its doses above 1 all
  lie beyond the knot.

When no prompt's preservation changes with the dose, nothing is estimable: the result reads
"not estimable" with no CI and no p. A fit that raises reads "fit failed: <reason>" (logged at
WARNING), never "does not vary".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from analysis.scopes import with_scope

__all__ = ["DoseRates", "H2Result", "dose_rates", "h2", "permutation_trend"]

log = logging.getLogger(__name__)

SCALE_ARMS = ("scale_calibrated", "scale_calibrated_x2")


@dataclass(frozen=True, kw_only=True)
class H2Result:
    """The dose-response of one model and language.

    Attributes:
        n_prompts / n_rows: prompts (clusters) and rows in the fit.
        slope / slope_ci / slope_p: GEE log-odds per doubling of the dose (95% Wald CI).
        perm_p: the permutation trend test's p (two-sided).
        knot: the dose at the Python level (1 for Python; the calibrated factor otherwise).
        before / after: hinge-model slopes up to and beyond the knot (log-odds per doubling),
            each ``(estimate, ci_low, ci_high, p)``; NaN when the hinge cannot be fitted.
        bend_p: p of ``b2`` (the change of slope at the knot).
        verdict: the finding in words.
        scope: the steering scope the doses come from ("" = every Scale arm).
        status: ``estimated``, ``not estimable`` or ``fit failed: <reason>``.
    """

    model: str
    language: str
    n_prompts: int
    n_rows: int
    slope: float
    slope_ci: tuple[float, float]
    slope_p: float
    perm_p: float
    knot: float
    before: tuple[float, float, float, float]
    after: tuple[float, float, float, float]
    bend: float
    bend_p: float
    verdict: str
    scope: str = ""
    status: str = "estimated"


def _dose_table(gens: pd.DataFrame, scope: str | None = None) -> pd.DataFrame:
    """Rows of the Scale dose-response: sample_id, dose, x = log2(dose), preserved (Scale
    arms of ``scope`` only, when given)."""
    g = with_scope(gens)
    scale = (
        g["arm"].str.startswith("scale_") & (g["op"] == "scale")
        if "op" in g
        else g["arm"].str.startswith("scale_")
    )
    if scope:
        scale &= g["scope"] == scope
    rows = g[(g["arm"] == "baseline") | scale].copy()
    rows["dose"] = np.where(rows["arm"] == "baseline", 1.0, rows["factor"].astype(float))
    rows = rows[np.isfinite(rows["dose"]) & (rows["dose"] > 0)]
    rows["x"] = np.log2(rows["dose"])
    rows["preserved"] = rows["preserved"].astype(float)
    return rows[["sample_id", "arm", "dose", "x", "preserved"]]


@dataclass(frozen=True)
class DoseRates:
    """Preservation at each dose with its Wilson 95% CI (for the figure)."""

    arm: str
    dose: float
    rate: float
    ci: tuple[float, float]
    n: int


def dose_rates(gens: pd.DataFrame) -> list[DoseRates]:
    """Preservation per dose arm (baseline = dose 1), sorted by dose."""
    t = _dose_table(gens)
    out = []
    for arm, grp in t.groupby("arm"):
        k, n = int(grp["preserved"].sum()), len(grp)
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        out.append(
            DoseRates(str(arm), float(grp["dose"].median()), k / n, (float(lo), float(hi)), n)
        )
    return sorted(out, key=lambda r: r.dose)


def permutation_trend(t: pd.DataFrame, n_perm: int = 9999, seed: int = 0) -> float:
    """Two-sided p of the within-prompt permutation trend test (module docstring)."""
    rng = np.random.default_rng(seed)
    groups = [g for _, g in t.groupby("sample_id") if g["x"].nunique() > 1]
    if not groups:
        return math.nan
    xs = [g["x"].to_numpy() - g["x"].mean() for g in groups]
    ys = [g["preserved"].to_numpy() for g in groups]
    obs = sum(float(x @ y) for x, y in zip(xs, ys, strict=True))
    # One vectorised draw per prompt: permute its outcomes n_perm times.
    total = np.zeros(n_perm)
    for x, y in zip(xs, ys, strict=True):
        perms = np.argsort(rng.random((n_perm, y.size)), axis=1)
        total += y[perms] @ x
    return float((1 + np.sum(np.abs(total) >= abs(obs) - 1e-12)) / (1 + n_perm))


def _gee(t: pd.DataFrame, cols: list[str]):
    import statsmodels.api as sm

    exog = sm.add_constant(t[cols].to_numpy(dtype=float), has_constant="add")
    model = sm.GEE(t["preserved"].to_numpy(dtype=float), exog, groups=t["sample_id"].to_numpy(),
                   family=sm.families.Binomial(), cov_struct=sm.cov_struct.Exchangeable())  # fmt: skip
    return model.fit()


def _failed(what: str, model: str, language: str, scope: str, exc: BaseException) -> str:
    reason = f"{what} GEE: {type(exc).__name__}: {exc}".replace("\n", " ")
    log.warning("H2 %s failed for %s/%s/%s: %s", what, model, language, scope or "-", reason)
    return f"fit failed: {reason}"


def h2(
    gens: pd.DataFrame, *, model: str, language: str, alpha: float = 0.05, scope: str = ""
) -> H2Result | None:
    """H2 for one model, language and scope (module docstring); None without a dose-response
    (fewer than 3 doses or 5 prompts)."""
    g = gens[(gens["model"] == model) & (gens["language"] == language)]
    t = _dose_table(g, scope or None)
    if t["dose"].nunique() < 3 or t["sample_id"].nunique() < 5:
        return None
    cal = t.loc[t["arm"] == "scale_calibrated", "dose"]
    knot = 1.0 if language == "python" or cal.empty else float(cal.median())
    nan4 = (math.nan, math.nan, math.nan, math.nan)
    nan2 = (math.nan, math.nan)
    if t.groupby("sample_id")["preserved"].nunique().max() < 2:
        # Every prompt is preserved (or not) at every dose alike: nothing to estimate.
        return H2Result(
            model=model, language=language, n_prompts=int(t["sample_id"].nunique()),
            n_rows=len(t), slope=math.nan, slope_ci=nan2, slope_p=math.nan, perm_p=math.nan,
            knot=knot, before=nan4, after=nan4, bend=math.nan, bend_p=math.nan,
            verdict="not estimable: no prompt's preservation changes with the dose (no CI, "
            "no p)", scope=scope, status="not estimable",
        )  # fmt: skip
    status = "estimated"
    slope, slope_ci, slope_p = math.nan, nan2, math.nan
    try:
        fit = _gee(t, ["x"])
        slope = float(fit.params[1])
        ci = fit.conf_int()[1]
        slope_ci, slope_p = (float(ci[0]), float(ci[1])), float(fit.pvalues[1])
        if not all(map(math.isfinite, (slope, *slope_ci, slope_p))):
            raise FloatingPointError(f"non-finite estimate (slope {slope}, p {slope_p})")
    except Exception as exc:
        status = _failed("trend", model, language, scope, exc)
        slope, slope_ci, slope_p = math.nan, nan2, math.nan
    perm = permutation_trend(t)
    before, after, bend, bend_p = nan4, nan4, math.nan, math.nan
    t = t.assign(h=np.maximum(0.0, t["x"] - math.log2(knot)))
    if (
        t["preserved"].nunique() > 1
        and t["h"].nunique() > 1
        and t.loc[t["h"] == 0, "x"].nunique() > 1
        and t["x"].nunique() > 2
    ):
        try:
            fit = _gee(t, ["x", "h"])
            b, cov = np.asarray(fit.params), np.asarray(fit.cov_params())
            z = stats.norm.ppf(0.975)

            def lin(w: np.ndarray) -> tuple[float, float, float, float]:
                est, se = float(w @ b), float(math.sqrt(max(w @ cov @ w, 0)))
                p = float(2 * stats.norm.sf(abs(est) / se)) if se > 0 else math.nan
                return est, est - z * se, est + z * se, p

            before = lin(np.array([0.0, 1.0, 0.0]))
            after = lin(np.array([0.0, 1.0, 1.0]))
            bend, _, _, bend_p = lin(np.array([0.0, 0.0, 1.0]))
        except Exception as exc:
            hinge = _failed("hinge", model, language, scope, exc)
            status = hinge if status == "estimated" else status
    if status.startswith("fit failed") and math.isnan(slope_p):
        verdict = f"{status} (permutation p = {perm:.2g})"
    else:
        verdict = _h2_words(
            language, slope, slope_p, perm, knot, before, after, bend, bend_p, alpha
        )
        if status.startswith("fit failed"):
            verdict += f"; the plateau: {status}"
    return H2Result(
        model=model, language=language, n_prompts=int(t["sample_id"].nunique()), n_rows=len(t),
        slope=slope, slope_ci=slope_ci, slope_p=slope_p, perm_p=perm, knot=knot,
        before=before, after=after, bend=bend, bend_p=bend_p, verdict=verdict, scope=scope,
        status=status,
    )  # fmt: skip


def _h2_words(
    language: str, slope: float, slope_p: float, perm: float, knot: float,
    before: tuple[float, ...], after: tuple[float, ...], bend: float, bend_p: float, alpha: float,
) -> str:  # fmt: skip
    if math.isnan(slope_p):
        return "no trend could be estimated"
    trend = (
        f"preservation {'rises' if slope > 0 else 'falls'} with the dose "
        f"({slope:+.2f} log-odds per doubling, GEE p = {slope_p:.2g}; permutation p = {perm:.2g})"
        if slope_p < alpha
        else f"no trend with the dose ({slope:+.2f} log-odds per doubling, GEE p = "
        f"{slope_p:.2g}; permutation p = {perm:.2g})"
    )
    if math.isnan(before[3]) and math.isnan(after[3]):
        return (
            trend + "; the plateau could not be tested (no doses on both sides of the Python level)"
        )
    rises = before[0] > 0 and before[3] < alpha
    beyond_up = after[0] > 0 and after[3] < alpha
    bends = bend < 0 and bend_p < alpha
    if rises and bends and not beyond_up:
        shape = "it rises up to the Python level and plateaus beyond it"
    elif rises and not bends:
        shape = "it rises up to the Python level, but no plateau beyond it is shown"
    elif not math.isnan(before[3]) and not rises:
        shape = "no rise up to the Python level is shown"
    else:
        shape = "the shape around the Python level is unclear"
    where = (
        "its own level is dose 1"
        if language == "python"
        else f"the Python level is at Scale {knot:.3g}"
    )
    return (
        f"{trend}; {shape} (slope up to the level {before[0]:+.2f} [{before[1]:+.2f}, "
        f"{before[2]:+.2f}], beyond {after[0]:+.2f} [{after[1]:+.2f}, {after[2]:+.2f}]; {where})"
    )
