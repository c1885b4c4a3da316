"""Per-prompt preservation rates over k decodings, and the paired test of one condition vs another.

A generations table with several decodings per prompt (``decoding`` in {"greedy", "sampled"},
``sample_index``, ``gen_seed``) gives each prompt a *rate*: the share of its decodings that are
``preserved`` (or ``calls_function``). By default the rate counts the sampled decodings only; the
greedy decoding stays the compared row (its paired test is the exact McNemar of
:mod:`analysis.equivalence`).

A condition (a knockout) is compared with its reference (a control draw, or baseline) on the
prompts present in both:

* **Primary**: the paired BCa bootstrap (:func:`analysis.hypothesis.bootstrap_mean_diff`,
  seeded) of the mean per-prompt rate difference ``cond − ref``; significant when its
  ``1 − alpha`` CI excludes 0; its 90% CI decides equivalence within ±margin (TOST).
* **Cross-check**: a GEE logistic model on the decoding-level outcomes, ``y ~ condition``,
  prompts as clusters with an exchangeable working correlation and robust (sandwich) standard
  errors (Liang & Zeger 1986; statsmodels ``GEE``). Its coefficient is the population-averaged
  log odds ratio, cond vs ref.

:func:`paired_rate_test` reports both and whether they agree in sign and in significance.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    IterationLimitWarning,
    PerfectSeparationWarning,
)

from analysis.equivalence import Effect
from analysis.hypothesis import bootstrap_mean_diff
from analysis.pairing import paired

__all__ = [
    "DECODINGS",
    "GENERATION_COLUMNS",
    "GeeResult",
    "RateComparison",
    "classify_rates",
    "decoding_rows",
    "gee_paired",
    "paired_rate_test",
    "prompt_rates",
]

DECODINGS = ("greedy", "sampled")
GENERATION_COLUMNS = ("sample_id", "condition", "decoding", "sample_index", "gen_seed")
OUTCOMES = ("preserved", "calls_function")
_ONE_VALUE = ("model", "language")
_FIT_WARNINGS = (ConvergenceWarning, IterationLimitWarning, PerfectSeparationWarning)


def _check_decodings(decodings: tuple[str, ...]) -> None:
    if not decodings or set(decodings) - set(DECODINGS):
        raise ValueError(f"decodings must be a non-empty subset of {DECODINGS}; got {decodings!r}")


def decoding_rows(
    gens: pd.DataFrame, *, outcome: str = "preserved", decodings: tuple[str, ...] = ("sampled",)
) -> pd.DataFrame:
    """The validated decoding-level rows of ``decodings``: the key columns plus ``y`` (0/1).

    Raises:
        ValueError: a column is missing; ``decoding`` holds an unknown value; the table mixes
            models or languages; the outcome is missing/non-boolean; a (sample_id, condition,
            decoding, sample_index) key repeats.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}; got {outcome!r}")
    _check_decodings(decodings)
    missing = sorted({*GENERATION_COLUMNS, outcome} - set(gens.columns))
    if missing:
        raise ValueError(
            f"the generations table lacks columns {missing}; sampled decodings need "
            "decoding/sample_index/gen_seed (docs/RECORDS.md)"
        )
    for col in _ONE_VALUE:
        if col in gens.columns and gens[col].nunique() > 1:
            raise ValueError(
                f"the table mixes {col}s {sorted(gens[col].unique())}; "
                f"filter to one {col} before computing rates"
            )
    unknown = sorted(set(gens["decoding"].astype(str)) - set(DECODINGS))
    if unknown:
        raise ValueError(f"decoding holds {unknown}; allowed values are {DECODINGS}")
    rows = gens[gens["decoding"].isin(decodings)]
    keys = ["sample_id", "condition", "decoding", "sample_index"]
    dup = rows.duplicated(keys, keep=False)
    if dup.any():
        first = rows.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(
            f"{int(dup.sum())} generation rows share a key, e.g. {first}; keep one row per "
            "(sample_id, condition, decoding, sample_index)"
        )
    y = rows[outcome]
    if y.isna().any():
        raise ValueError(f"{outcome} is missing in {int(y.isna().sum())} rows; drop them first")
    values = set(pd.unique(y.astype(float)))
    if not values <= {0.0, 1.0}:
        raise ValueError(f"{outcome} must be boolean; got values {sorted(values)[:5]}")
    out = rows[[*keys, "gen_seed"]].copy()
    out["y"] = y.astype(float).to_numpy()
    return out.reset_index(drop=True)


def prompt_rates(
    gens: pd.DataFrame,
    *,
    outcome: str = "preserved",
    decodings: tuple[str, ...] = ("sampled",),
) -> pd.DataFrame:
    """Per-prompt rates per condition: one row per (sample_id, condition).

    Columns: ``sample_id``, ``condition``, ``k`` (decodings counted), ``n_positive``, ``rate``
    (``n_positive / k``) and ``greedy`` (that prompt's greedy outcome, NaN without one).
    """
    _check_decodings(decodings)
    return _rates(decoding_rows(gens, outcome=outcome, decodings=DECODINGS), decodings)


def _rates(rows: pd.DataFrame, decodings: tuple[str, ...]) -> pd.DataFrame:
    """:func:`prompt_rates` from validated rows of every decoding."""
    use = rows[rows["decoding"].isin(decodings)]
    grouped = use.groupby(["sample_id", "condition"], sort=True)["y"]
    out = grouped.agg(k="size", n_positive="sum").reset_index()
    out["n_positive"] = out["n_positive"].astype(int)
    out["rate"] = out["n_positive"] / out["k"]
    g = rows[rows["decoding"] == "greedy"].groupby(["sample_id", "condition"])["y"]
    if (g.size() > 1).any():
        raise ValueError("a prompt has several greedy decodings under one condition; keep one")
    out = out.merge(
        g.first().rename("greedy").reset_index(), on=["sample_id", "condition"], how="left"
    )
    return out


@dataclass(frozen=True, kw_only=True)
class GeeResult:
    """The GEE cross-check: log odds ratio cond vs ref with its Wald CI and robust p.

    ``status`` is "ok", "not estimable: <why>" (nothing varies, or one arm is all 0/1) or
    "fit failed: <reason>"; the numbers are NaN unless it is "ok".
    """

    log_or: float
    ci: tuple[float, float]
    pvalue: float
    icc: float
    n_clusters: int
    n_rows: int
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _gee_nan(status: str, n_clusters: int, n_rows: int) -> GeeResult:
    return GeeResult(log_or=math.nan, ci=(math.nan, math.nan), pvalue=math.nan, icc=math.nan,
                     n_clusters=n_clusters, n_rows=n_rows, status=status)  # fmt: skip


def gee_paired(rows: pd.DataFrame, cond: str, ref: str, *, alpha: float = 0.05) -> GeeResult:
    """GEE binomial ``y ~ 1 + [condition == cond]``, clusters = prompts, exchangeable.

    ``rows`` are decoding-level rows (:func:`decoding_rows`) of ``cond`` and ``ref`` on the
    prompts they share. The CI is the ``1 − alpha`` Wald interval on the robust covariance.
    """
    sub = rows[rows["condition"].isin((cond, ref))]
    shared = set(sub.loc[sub["condition"] == cond, "sample_id"]) & set(
        sub.loc[sub["condition"] == ref, "sample_id"]
    )
    sub = sub[sub["sample_id"].isin(shared)].sort_values(["sample_id", "condition"])
    n_cl, n_rows = len(shared), len(sub)
    if n_cl < 2:
        return _gee_nan(f"not estimable: {n_cl} prompt(s) in both conditions", n_cl, n_rows)
    treat = (sub["condition"] == cond).to_numpy(dtype=float)
    y = sub["y"].to_numpy(dtype=float)
    for arm, mask in ((cond, treat == 1), (ref, treat == 0)):
        if np.ptp(y[mask]) == 0:
            return _gee_nan(f"not estimable: every decoding of {arm} has y={y[mask][0]:.0f}",
                            n_cl, n_rows)  # fmt: skip
    exog = np.column_stack([np.ones_like(treat), treat])
    groups = pd.factorize(sub["sample_id"])[0]
    model = sm.GEE(y, exog, groups=groups, family=sm.families.Binomial(),
                   cov_struct=sm.cov_struct.Exchangeable())  # fmt: skip
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = model.fit()
    except (ValueError, np.linalg.LinAlgError) as exc:
        return _gee_nan(f"fit failed: {type(exc).__name__}: {exc}".splitlines()[0], n_cl, n_rows)
    bad = [w for w in caught if issubclass(w.category, _FIT_WARNINGS)]
    if bad:
        return _gee_nan(f"fit failed: {bad[0].category.__name__}: {bad[0].message}".splitlines()[0],
                        n_cl, n_rows)  # fmt: skip
    if not (np.isfinite(res.params).all() and np.isfinite(res.bse).all()):
        return _gee_nan("fit failed: non-finite estimate or standard error", n_cl, n_rows)
    lo, hi = (float(v) for v in np.asarray(res.conf_int(alpha=alpha))[1])
    dep = model.cov_struct.dep_params
    return GeeResult(log_or=float(res.params[1]), ci=(lo, hi), pvalue=float(res.pvalues[1]),
                     icc=float(dep), n_clusters=n_cl, n_rows=n_rows,
                     status="ok")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RateComparison:
    """A condition vs its reference on per-prompt rates (cond − ref), two ways.

    Attributes:
        n_prompts: paired prompts; k_min / k_max: decodings per prompt and condition.
        ref_mean / cond_mean: mean per-prompt rates.
        effect: mean per-prompt rate difference (cond − ref).
        ci: the bootstrap's ``1 − alpha`` BCa CI; ci90: its 90% BCa CI (equivalence).
        boot_significant: ``ci`` excludes 0.
        degenerate: every prompt has the same rate difference, so the bootstrap CI is a point
            (no verdict other than "inconclusive" is drawn from it).
        gee: the GEE cross-check.
        sign_agree: the bootstrap effect and the GEE log OR have the same sign (None: no GEE,
            or an effect of exactly 0).
        significance_agree: the bootstrap CI and the GEE p (< alpha) give the same decision
            (None: no GEE).
        agree: both agree in significance and, where significant, in sign (None: no GEE).
    """

    cond: str
    ref: str
    outcome: str
    alpha: float
    n_prompts: int
    k_min: int
    k_max: int
    ref_mean: float
    cond_mean: float
    effect: float
    ci: tuple[float, float]
    ci90: tuple[float, float]
    boot_significant: bool
    degenerate: bool
    gee: GeeResult
    sign_agree: bool | None
    significance_agree: bool | None
    agree: bool | None
    note: str


def paired_rate_test(
    gens: pd.DataFrame,
    cond: str,
    ref: str,
    *,
    outcome: str = "preserved",
    decodings: tuple[str, ...] = ("sampled",),
    alpha: float = 0.05,
    n_resamples: int = 9999,
    seed: int = 0,
) -> RateComparison:
    """Compare ``cond`` with ``ref`` on per-prompt rates: paired BCa bootstrap + GEE.

    Args:
        gens: one model and language's generations (see :func:`decoding_rows`).
        cond / ref: condition names (e.g. a knockout and its inert control draw, or baseline).
        alpha: the decision level (pass the family's Bonferroni α).
        n_resamples / seed: the bootstrap's resamples and seed.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    _check_decodings(decodings)
    every = decoding_rows(gens, outcome=outcome, decodings=DECODINGS)
    rows = every[every["decoding"].isin(decodings)]
    present = set(rows["condition"])
    for name in (cond, ref):
        if name not in present:
            raise ValueError(
                f"condition {name!r} has no {'/'.join(decodings)} decodings; present: "
                f"{sorted(present)}"
            )
    rates = _rates(every, decodings)
    pair = paired(rates, "rate", cond, ref)
    if len(pair) < 2:
        raise ValueError(f"{cond!r} and {ref!r} share {len(pair)} prompt(s); need >= 2 to compare")
    ks = rates[rates["sample_id"].isin(pair.index) & rates["condition"].isin((cond, ref))]["k"]
    boot = bootstrap_mean_diff(pair["cond"], pair["ref"], paired=True, n_resamples=n_resamples,
                               seed=seed, confidence_level=1 - alpha)  # fmt: skip
    boot90 = bootstrap_mean_diff(pair["cond"], pair["ref"], paired=True,
                                 n_resamples=n_resamples, seed=seed,
                                 confidence_level=0.90)  # fmt: skip
    degenerate = bool(np.ptp(pair["cond"].to_numpy() - pair["ref"].to_numpy()) == 0)
    sig = not degenerate and not (boot.ci_low <= 0 <= boot.ci_high)
    gee = gee_paired(rows[rows["sample_id"].isin(pair.index)], cond, ref, alpha=alpha)
    sign_agree = sig_agree = agree = None
    if gee.ok:
        sig_agree = sig == (gee.pvalue < alpha)
        if boot.effect != 0 and gee.log_or != 0:
            sign_agree = bool(np.sign(boot.effect) == np.sign(gee.log_or))
        agree = sig_agree and (not sig or bool(sign_agree))
    note = (
        f"paired BCa bootstrap of the mean per-prompt {outcome} rate difference over "
        f"{'/'.join(decodings)} decodings ({n_resamples} resamples, seed {seed}); GEE binomial, "
        f"prompt clusters, exchangeable: {gee.status}"
    )
    return RateComparison(
        cond=cond, ref=ref, outcome=outcome, alpha=alpha, n_prompts=len(pair),
        k_min=int(ks.min()), k_max=int(ks.max()), ref_mean=float(pair["ref"].mean()),
        cond_mean=float(pair["cond"].mean()), effect=boot.effect,
        ci=(boot.ci_low, boot.ci_high), ci90=(boot90.ci_low, boot90.ci_high),
        boot_significant=sig, degenerate=degenerate, gee=gee, sign_agree=sign_agree, significance_agree=sig_agree,
        agree=agree, note=note,
    )  # fmt: skip


def classify_rates(
    cmp: RateComparison, *, margin: float, predicted_sign: int
) -> tuple[Effect, str]:
    """The verdict on a rate comparison and its reason in words.

    * **predicted** / **opposite**: the bootstrap CI excludes 0 and the GEE cross-check
      agrees (or could not be fitted, which is said), in / against ``predicted_sign``;
    * **none**: not significant, and the 90% bootstrap CI lies inside ±margin (TOST);
    * **inconclusive**: otherwise, including when bootstrap and GEE disagree and when every
      prompt's rate difference is the same (no CI: not estimable).
    """
    if predicted_sign not in (-1, 1):
        raise ValueError(f"predicted_sign must be -1 or +1; got {predicted_sign!r}")
    if not 0 < margin < 1:
        raise ValueError(f"margin must lie in (0, 1); got {margin!r}")
    pp = 100 * cmp.effect
    lo, hi = (100 * v for v in cmp.ci)
    lo90, hi90 = (100 * v for v in cmp.ci90)
    level = f"{100 * (1 - cmp.alpha):.3g}%"
    gee = (
        f"GEE log OR {cmp.gee.log_or:+.2f}, p = {cmp.gee.pvalue:.3g}"
        if cmp.gee.ok
        else f"GEE {cmp.gee.status}"
    )
    what = f"{cmp.outcome} rate {pp:+.1f} pp over {cmp.n_prompts} prompts"
    if cmp.degenerate:
        return "inconclusive", (
            f"{what}: every prompt's rate difference is {pp:+.1f} pp, so the bootstrap has no "
            f"spread to give a CI (not estimable; {gee}); the greedy McNemar row decides"
        )
    if cmp.agree is False:
        return "inconclusive", (
            f"{what}, {level} CI [{lo:+.1f}, {hi:+.1f}]; {gee}: the bootstrap and the GEE "
            "cross-check disagree"
        )
    if cmp.boot_significant:
        kind: Effect = "predicted" if np.sign(cmp.effect) == predicted_sign else "opposite"
        said = "as predicted" if kind == "predicted" else "OPPOSITE to the prediction"
        return kind, f"{what}, {level} CI [{lo:+.1f}, {hi:+.1f}] ({gee}): significant, {said}"
    if -margin < cmp.ci90[0] and cmp.ci90[1] < margin:
        return "none", (
            f"{what}, 90% CI [{lo90:+.1f}, {hi90:+.1f}] inside ±{100 * margin:.0f} pp ({gee}): "
            "equivalent to no effect (TOST)"
        )
    return "inconclusive", (
        f"{what}, 90% CI [{lo90:+.1f}, {hi90:+.1f}] reaches past ±{100 * margin:.0f} pp ({gee}): "
        "neither significant nor equivalent"
    )
