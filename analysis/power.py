"""Prospective power for every deciding test: the power at this n and the n that 80% would need.

Three endpoints, each with a detection test and an equivalence (TOST) test:

* **Paired binary** (``preserved`` under a condition vs its reference, one pair per prompt).
  Detection: the two-sided exact McNemar test at ``alpha`` (exact power from
  :func:`analysis.equivalence.mcnemar_power`). Equivalence: the study's rule, "the 90%
  Newcombe CI of the paired difference lies inside ±margin" (TOST at 5%), whose power is
  computed *exactly* by summing the multinomial probability of every 2×2 table whose interval
  falls inside the margin. The table's cells follow from the discordance ψ, the true change δ
  (condition − reference) and the reference rate: ``P(b) = (ψ − δ)/2``, ``P(c) = (ψ + δ)/2``.
* **Continuous paired** (call-site Δlog p in nats, per prompt). Detection: the two-sided paired
  t test (noncentral t, statsmodels ``TTestPower``); equivalence: the paired TOST at ±margin
  nats (Schuirmann 1987), its power integrated exactly over the distribution of the sample SD.
  The paired BCa bootstrap the study reports is asymptotically this t test; the power is that
  of the t test.
* **Per-prompt rates** over k decodings. A prompt's rate difference ``D = r_cond − r_ref`` has
  variance ``τ² + w/k``: ``τ²`` is the variance of the prompts' true differences and ``w`` the
  within-prompt (binomial) variance of one decoding's difference, so the intra-prompt
  correlation is ``ρ = τ²/(τ² + w)`` and the design effect of k decodings is
  ``1 + (k − 1)ρ`` (Kish 1965; Donner & Klar 2000). The power is the paired t power with
  ``SD(D)`` at that k.

``n_for_80`` is the smallest n whose power reaches 0.8: a bisection (the exact binary powers
saw-tooth slightly with n, so the smallest n within 5% below the bisection's that also
reaches 0.8 is taken). The table flags power < 0.5 (``flag_low_power``).

References: Schuirmann (1987) J Pharmacokinet Biopharm 15:657; Newcombe (1998) Stat Med
17:2635; Connor (1987) Biometrics 43:207 (McNemar sample size); Kish (1965) Survey Sampling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special, stats
from statsmodels.stats.power import TTestPower

from analysis.equivalence import mcnemar_power

__all__ = [
    "COLUMNS",
    "PowerRow",
    "RateComponents",
    "binary_power_rows",
    "binary_rows",
    "continuous_power_rows",
    "continuous_rows",
    "mcnemar_n_for",
    "newcombe_ci_array",
    "paired_t_power",
    "power_table",
    "rate_components",
    "rate_power",
    "rate_rows",
    "smallest_n",
    "t_equivalence_power",
    "tost_binary_power",
]

COLUMNS = ("test", "endpoint", "margin", "observed", "n", "power", "n_for_80", "flag_low_power")
TARGET = 0.8
LOW_POWER = 0.5
N_MAX = 100_000


@dataclass(frozen=True, kw_only=True)
class PowerRow:
    """One row of the power table.

    Attributes:
        test: the deciding test (e.g. ``"exact McNemar"``, ``"TOST (Newcombe 90% CI)"``).
        endpoint: what it is run on (e.g. ``"preserved: knockout@to_call/L vs inert_control"``).
        margin: the change to detect, or the equivalence margin (pp as a fraction, or nats).
        observed: the observed discordance ψ (binary) or SD of the paired differences.
        n: pairs (prompts) in this run.
        power: the power at ``n``.
        n_for_80: the smallest n with power ≥ 0.8 (-1 when none up to 100,000).
        flag_low_power: ``power < 0.5``.
        note: the assumptions (alpha, true effect, reference rate, k, ρ).
    """

    test: str
    endpoint: str
    margin: float
    observed: float
    n: int
    power: float
    n_for_80: int
    flag_low_power: bool
    note: str = ""


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")


def smallest_n(
    power: Callable[[int], float],
    target: float = TARGET,
    n_min: int = 2,
    *,
    sawtooth: bool = True,
    guess: int | None = None,
) -> int:
    """The smallest n ≥ ``n_min`` with ``power(n) ≥ target`` (-1 if none up to 100,000).

    Doubling then bisection, assuming power grows with n. A ``guess`` (e.g. a normal
    approximation's n) only brackets the search faster: from it the bracket widens by a
    quarter per step until it holds the answer (for a monotone power the answer does not
    depend on it; the tests check the binary TOST's too). Exact tests
    saw-tooth (``sawtooth=True``, the binary tests): then the smallest n within 5% below the
    bisection's whose power also reaches target is taken. A power that grows monotonically
    with n (the t tests: ``sawtooth=False``) needs no such scan.
    """
    power = functools.lru_cache(maxsize=None)(power)  # the scan revisits bisection points
    first = max(n_min, 1)
    lo = first - 1  # power(lo) < target, or lo < n_min
    hi = first
    if guess is not None and guess > first:
        hi = min(int(guess), N_MAX)
        if power(hi) >= target:  # walk down to a failing lo
            lo = max(first - 1, int(hi * 0.8))
            while lo >= first and power(lo) >= target:
                hi, lo = lo, max(first - 1, int(lo * 0.8))
        else:
            lo = hi
            hi = min(max(int(hi * 1.25), hi + 1), N_MAX)
    while power(hi) < target:
        if hi >= N_MAX:
            return -1
        lo = hi
        hi = min(2 * hi, N_MAX)
    while hi - lo > 1:  # invariant: power(hi) >= target > power(lo)
        mid = (lo + hi) // 2
        if power(mid) >= target:
            hi = mid
        else:
            lo = mid
    best = hi
    if sawtooth:
        for n in range(hi - 1, max(n_min, int(hi * 0.95)) - 1, -1):
            if power(n) >= target:
                best = n
    return best


# --------------------------------------------------------------------------- paired binary


def mcnemar_n_for(discordance: float, delta: float, alpha: float, target: float = TARGET) -> int:
    """Pairs the exact McNemar test needs to detect a change of ``delta`` with ``target`` power."""
    _check_alpha(alpha)
    return smallest_n(lambda n: mcnemar_power(n, discordance, delta, alpha), target, n_min=1)


def _wilson(x: np.ndarray, n: int, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of x/n (identical to statsmodels' ``method="wilson"``)."""
    p = x / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return center - half, center + half


def newcombe_ci_array(
    a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, conf: float = 0.90
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`analysis.equivalence.newcombe_paired_ci` over arrays of tables (vectorised).

    The same interval of ``p_cond − p_ref`` (Newcombe 1998, method 10 with the continuity-
    corrected φ), for the exact power sum over many tables; checked equal to the scalar
    function table by table in the tests. All tables must share one n.
    """
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (a, b, c, d))
    n_all = a + b + c + d
    n = int(n_all.flat[0])
    if not np.all(n_all == n) or n < 1:
        raise ValueError("newcombe_ci_array needs tables that all hold the same n >= 1 pairs")
    z = float(stats.norm.ppf(1 - (1 - conf) / 2))
    p1, p2 = (a + b) / n, (a + c) / n
    # Wilson limits of every count 0..n once, looked up per table
    w_lo, w_hi = _wilson(np.arange(n + 1, dtype=np.float64), n, z)
    i1, i2 = (a + b).astype(np.intp), (a + c).astype(np.intp)
    l1, u1, l2, u2 = w_lo[i1], w_hi[i1], w_lo[i2], w_hi[i2]
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    cross = np.where(cross > n / 2, cross - n / 2, np.where(cross >= 0, 0.0, cross))
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(margins == 0, 0.0, cross / np.sqrt(margins))
    est = p1 - p2
    lo = est - np.sqrt(
        np.maximum((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2), 0)
    )
    hi = est + np.sqrt(
        np.maximum((p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1), 0)
    )
    return -hi, -lo


def _cell_probs(discordance: float, delta: float, ref_rate: float) -> np.ndarray:
    """P(a), P(b), P(c), P(d) of one pair (b: positive under the reference only)."""
    psi, delta = float(discordance), float(delta)
    if not 0 <= psi <= 1:
        raise ValueError(f"discordance must lie in [0, 1]; got {discordance!r}")
    if abs(delta) > psi:
        raise ValueError(f"|delta|={abs(delta)} exceeds the discordance {psi}: impossible change")
    pb, pc = (psi - delta) / 2, (psi + delta) / 2
    pa = ref_rate - pb
    pd_ = 1 - pa - pb - pc
    if pa < -1e-12 or pd_ < -1e-12:
        raise ValueError(
            f"ref_rate={ref_rate} is incompatible with discordance {psi} and delta {delta} "
            f"(needs {pb:.3g} <= ref_rate <= {1 - pc:.3g})"
        )
    return np.clip(np.array([pa, pb, pc, pd_]), 0.0, 1.0)


def _support(n: int, p: float, tail: float = 1e-10) -> np.ndarray:
    if p <= 0:
        return np.zeros(1)
    lo, hi = stats.binom.ppf(tail, n, p), stats.binom.isf(tail, n, p)
    return np.arange(int(lo), int(hi) + 1, dtype=np.float64)


def tost_binary_power(
    n: int,
    discordance: float,
    margin: float,
    *,
    delta: float = 0.0,
    ref_rate: float = 0.5,
    conf: float = 0.90,
) -> float:
    """Exact probability that the Newcombe ``conf`` CI of the paired change lies in ±margin.

    Sums the multinomial probability of every table (a, b, c, d) of n pairs whose interval
    falls strictly inside (−margin, margin); cells below 1e-10 in their binomial tails are
    skipped (their total mass is < 1e-9: six tails of 1e-10).
    """
    if n < 1:
        return 0.0
    _check_positive("margin", margin)
    pa, pb, pc, pd_ = _cell_probs(discordance, delta, ref_rate)
    bs, cs, as_ = _support(n, pb), _support(n, pc), _support(n, pa)
    c_grid, a_grid = np.meshgrid(cs, as_, indexing="ij")
    c_flat, a_flat = c_grid.ravel(), a_grid.ravel()
    step = max(1, 200_000 // max(c_flat.size, 1))  # several b at once, bounded memory
    lgam = special.gammaln(np.arange(n + 1, dtype=np.float64) + 1)  # log k! for k = 0..n
    total = 0.0
    for i in range(0, bs.size, step):
        b_ = np.repeat(bs[i : i + step], c_flat.size)
        c_all, a_all = (
            np.tile(c_flat, bs[i : i + step].size),
            np.tile(a_flat, bs[i : i + step].size),
        )
        d_all = n - a_all - c_all - b_
        ok = d_all >= 0
        if not ok.any():
            continue
        a_, bb, c_, d_ = a_all[ok], b_[ok], c_all[ok], d_all[ok]
        logpmf = lgam[n] - sum(lgam[x.astype(np.intp)] for x in (a_, bb, c_, d_))
        for x, p in zip((a_, bb, c_, d_), (pa, pb, pc, pd_), strict=True):
            logpmf = logpmf + special.xlogy(x, p)
        lo, hi = newcombe_ci_array(a_, bb, c_, d_, conf)
        inside = (lo > -margin) & (hi < margin)
        total += float(np.exp(logpmf[inside]).sum())
    return float(min(total, 1.0))


def binary_rows(
    ref: ArrayLike,
    cond: ArrayLike,
    *,
    endpoint: str,
    margin: float,
    alpha: float,
    equivalence_delta: float = 0.0,
) -> list[PowerRow]:
    """The McNemar and TOST power rows of one paired binary comparison, from its data.

    The observed discordance ψ and reference rate come from the pairs. McNemar: power to
    detect a change of ``margin`` at ``alpha`` (pass the family's Bonferroni α). TOST: power to
    show equivalence within ±margin when the true change is ``equivalence_delta``.
    """
    x = np.asarray(ref, dtype=bool).ravel()
    y = np.asarray(cond, dtype=bool).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"ref and cond must be paired and non-empty; got {x.size} and {y.size}")
    return binary_power_rows(int(x.size), float((x != y).mean()), float(x.mean()),
                             endpoint=endpoint, margin=margin, alpha=alpha,
                             equivalence_delta=equivalence_delta)  # fmt: skip


def binary_power_rows(
    n: int,
    psi: float,
    ref_rate: float,
    *,
    endpoint: str,
    margin: float,
    alpha: float,
    equivalence_delta: float = 0.0,
) -> list[PowerRow]:
    """:func:`binary_rows` from the summary numbers: n pairs, discordance ψ, reference rate."""
    _check_alpha(alpha)
    _check_positive("margin", margin)
    if n < 1 or not 0 <= psi <= 1 or not 0 <= ref_rate <= 1:
        raise ValueError(f"need n >= 1 and psi, ref_rate in [0, 1]; got {n}, {psi}, {ref_rate}")
    mc_psi = max(psi, margin)
    mc_power = mcnemar_power(n, mc_psi, margin, alpha)
    mc_note = f"alpha={alpha:.3g}, two-sided, change {margin:+.3g}, psi used {mc_psi:.3g}"
    rows = [_row("exact McNemar", endpoint, margin, psi, n, mc_power,
                 mcnemar_n_for(mc_psi, margin, alpha), mc_note)]  # fmt: skip
    # TOST needs |delta| <= psi and a reference rate compatible with the cells.
    t_psi = max(psi, abs(equivalence_delta), 1e-9)
    rate = min(max(ref_rate, (t_psi - equivalence_delta) / 2), 1 - (t_psi + equivalence_delta) / 2)

    def tpow(m: int) -> float:
        return tost_binary_power(m, t_psi, margin, delta=equivalence_delta, ref_rate=rate)

    # the normal approximation brackets the exact search: n = (z_.95 + z_.90)^2 psi / (m - |d|)^2
    z = float(stats.norm.ppf(0.95) + stats.norm.ppf(1 - (1 - TARGET) / 2))
    slack = margin - abs(equivalence_delta)
    guess = math.ceil(z * z * t_psi / slack**2) if slack > 0 else None

    t_note = f"90% Newcombe CI inside ±{margin:.3g}; true change {equivalence_delta:+.3g}; ref rate {rate:.3g}"
    rows.append(_row("TOST (Newcombe 90% CI)", endpoint, margin, psi, n, tpow(n),
                     smallest_n(tpow, guess=guess), t_note))  # fmt: skip
    return rows


# ----------------------------------------------------------------------- continuous paired


def paired_t_power(n: int, sd: float, delta: float, alpha: float) -> float:
    """Power of the two-sided paired t test at ``alpha`` to detect a mean difference ``delta``."""
    _check_alpha(alpha)
    _check_positive("sd", sd)
    if n < 2:
        return 0.0
    es = abs(delta) / sd
    power = float(TTestPower().power(effect_size=es, nobs=n, alpha=alpha,
                                     alternative="two-sided"))  # fmt: skip
    if math.isnan(power):  # the noncentral t underflows at large effects: its normal limit
        crit, nc = float(stats.t.ppf(1 - alpha / 2, n - 1)), es * math.sqrt(n)
        power = float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
    return min(power, 1.0)


def t_equivalence_power(
    n: int, sd: float, margin: float, *, delta: float = 0.0, alpha: float = 0.05
) -> float:
    """Power of the paired TOST at ±margin (level alpha each side; the 1 − 2α CI inside).

    Given the sample SD s, the test passes when the mean lies within ±(margin − t·s/√n);
    the power integrates that normal probability over ``(n − 1)s²/σ² ~ χ²(n − 1)``.
    """
    _check_alpha(alpha)
    _check_positive("sd", sd)
    _check_positive("margin", margin)
    if n < 2:
        return 0.0
    df = n - 1
    t = float(stats.t.ppf(1 - alpha, df))
    se = sd / math.sqrt(n)
    # the test can pass only while t*s/sqrt(n) < margin, i.e. chi2 = df*s^2/sd^2 < q_max
    q_max = df * (margin * math.sqrt(n) / (t * sd)) ** 2
    lo = math.sqrt(float(stats.chi2.ppf(1e-15, df)))
    hi = math.sqrt(min(q_max, float(stats.chi2.isf(1e-15, df))))
    if hi <= lo:
        return 0.0
    # Over x = sqrt(q) (chi-distributed, a density without the chi-square's pole at 0 for
    # df = 1): Gauss-Legendre on [lo, hi] in _GL_PIECES pieces, vectorised. The integrand is
    # smooth (a normal probability times the chi density); checked against scipy's adaptive
    # quad in the tests.
    width = (hi - lo) / _GL_PIECES
    starts = lo + width * np.arange(_GL_PIECES)[:, None]
    x = (starts + width * (_GL_X[None, :] + 1) / 2).ravel()
    w = np.tile(_GL_W * width / 2, _GL_PIECES)
    half = margin - t * sd * x / math.sqrt(df * n)
    prob = special.ndtr((half - delta) / se) - special.ndtr((-half - delta) / se)
    dens = np.exp(stats.chi.logpdf(x, df))
    val = float(np.sum(w * np.clip(prob, 0.0, 1.0) * dens))
    return float(min(max(val, 0.0), 1.0))


_GL_PIECES = 8
_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)


def continuous_rows(
    diffs: ArrayLike, *, endpoint: str, margin: float, alpha: float, alpha_tost: float = 0.05
) -> list[PowerRow]:
    """Detection and equivalence power rows of a paired continuous endpoint (e.g. Δlog p).

    ``diffs`` are the per-prompt paired differences; their SD is the observed variance.
    Detection: the paired t at ``alpha`` (the family's Bonferroni α) for a change of
    ``margin``; equivalence: TOST at ±margin with a true difference of 0.
    """
    d = np.asarray(diffs, dtype=np.float64).ravel()
    if d.size < 2 or not np.isfinite(d).all():
        raise ValueError(f"diffs needs >= 2 finite values; got {d.size} with NaN/inf removed first")
    if np.ptp(d) == 0:
        raise ValueError("the paired differences have no spread (SD 0): power is not estimable")
    return continuous_power_rows(int(d.size), float(d.std(ddof=1)), endpoint=endpoint,
                                 margin=margin, alpha=alpha, alpha_tost=alpha_tost)  # fmt: skip


def continuous_power_rows(
    n: int, sd: float, *, endpoint: str, margin: float, alpha: float, alpha_tost: float = 0.05
) -> list[PowerRow]:
    """:func:`continuous_rows` from the summary numbers: n pairs and the SD of the differences."""
    _check_positive("sd", sd)
    _check_positive("margin", margin)
    det = _row("paired t (bootstrap CI)", endpoint, margin, sd, n,
               paired_t_power(n, sd, margin, alpha),
               smallest_n(lambda m: paired_t_power(m, sd, margin, alpha), sawtooth=False),
               f"alpha={alpha:.3g}, two-sided, change {margin:.3g}")  # fmt: skip
    eq = _row("TOST paired t", endpoint, margin, sd, n,
              t_equivalence_power(n, sd, margin, alpha=alpha_tost),
              smallest_n(lambda m: t_equivalence_power(m, sd, margin, alpha=alpha_tost),
                         sawtooth=False),
              f"90% CI inside ±{margin:.3g}; true difference 0")  # fmt: skip
    return [det, eq]


# ------------------------------------------------------------------------- per-prompt rates


@dataclass(frozen=True, kw_only=True)
class RateComponents:
    """Variance components of per-prompt rate differences ``D = r_cond − r_ref``.

    Attributes:
        k: decodings per prompt and condition.
        tau2: between-prompt variance of the true differences (floored at 0).
        w: mean within-prompt variance of one decoding's difference (binomial, both arms).
        icc: intra-prompt correlation ``tau2 / (tau2 + w)`` (NaN when both are 0).
        design_effect: ``1 + (k − 1)·icc``.
        sd_rate_diff: SD of D at this k, ``sqrt(tau2 + w/k)``.
    """

    k: int
    tau2: float
    w: float
    icc: float
    design_effect: float
    sd_rate_diff: float


def rate_components(ref_rates: ArrayLike, cond_rates: ArrayLike, k: int) -> RateComponents:
    """Estimate τ², w and ρ from per-prompt rates over ``k`` decodings each.

    ``w`` is estimated without bias by ``k/(k−1)·[r(1−r)]`` summed over both arms and averaged
    over prompts; ``τ² = Var(D) − w/k`` (method of moments, floored at 0).
    """
    r0 = np.asarray(ref_rates, dtype=np.float64).ravel()
    r1 = np.asarray(cond_rates, dtype=np.float64).ravel()
    if r0.shape != r1.shape or r0.size < 2:
        raise ValueError(f"need >= 2 paired prompts' rates; got {r0.size} and {r1.size}")
    if k < 2:
        raise ValueError(f"k={k}: the intra-prompt correlation needs >= 2 decodings per prompt")
    if ((r0 < 0) | (r0 > 1) | (r1 < 0) | (r1 > 1)).any() or np.isnan(r0 + r1).any():
        raise ValueError("rates must lie in [0, 1] with no NaN")
    w = float(np.mean(k / (k - 1) * (r0 * (1 - r0) + r1 * (1 - r1))))
    tau2 = max(float(np.var(r1 - r0, ddof=1)) - w / k, 0.0)
    icc = tau2 / (tau2 + w) if tau2 + w > 0 else math.nan
    de = 1 + (k - 1) * icc if math.isfinite(icc) else math.nan
    return RateComponents(k=k, tau2=tau2, w=w, icc=icc, design_effect=de,
                          sd_rate_diff=math.sqrt(tau2 + w / k))  # fmt: skip


def rate_power(
    n: int,
    k: int,
    *,
    tau2: float,
    w: float,
    margin: float,
    alpha: float,
    equivalence: bool = False,
) -> float:
    """Power on per-prompt rates over ``k`` decodings: detect a ``margin`` change (paired t at
    ``alpha``) or, with ``equivalence``, show it within ±margin (TOST at ``alpha`` each side)."""
    if k < 1:
        raise ValueError(f"k must be >= 1 decoding per prompt; got {k}")
    if tau2 < 0 or w < 0 or tau2 + w == 0:
        raise ValueError(f"tau2={tau2} and w={w} must be >= 0 and not both 0")
    sd = math.sqrt(tau2 + w / k)
    if equivalence:
        return t_equivalence_power(n, sd, margin, alpha=alpha)
    return paired_t_power(n, sd, margin, alpha)


def rate_rows(
    ref_rates: ArrayLike,
    cond_rates: ArrayLike,
    k: int,
    *,
    endpoint: str,
    margin: float,
    alpha: float,
    alpha_tost: float = 0.05,
) -> list[PowerRow]:
    """Detection and equivalence power rows on per-prompt rates (n_for_80 in prompts at k)."""
    comp = rate_components(ref_rates, cond_rates, k)
    if comp.tau2 + comp.w == 0:
        raise ValueError("the per-prompt rates have no spread: power is not estimable")
    n = int(np.asarray(ref_rates).size)
    note = (f"k={k}, icc={comp.icc:.3g}, design effect {comp.design_effect:.3g}, "
            f"tau2={comp.tau2:.3g}, w={comp.w:.3g}")  # fmt: skip

    def det(m: int) -> float:
        return rate_power(m, k, tau2=comp.tau2, w=comp.w, margin=margin, alpha=alpha)

    def eq(m: int) -> float:
        return rate_power(m, k, tau2=comp.tau2, w=comp.w, margin=margin, alpha=alpha_tost,
                          equivalence=True)  # fmt: skip

    return [
        _row("paired bootstrap on rates (t)", endpoint, margin, comp.sd_rate_diff, n, det(n),
             smallest_n(det, sawtooth=False), f"alpha={alpha:.3g}; " + note),
        _row("TOST on rates (t)", endpoint, margin, comp.sd_rate_diff, n, eq(n),
             smallest_n(eq, sawtooth=False), "90% CI inside ±margin; " + note),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------- table


def _row(
    test: str, endpoint: str, margin: float, observed: float, n: int, power: float,
    n_for_80: int, note: str,
) -> PowerRow:  # fmt: skip
    return PowerRow(test=test, endpoint=endpoint, margin=float(margin), observed=float(observed),
                    n=int(n), power=float(power), n_for_80=int(n_for_80),
                    flag_low_power=bool(power < LOW_POWER), note=note)  # fmt: skip


def power_table(rows: list[PowerRow]) -> pd.DataFrame:
    """The power table: one row per deciding test, columns ``COLUMNS`` plus ``note``."""
    if not rows:
        return pd.DataFrame(columns=[*COLUMNS, "note"])
    return pd.DataFrame([asdict(r) for r in rows], columns=[*COLUMNS, "note"])
