"""Paired proportions: the difference, its Newcombe CIs, the exact test, power, and the verdict.

"No effect" is an equivalence claim (two one-sided tests, TOST): the 90% CI of the paired
difference lies inside ±``margin``. A significant change is *in the predicted direction* or
*opposite*; anything else is *inconclusive*, stated with its CI. Counts follow
:func:`analysis.hypothesis.mcnemar_exact`: ``b`` pairs are positive under the reference only,
``c`` under the condition only, and the difference is ``(c − b)/n`` (condition − reference).

The CI is Newcombe's (1998) hybrid score interval for paired proportions (his method 10, with
the correlation correction): Wilson intervals of the two marginal proportions combined by
square-and-add. It never collapses to a point (the Wald interval of zero discordant pairs is
[0, 0]). Checked against the worked example of Fagerland, Lydersen & Laake, *Statistical
Analysis of Contingency Tables* (2017), ch. 8, in ``tests/test_equivalence.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

__all__ = [
    "EFFECTS",
    "Effect",
    "PairedDifference",
    "classify_change",
    "mcnemar_power",
    "newcombe_paired_ci",
    "paired_difference",
    "tost_paired_proportions",
]

Effect = Literal[
    "predicted", "none", "opposite", "inconclusive", "unreached", "unmatched", "disagree"
]
EFFECTS: tuple[Effect, ...] = (
    "predicted", "none", "opposite", "inconclusive", "unreached", "unmatched", "disagree",
)  # fmt: skip


def newcombe_paired_ci(a: int, b: int, c: int, d: int, conf: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score CI of ``p_cond − p_ref`` from a paired 2×2 table.

    Args:
        a: pairs positive under both; b: under the reference only; c: under the condition
            only; d: under neither.
        conf: confidence level (0.95 for a two-sided 95% CI, 0.90 for TOST at 5%).
    """
    for name, v in (("a", a), ("b", b), ("c", c), ("d", d)):
        if isinstance(v, bool) or int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer count; got {v!r}")
    if not 0 < conf < 1:
        raise ValueError(f"conf must lie in (0, 1); got {conf!r}")
    n = a + b + c + d
    if n == 0:
        raise ValueError("the table is empty: no pairs")
    alpha = 1 - conf
    ref_pos, cond_pos = a + b, a + c
    p1, p2 = ref_pos / n, cond_pos / n
    l1, u1 = proportion_confint(ref_pos, n, alpha=alpha, method="wilson")
    l2, u2 = proportion_confint(cond_pos, n, alpha=alpha, method="wilson")
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        phi = 0.0
    else:
        cross: float = a * d - b * c
        if cross > n / 2:
            cross -= n / 2
        elif cross >= 0:
            cross = 0
        phi = cross / math.sqrt(margins)
    # Newcombe's interval of p1 − p2 (reference − condition), then flipped to condition − ref.
    est = p1 - p2
    lo = est - math.sqrt(max((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2), 0))
    hi = est + math.sqrt(max((p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1), 0))
    return -hi, -lo


@dataclass(frozen=True, kw_only=True)
class PairedDifference:
    """A paired change in a proportion, condition − reference.

    Attributes:
        n: pairs; b / c: pairs positive under the reference only / the condition only.
        ref_rate / cond_rate: the two proportions.
        effect: ``(c − b)/n``.
        ci95 / ci90: Newcombe's 95% and 90% CIs of ``effect``.
        pvalue: exact (binomial) McNemar p, two-sided.
    """

    n: int
    b: int
    c: int
    ref_rate: float
    cond_rate: float
    effect: float
    ci95: tuple[float, float]
    ci90: tuple[float, float]
    pvalue: float

    @property
    def discordance(self) -> float:
        return (self.b + self.c) / self.n if self.n else math.nan


def paired_difference(ref: ArrayLike, cond: ArrayLike) -> PairedDifference:
    """The paired difference of two boolean vectors (same order: one entry per pair)."""
    x = np.asarray(ref, dtype=bool).ravel()
    y = np.asarray(cond, dtype=bool).ravel()
    if x.shape != y.shape:
        raise ValueError(f"ref and cond differ in length: {x.size} vs {y.size}; pair them")
    if x.size == 0:
        raise ValueError("no pairs: nothing to compare")
    a = int((x & y).sum())
    b = int((x & ~y).sum())
    c = int((~x & y).sum())
    d = int((~x & ~y).sum())
    n = int(x.size)
    p = float(mcnemar([[0, b], [c, 0]], exact=True).pvalue)
    return PairedDifference(
        n=n, b=b, c=c, ref_rate=(a + b) / n, cond_rate=(a + c) / n, effect=(c - b) / n,
        ci95=newcombe_paired_ci(a, b, c, d, 0.95), ci90=newcombe_paired_ci(a, b, c, d, 0.90),
        pvalue=p,
    )  # fmt: skip


@lru_cache(maxsize=4096)
def _exact_mcnemar_rejects(m: int, alpha: float) -> np.ndarray:
    """For m discordant pairs: reject[c] = the exact McNemar test rejects with c of them
    (cached: the power searches ask for the same m many times; the array is read-only)."""
    cs = np.arange(m + 1)
    tail = np.minimum(stats.binom.cdf(cs, m, 0.5), stats.binom.sf(cs - 1, m, 0.5))
    out = np.minimum(1.0, 2 * tail) < alpha
    out.setflags(write=False)
    return out


def mcnemar_power(n: int, discordance: float, delta: float, alpha: float) -> float:
    """Exact power of the two-sided exact McNemar test to detect a change of ``delta``.

    Under the alternative, a pair is discordant with probability ``ψ = max(discordance,
    |delta|)`` (a change of delta needs at least that much discordance), and a discordant pair
    moves in the changed direction with probability ``(ψ + |delta|)/(2ψ)``. The power sums the
    exact probabilities of every (discordant count, direction count) the test rejects.
    """
    if n < 1:
        return 0.0
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    delta = abs(float(delta))
    psi = min(1.0, max(float(discordance), delta))
    if psi == 0:
        return 0.0
    q = (psi + delta) / (2 * psi)
    power = 0.0
    pms = stats.binom.pmf(np.arange(n + 1), n, psi)
    for m in range(n + 1):
        pm = float(pms[m])
        if pm < 1e-15:
            continue
        rejects = _exact_mcnemar_rejects(m, alpha)
        power += pm * float(stats.binom.pmf(np.arange(m + 1), m, q)[rejects].sum())
    return float(min(power, 1.0))


def classify_change(
    diff: PairedDifference,
    *,
    p_adjusted: float,
    alpha: float,
    margin: float,
    predicted_sign: int,
    what: str = "preservation",
) -> tuple[Effect, str]:
    """The verdict on one paired change and its reason in words.

    * **predicted** / **opposite**: ``p_adjusted < alpha`` and the change is nonzero, in /
      against ``predicted_sign`` (−1: a drop is predicted, +1: a rise);
    * **none**: not significant, and the 90% CI lies inside ±``margin`` (TOST at 5%);
    * **inconclusive**: otherwise; the CI says how large a change the data still allow.
    """
    pp = 100 * diff.effect
    lo90, hi90 = (100 * v for v in diff.ci90)
    lo95, hi95 = (100 * v for v in diff.ci95)
    m = 100 * margin
    ci = f"{pp:+.1f} pp, 95% CI [{lo95:+.1f}, {hi95:+.1f}]"
    if p_adjusted < alpha and diff.effect != 0:
        if np.sign(diff.effect) == predicted_sign:
            return "predicted", f"{what} {ci}, p_adj = {p_adjusted:.3g}: significant, as predicted"
        return (
            "opposite",
            f"{what} {ci}, p_adj = {p_adjusted:.3g}: significant, OPPOSITE to the prediction",
        )
    if -margin < diff.ci90[0] and diff.ci90[1] < margin:
        return "none", (
            f"{what} {pp:+.1f} pp, 90% CI [{lo90:+.1f}, {hi90:+.1f}] inside ±{m:.0f} pp: "
            "equivalent to no effect (TOST)"
        )
    worst = lo90 if predicted_sign < 0 else hi90
    return "inconclusive", (
        f"{what} {pp:+.1f} pp, 90% CI [{lo90:+.1f}, {hi90:+.1f}] reaches past ±{m:.0f} pp: "
        f"neither significant nor equivalent (a change as large as {worst:+.1f} pp is not ruled out)"
    )


def tost_paired_proportions(diff: PairedDifference, margin: float) -> tuple[float, float]:
    """The two one-sided p-values of TOST for a paired difference of proportions.

    Wald statistic with the McNemar variance ``((b + c)/n − effect²)/n``: ``p_low`` tests
    H0: effect ≤ −margin, ``p_high`` tests H0: effect ≥ margin (both must be < α for
    equivalence). A zero variance (no discordant pair) uses the smallest non-zero variance
    one discordant pair would give, so the p-values stay defined. The verdict itself uses
    the Newcombe 90% CI (:func:`classify_change`); these p-values go to ``stats.csv``.
    """
    if not 0 < margin < 1:
        raise ValueError(f"margin must lie in (0, 1); got {margin!r}")
    n = diff.n
    var = ((diff.b + diff.c) / n - diff.effect**2) / n
    if var <= 0:
        var = (1 / n - 1 / n**2) / n
    se = math.sqrt(var)
    p_low = float(stats.norm.sf((diff.effect + margin) / se))
    p_high = float(stats.norm.cdf((diff.effect - margin) / se))
    return p_low, p_high
