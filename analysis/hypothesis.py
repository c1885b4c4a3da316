"""Paired and unpaired tests, effect sizes and multiplicity corrections (scipy / statsmodels).

Every function takes plain arrays (columns of the record tables) and returns a ``TestResult``
or plain numbers. NaN in any input raises ``ValueError`` naming the argument: a test over data
with holes must be made explicit by the caller (drop the rows first), never silently NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.contingency_tables import Table2x2, mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

__all__ = [
    "TestResult",
    "bootstrap_mean_diff",
    "cohens_d",
    "correct",
    "mcnemar_asymptotic",
    "mcnemar_exact",
    "mcnemar_from_pairs",
    "mcnemar_odds_ratio",
    "odds_ratio",
    "paired_t",
    "welch_t",
    "wilcoxon_signed_rank",
]


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """One statistical test.

    Attributes:
        name: the test (e.g. ``"mcnemar_exact"``).
        statistic: the test statistic (see ``note`` for which).
        pvalue: two-sided p-value; None where the procedure gives none (bootstrap CI).
        effect: the effect size (see ``note`` for which and its direction).
        ci_low: lower bound of the 95% CI of ``effect`` (NaN where none is defined).
        ci_high: upper bound of the 95% CI of ``effect``.
        n: number of observations (pairs for paired tests, both groups for unpaired).
        note: what was computed: statistic, effect and direction, corrections applied.
    """

    __test__ = False  # not a pytest test class

    name: str
    statistic: float
    pvalue: float | None
    effect: float
    ci_low: float
    ci_high: float
    n: int
    note: str = ""


def _vector(x: ArrayLike, name: str, *, min_n: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).ravel()
    if np.isnan(arr).any():
        bad = np.flatnonzero(np.isnan(arr))[:5].tolist()
        raise ValueError(f"{name} contains NaN at positions {bad}; drop or fill those rows first")
    if arr.size < min_n:
        raise ValueError(f"{name} needs at least {min_n} values; got {arr.size}")
    return arr


def _count(x: int, name: str) -> int:
    if isinstance(x, bool) or (isinstance(x, float) and math.isnan(x)):
        raise ValueError(f"{name} must be a non-negative integer count; got {x!r}")
    if int(x) != x or x < 0:
        raise ValueError(f"{name} must be a non-negative integer count; got {x!r}")
    return int(x)


def _paired_diff_ci(b: int, c: int, n: int) -> tuple[float, float, float]:
    """Difference of paired proportions (c − b)/n with its Wald 95% CI."""
    if n == 0:
        return 0.0, math.nan, math.nan
    diff = (c - b) / n
    se = math.sqrt(max((b + c) - (c - b) ** 2 / n, 0.0)) / n
    z = stats.norm.ppf(0.975)
    return diff, diff - z * se, diff + z * se


def mcnemar_exact(b: int, c: int, *, n: int | None = None) -> TestResult:
    """Exact (binomial) McNemar test on the discordant pair counts.

    Args:
        b: pairs positive before (baseline) and negative after (condition).
        c: pairs negative before and positive after.
        n: total pairs (concordant included), for the effect size; defaults to b + c.

    Returns:
        statistic = min(b, c), two-sided binomial p-value; effect = (c − b)/n, the change in
        the positive rate (after − before) with a Wald 95% CI. No discordant pairs → p = 1.
    """
    b, c = _count(b, "b"), _count(c, "c")
    n_total = b + c if n is None else _count(n, "n")
    if n_total < b + c:
        raise ValueError(f"n={n_total} is smaller than the discordant pairs b + c = {b + c}")
    res = mcnemar([[0, b], [c, 0]], exact=True)
    diff, lo, hi = _paired_diff_ci(b, c, n_total)
    return TestResult(
        name="mcnemar_exact",
        statistic=float(res.statistic),
        pvalue=float(res.pvalue),
        effect=diff,
        ci_low=lo,
        ci_high=hi,
        n=n_total,
        note=f"exact binomial McNemar, b={b} c={c}; effect = (c-b)/n (after - before rate)",
    )


def mcnemar_asymptotic(
    b: int, c: int, *, n: int | None = None, correction: bool = True
) -> TestResult:
    """Chi-square McNemar test ((|b − c| − 1)² / (b + c) with continuity correction).

    No discordant pairs → statistic 0 and p = 1 (the chi-square statistic is undefined there;
    stated in ``note``).
    """
    b, c = _count(b, "b"), _count(c, "c")
    n_total = b + c if n is None else _count(n, "n")
    if n_total < b + c:
        raise ValueError(f"n={n_total} is smaller than the discordant pairs b + c = {b + c}")
    diff, lo, hi = _paired_diff_ci(b, c, n_total)
    if b + c == 0:
        stat, p, extra = 0.0, 1.0, "; no discordant pairs: statistic undefined, reported as 0, p=1"
    else:
        res = mcnemar([[0, b], [c, 0]], exact=False, correction=correction)
        stat, p, extra = float(res.statistic), float(res.pvalue), ""
    corr = "with" if correction else "without"
    return TestResult(
        name="mcnemar_chi2",
        statistic=stat,
        pvalue=p,
        effect=diff,
        ci_low=lo,
        ci_high=hi,
        n=n_total,
        note=f"chi-square McNemar {corr} continuity correction, b={b} c={c}{extra}",
    )


def mcnemar_from_pairs(before: ArrayLike, after: ArrayLike, *, exact: bool = True) -> TestResult:
    """McNemar test from paired booleans (e.g. ``preserved`` at baseline and under a condition).

    Args:
        before: booleans of the reference condition, one per pair.
        after: booleans of the compared condition, same order.
        exact: exact binomial test (default) or chi-square with continuity correction.
    """
    x = _vector(before, "before")
    y = _vector(after, "after")
    if x.shape != y.shape:
        raise ValueError(f"before and after differ in length: {x.size} vs {y.size}; pair them")
    for arr, name in ((x, "before"), (y, "after")):
        if not np.isin(arr, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be boolean (0/1); got values {np.unique(arr)[:5]}")
    b = int(np.sum((x == 1) & (y == 0)))
    c = int(np.sum((x == 0) & (y == 1)))
    fn = mcnemar_exact if exact else mcnemar_asymptotic
    return fn(b, c, n=int(x.size))


def mcnemar_odds_ratio(b: int, c: int) -> TestResult:
    """Conditional (paired) odds ratio of a McNemar table with an exact 95% CI.

    In this module's naming (see :func:`mcnemar_exact`) ``c`` counts the pairs positive only
    *after* (under the condition) and ``b`` those positive only *before*; the conditional odds
    ratio is OR = c / b (the textbook "b/c" with b = pairs that favour the condition), so OR > 1
    means the condition raises the positive rate. Given b + c discordant pairs, c is
    Binomial(b + c, π) with OR = π / (1 − π); the CI is the Clopper–Pearson (exact) interval of
    π transformed by π / (1 − π). pvalue = the exact McNemar p (H0: OR = 1).

    b = 0 gives OR = inf (upper bound inf); c = 0 gives OR = 0; no discordant pairs give NaN
    with CI [0, inf] and p = 1 (stated in ``note``). statistic = log OR (±inf / NaN there).
    """
    b, c = _count(b, "b"), _count(c, "c")
    nd = b + c
    p = float(mcnemar([[0, b], [c, 0]], exact=True).pvalue)
    if nd == 0:
        return TestResult(
            name="mcnemar_odds_ratio",
            statistic=math.nan,
            pvalue=p,
            effect=math.nan,
            ci_low=0.0,
            ci_high=math.inf,
            n=0,
            note="conditional odds ratio c/b: no discordant pairs, undefined (CI [0, inf])",
        )
    lo_p, hi_p = proportion_confint(c, nd, alpha=0.05, method="beta")

    def odds(q: float) -> float:
        return math.inf if q >= 1.0 else q / (1.0 - q)

    ratio = math.inf if b == 0 else c / b
    return TestResult(
        name="mcnemar_odds_ratio",
        statistic=math.log(ratio) if 0 < ratio < math.inf else (math.inf if b == 0 else -math.inf),
        pvalue=p,
        effect=ratio,
        ci_low=odds(float(lo_p)),
        ci_high=odds(float(hi_p)),
        n=nd,
        note=f"conditional (paired) odds ratio c/b, b={b} c={c}; exact Clopper-Pearson CI of "
        "c/(b+c) transformed to odds; p = exact McNemar; n = discordant pairs",
    )


def paired_t(a: ArrayLike, b: ArrayLike) -> TestResult:
    """Paired t test of a − b (scipy ``ttest_rel``), the parametric manipulation check.

    effect = mean(a − b) with its t 95% CI; the standardized effect d_z = mean / SD(diff) is
    :func:`cohens_d` with ``paired=True``. Differences without spread raise (t undefined).
    """
    x = _vector(a, "a", min_n=2)
    y = _vector(b, "b", min_n=2)
    if x.shape != y.shape:
        raise ValueError(f"a and b differ in length: {x.size} vs {y.size}; pair them")
    diff = x - y
    if np.ptp(diff) == 0:
        raise ValueError(
            f"every difference a - b equals {diff[0]!r}: the paired t is undefined; "
            "report the difference instead"
        )
    res = stats.ttest_rel(x, y)
    ci = res.confidence_interval(0.95)
    return TestResult(
        name="paired_t",
        statistic=float(res.statistic),
        pvalue=float(res.pvalue),
        effect=float(diff.mean()),
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        n=int(x.size),
        note=f"paired t, df={int(res.df)}; effect = mean(a - b) with t 95% CI",
    )


def welch_t(a: ArrayLike, b: ArrayLike) -> TestResult:
    """Welch's unequal-variance t test (scipy ``ttest_ind(equal_var=False)``).

    effect = mean(a) − mean(b) with the Welch 95% CI; each group needs ≥ 2 values and at least
    one group must vary (otherwise t is undefined and this raises).
    """
    x = _vector(a, "a", min_n=2)
    y = _vector(b, "b", min_n=2)
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        raise ValueError(
            f"a and b are both constant ({x[0]!r}, {y[0]!r}): Welch's t is undefined; "
            "report the means instead"
        )
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(0.95)
    return TestResult(
        name="welch_t",
        statistic=float(res.statistic),
        pvalue=float(res.pvalue),
        effect=float(x.mean() - y.mean()),
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        n=int(x.size + y.size),
        note=f"Welch t, df={float(res.df):.2f}; effect = mean(a) - mean(b)",
    )


def wilcoxon_signed_rank(a: ArrayLike, b: ArrayLike) -> TestResult:
    """Wilcoxon signed-rank test of paired a − b (scipy ``wilcoxon``, two-sided, zeros dropped).

    effect = median(a − b); the CI fields are NaN (use ``bootstrap_mean_diff`` for an
    interval). All differences zero → statistic 0, p = 1.
    """
    x = _vector(a, "a")
    y = _vector(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b differ in length: {x.size} vs {y.size}; pair them")
    diff = x - y
    effect = float(np.median(diff))
    if not np.any(diff != 0):
        stat, p, extra = 0.0, 1.0, "; all differences are zero"
    else:
        res = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
        stat, p, extra = float(res.statistic), float(res.pvalue), ""
    return TestResult(
        name="wilcoxon_signed_rank",
        statistic=stat,
        pvalue=p,
        effect=effect,
        ci_low=math.nan,
        ci_high=math.nan,
        n=int(x.size),
        note=f"Wilcoxon signed-rank (zeros dropped); effect = median(a - b){extra}",
    )


def cohens_d(a: ArrayLike, b: ArrayLike, *, paired: bool = False) -> float:
    """Cohen's d of a − b.

    Unpaired: (mean a − mean b) / pooled SD, pooled SD = sqrt(((na−1)·sa² + (nb−1)·sb²) /
    (na + nb − 2)), sample variances (ddof=1). Paired (d_z): mean(a − b) / SD(a − b), ddof=1.
    A zero SD raises (d is undefined), unless the mean difference is also zero (d = 0).
    """
    x = _vector(a, "a", min_n=2)
    y = _vector(b, "b", min_n=2)
    if paired:
        if x.shape != y.shape:
            raise ValueError(f"paired d needs equal lengths; got {x.size} and {y.size}")
        diff = x - y
        num, sd = float(diff.mean()), float(diff.std(ddof=1))
    else:
        na, nb = x.size, y.size
        num = float(x.mean() - y.mean())
        sd = math.sqrt(((na - 1) * x.var(ddof=1) + (nb - 1) * y.var(ddof=1)) / (na + nb - 2))
    if sd == 0:
        if num == 0:
            return 0.0
        raise ValueError(
            f"Cohen's d is undefined: zero standard deviation with mean difference {num!r}"
        )
    return num / sd


def odds_ratio(table: ArrayLike) -> TestResult:
    """Odds ratio of a 2×2 table [[a, b], [c, d]] = (a·d)/(b·c) with 95% CI (statsmodels).

    Rows are groups, columns are (positive, negative). Where any cell is 0 the Haldane–Anscombe
    correction (+0.5 to every cell) is applied and stated in ``note``; otherwise none.
    statistic = log odds ratio, pvalue tests log OR = 0.
    """
    arr = np.asarray(table, dtype=np.float64)
    if arr.shape != (2, 2):
        raise ValueError(f"table must be 2x2 [[a, b], [c, d]]; got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError("table contains NaN; pass integer counts")
    if (arr < 0).any() or (arr != np.round(arr)).any():
        raise ValueError(f"table must hold non-negative integer counts; got {arr.tolist()}")
    note = "odds ratio (a*d)/(b*c), Woolf log CI"
    if (arr == 0).any():
        arr = arr + 0.5
        note += "; Haldane-Anscombe +0.5 added to every cell because a cell is 0"
    t = Table2x2(arr, shift_zeros=False)
    lo, hi = t.oddsratio_confint(alpha=0.05)
    return TestResult(
        name="odds_ratio",
        statistic=float(t.log_oddsratio),
        pvalue=float(t.oddsratio_pvalue()),
        effect=float(t.oddsratio),
        ci_low=float(lo),
        ci_high=float(hi),
        n=round(float(np.asarray(table, dtype=np.float64).sum())),
        note=note,
    )


def correct(pvalues: ArrayLike, method: Literal["bonferroni", "holm"] = "bonferroni") -> np.ndarray:
    """Family-wise corrected p-values (statsmodels ``multipletests``), same order as given."""
    if method not in ("bonferroni", "holm"):
        raise ValueError(f"method must be 'bonferroni' or 'holm'; got {method!r}")
    p = _vector(pvalues, "pvalues", min_n=0)
    if p.size == 0:
        return p
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"pvalues must lie in [0, 1]; got {p[(p < 0) | (p > 1)][:5].tolist()}")
    return np.asarray(multipletests(p, alpha=0.05, method=method)[1], dtype=np.float64)


def bootstrap_mean_diff(
    a: ArrayLike,
    b: ArrayLike,
    *,
    paired: bool,
    n_resamples: int = 9999,
    seed: int = 0,
    confidence_level: float = 0.95,
) -> TestResult:
    """Bootstrap CI (BCa, scipy ``stats.bootstrap``) of mean(a) − mean(b), seeded.

    Paired: resamples pairs (the statistic is mean(a − b)). Unpaired: resamples each group.
    No p-value (``pvalue`` is None). Data without spread give the point CI [effect, effect].
    """
    x = _vector(a, "a", min_n=2)
    y = _vector(b, "b", min_n=2)
    if n_resamples < 100:
        raise ValueError(f"n_resamples={n_resamples} is too few for a CI; use >= 1000")
    rng = np.random.default_rng(seed)
    if paired:
        if x.shape != y.shape:
            raise ValueError(f"paired bootstrap needs equal lengths; got {x.size} and {y.size}")
        diff = x - y
        effect = float(diff.mean())
        degenerate = np.ptp(diff) == 0
        data: tuple[np.ndarray, ...] = (diff,)

        def statistic(d: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.mean(d, axis=axis)

        n = int(x.size)
    else:
        effect = float(x.mean() - y.mean())
        degenerate = np.ptp(x) == 0 and np.ptp(y) == 0
        data = (x, y)

        def statistic(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:  # type: ignore[misc]
            return np.mean(u, axis=axis) - np.mean(v, axis=axis)

        n = int(x.size + y.size)
    kind = "paired" if paired else "unpaired"
    if degenerate:
        lo = hi = effect
        note = f"{kind} bootstrap: data without spread, CI is the point estimate"
    else:
        res = stats.bootstrap(
            data,
            statistic,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            method="BCa",
            vectorized=True,
            random_state=rng,
        )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        note = f"{kind} BCa bootstrap, {n_resamples} resamples, seed={seed}"
    return TestResult(
        name="bootstrap_mean_diff",
        statistic=effect,
        pvalue=None,
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        n=n,
        note=note + "; effect = mean(a) - mean(b)",
    )
