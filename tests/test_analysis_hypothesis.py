"""Statistics equal scipy/statsmodels or textbook values, including edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

from analysis.hypothesis import (
    TestResult,
    bootstrap_mean_diff,
    cohens_d,
    correct,
    mcnemar_asymptotic,
    mcnemar_exact,
    mcnemar_from_pairs,
    odds_ratio,
    welch_t,
)


def test_mcnemar_exact_is_two_sided_binomial() -> None:
    res = mcnemar_exact(2, 9, n=30)
    assert res.pvalue == pytest.approx(binomtest(2, 11, 0.5).pvalue, rel=1e-12)
    assert res.pvalue == pytest.approx(2 * sum(math.comb(11, k) for k in range(3)) / 2**11)
    assert res.statistic == 2 and res.n == 30
    assert res.effect == pytest.approx((9 - 2) / 30)
    assert res.ci_low < res.effect < res.ci_high


def test_mcnemar_chi2_textbook() -> None:
    res = mcnemar_asymptotic(10, 25)
    assert res.statistic == pytest.approx((abs(10 - 25) - 1) ** 2 / 35)
    assert res.pvalue == pytest.approx(stats.chi2.sf((abs(10 - 25) - 1) ** 2 / 35, 1))
    raw = mcnemar_asymptotic(10, 25, correction=False)
    assert raw.statistic == pytest.approx(15**2 / 35)


def test_mcnemar_all_concordant() -> None:
    assert mcnemar_exact(0, 0, n=50).pvalue == 1.0
    res = mcnemar_asymptotic(0, 0, n=50)
    assert res.pvalue == 1.0 and res.statistic == 0.0 and "no discordant" in res.note
    assert mcnemar_exact(0, 0, n=50).effect == 0.0


def test_mcnemar_from_pairs_counts() -> None:
    before = np.array([1, 1, 1, 1, 0, 0, 1, 1, 0, 1], dtype=bool)
    after = np.array([0, 0, 0, 1, 0, 1, 1, 0, 0, 1], dtype=bool)
    # b: before & !after = positions 0,1,2,7 -> 4; c: !before & after = position 5 -> 1
    res = mcnemar_from_pairs(before, after)
    assert res.note.startswith("exact") and "b=4 c=1" in res.note
    assert res.pvalue == pytest.approx(binomtest(1, 5, 0.5).pvalue)
    assert res.effect == pytest.approx(-3 / 10)
    assert mcnemar_from_pairs(before, after, exact=False).name == "mcnemar_chi2"


def test_mcnemar_n1_and_errors() -> None:
    assert mcnemar_from_pairs([True], [False]).pvalue == 1.0
    with pytest.raises(ValueError, match="before contains NaN"):
        mcnemar_from_pairs([1.0, math.nan], [1.0, 0.0])
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_from_pairs([1, 0], [1])
    with pytest.raises(ValueError, match="boolean"):
        mcnemar_from_pairs([1, 2], [1, 0])
    with pytest.raises(ValueError, match="b must be"):
        mcnemar_exact(-1, 2)
    with pytest.raises(ValueError, match="smaller than"):
        mcnemar_exact(3, 2, n=4)


def test_welch_matches_scipy() -> None:
    a = [1.1, 2.3, 2.9, 4.2, 3.3]
    b = [0.5, 0.7, 0.2, 1.9, 1.1, 0.4, 0.8]
    ref = stats.ttest_ind(a, b, equal_var=False)
    res = welch_t(a, b)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    # Hand Welch t and Welch-Satterthwaite df.
    va, vb = np.var(a, ddof=1) / 5, np.var(b, ddof=1) / 7
    assert res.statistic == pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt(va + vb))
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 6)
    assert f"df={df:.2f}" in res.note
    assert res.ci_low < res.effect < res.ci_high and res.n == 12


def test_welch_identical_groups_and_edge_cases() -> None:
    res = welch_t([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert res.statistic == 0.0 and res.pvalue == pytest.approx(1.0)
    with pytest.raises(ValueError, match="both constant"):
        welch_t([2.0, 2.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        welch_t([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="b contains NaN"):
        welch_t([1.0, 2.0], [1.0, math.nan])


def test_cohens_d_pooled_and_paired_hand_values() -> None:
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    pooled = math.sqrt((2 * 4.0 + 2 * 1.0) / 4)  # var(a)=4, var(b)=1, ddof=1
    assert cohens_d(a, b) == pytest.approx((4.0 - 2.0) / pooled)
    diff = a - b  # [1, 2, 3]: mean 2, sd 1
    assert cohens_d(a, b, paired=True) == pytest.approx(2.0)
    assert cohens_d(diff, np.zeros(3), paired=True) == pytest.approx(2.0)
    assert cohens_d(a, a) == 0.0
    assert cohens_d([1.0, 1.0], [1.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="zero standard deviation"):
        cohens_d([1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="a contains NaN"):
        cohens_d([math.nan, 1.0], [0.0, 1.0])


def test_odds_ratio_textbook() -> None:
    res = odds_ratio([[20, 10], [5, 15]])
    assert res.effect == pytest.approx(20 * 15 / (10 * 5))
    se = math.sqrt(1 / 20 + 1 / 10 + 1 / 5 + 1 / 15)
    z = stats.norm.ppf(0.975)
    assert res.ci_low == pytest.approx(math.exp(math.log(6) - z * se))
    assert res.ci_high == pytest.approx(math.exp(math.log(6) + z * se))
    assert res.pvalue == pytest.approx(2 * stats.norm.sf(math.log(6) / se))
    assert "Haldane" not in res.note and res.n == 50


def test_odds_ratio_zero_cell_haldane() -> None:
    res = odds_ratio([[10, 0], [4, 6]])
    assert res.effect == pytest.approx(10.5 * 6.5 / (0.5 * 4.5))
    assert "Haldane" in res.note and math.isfinite(res.ci_high)
    with pytest.raises(ValueError, match="2x2"):
        odds_ratio([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="NaN"):
        odds_ratio([[1, math.nan], [1, 1]])
    with pytest.raises(ValueError, match="integer counts"):
        odds_ratio([[1, -1], [1, 1]])


def test_corrections_match_statsmodels_and_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    np.testing.assert_allclose(correct(p, "bonferroni"), [0.04, 0.16, 0.12, 1.0])
    # Holm by hand: sorted 0.01,0.03,0.04,0.5 -> 0.04, 0.09, max(0.09,0.08)=0.09, 0.5
    np.testing.assert_allclose(correct(p, "holm"), [0.04, 0.09, 0.09, 0.5])
    np.testing.assert_allclose(correct(p, "holm"), multipletests(p, method="holm")[1])
    assert correct([], "holm").size == 0
    with pytest.raises(ValueError, match="NaN"):
        correct([0.1, math.nan])
    with pytest.raises(ValueError, match="method"):
        correct([0.1], "fdr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        correct([1.5])


def test_bootstrap_matches_scipy_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 40)
    res = bootstrap_mean_diff(a, b, paired=True, n_resamples=2000, seed=7)
    ref = stats.bootstrap(
        (a - b,), np.mean, n_resamples=2000, method="BCa", random_state=np.random.default_rng(7)
    )
    assert res.ci_low == pytest.approx(ref.confidence_interval.low)
    assert res.ci_high == pytest.approx(ref.confidence_interval.high)
    assert res.effect == pytest.approx(np.mean(a - b)) and res.pvalue is None
    again = bootstrap_mean_diff(a, b, paired=True, n_resamples=2000, seed=7)
    assert again == res
    un = bootstrap_mean_diff(a, b, paired=False, n_resamples=2000, seed=7)
    assert un.ci_low < np.mean(a) - np.mean(b) < un.ci_high and un.n == 80


def test_bootstrap_degenerate_and_errors() -> None:
    res = bootstrap_mean_diff([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], paired=True, n_resamples=1000)
    assert (res.effect, res.ci_low, res.ci_high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="a contains NaN"):
        bootstrap_mean_diff([math.nan, 1.0], [1.0, 2.0], paired=False)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_mean_diff([1.0, 2.0], [1.0, 2.0], paired=False, n_resamples=10)


def test_result_is_frozen() -> None:
    res = mcnemar_exact(1, 1)
    assert isinstance(res, TestResult)
    with pytest.raises(AttributeError):
        res.pvalue = 0.5  # type: ignore[misc]


def test_wilcoxon_matches_scipy_and_edge_cases() -> None:
    from analysis.hypothesis import wilcoxon_signed_rank

    a = np.array([1.2, 3.4, 2.2, 5.0, 0.3, 2.8, 4.1, 1.9])
    b = np.array([1.0, 2.0, 2.5, 3.0, 0.1, 1.0, 2.0, 2.0])
    ref = stats.wilcoxon(a, b)
    res = wilcoxon_signed_rank(a, b)
    assert res.statistic == pytest.approx(ref.statistic) and res.pvalue == pytest.approx(ref.pvalue)
    assert res.effect == pytest.approx(np.median(a - b))
    # Exact null distribution by hand: all 6 differences positive -> p = 2 / 2**6.
    assert wilcoxon_signed_rank([1, 2, 3, 4, 5, 6], [0] * 6).pvalue == pytest.approx(2 / 64)
    same = wilcoxon_signed_rank([1.0, 2.0], [1.0, 2.0])
    assert same.pvalue == 1.0 and "zero" in same.note
    with pytest.raises(ValueError, match="b contains NaN"):
        wilcoxon_signed_rank([1.0, 2.0], [math.nan, 1.0])


def test_mcnemar_odds_ratio_is_c_over_b_with_clopper_pearson_ci() -> None:
    from analysis.hypothesis import mcnemar_odds_ratio

    res = mcnemar_odds_ratio(4, 12)
    assert res.effect == pytest.approx(3.0) and res.n == 16
    ci = binomtest(12, 16, 0.5).proportion_ci(confidence_level=0.95, method="exact")
    assert res.ci_low == pytest.approx(ci.low / (1 - ci.low), rel=1e-9)
    assert res.ci_high == pytest.approx(ci.high / (1 - ci.high), rel=1e-9)
    # Clopper-Pearson by hand from beta quantiles (textbook definition).
    lo = stats.beta.ppf(0.025, 12, 16 - 12 + 1)
    assert res.ci_low == pytest.approx(lo / (1 - lo), rel=1e-9)
    assert res.pvalue == pytest.approx(binomtest(4, 16, 0.5).pvalue, rel=1e-12)
    assert res.statistic == pytest.approx(math.log(3.0))


def test_mcnemar_odds_ratio_edges() -> None:
    from analysis.hypothesis import mcnemar_odds_ratio

    up = mcnemar_odds_ratio(0, 15)
    assert up.effect == math.inf and up.ci_high == math.inf
    lo = 0.025 ** (1 / 15)  # Clopper-Pearson lower bound when every discordant pair is c
    assert up.ci_low == pytest.approx(lo / (1 - lo), rel=1e-9)
    assert up.pvalue == pytest.approx(2 * 0.5**15)
    down = mcnemar_odds_ratio(15, 0)
    assert down.effect == 0.0 and down.ci_low == 0.0
    none = mcnemar_odds_ratio(0, 0)
    assert math.isnan(none.effect) and none.pvalue == 1.0 and "no discordant" in none.note


def test_paired_t_equals_scipy_and_d_z() -> None:
    from analysis.hypothesis import paired_t

    rng = np.random.default_rng(3)
    a = rng.normal(0.3, 0.1, 40)
    b = a - rng.normal(0.05, 0.04, 40)
    res = paired_t(a, b)
    ref = stats.ttest_rel(a, b)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # t = d_z * sqrt(n) for the paired t (textbook identity).
    assert cohens_d(a, b, paired=True) * math.sqrt(40) == pytest.approx(ref.statistic)
    with pytest.raises(ValueError, match="paired t is undefined"):
        paired_t([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])


def test_p_value_zero_survives_tests_and_correction() -> None:
    from analysis.families import bonferroni
    from analysis.hypothesis import paired_t, wilcoxon_signed_rank

    x = np.arange(1, 3001, dtype=float)
    assert wilcoxon_signed_rank(x, np.zeros_like(x)).pvalue == 0.0
    assert paired_t(x, np.zeros_like(x)).pvalue == 0.0
    np.testing.assert_array_equal(bonferroni([0.0, 0.02]), [0.0, 0.04])
    np.testing.assert_allclose(
        bonferroni([0.0, 0.02, 0.5]), multipletests([0.0, 0.02, 0.5], method="bonferroni")[1]
    )
