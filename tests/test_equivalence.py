"""Paired proportions (Newcombe CI, exact power, TOST verdicts), H1, H2 and the reach gate,
checked against worked examples, scipy/statsmodels and simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from synthetic_runs import DEFAULT, generations_table, ko, rc, records_table, steer

from analysis.dose import dose_rates, h2, permutation_trend
from analysis.equivalence import (
    classify_change,
    mcnemar_power,
    newcombe_paired_ci,
    paired_difference,
)
from analysis.languages import h1
from analysis.reach import reach


def test_newcombe_matches_the_worked_example() -> None:
    # Fagerland, Lydersen & Laake (2017), ch. 8: table [[59, 6], [16, 80]], Newcombe's
    # square-and-add interval of p1 - p2 = -0.0621 is (-0.1186, -0.0046). Ours is
    # condition - reference = p2 - p1: the same interval, mirrored.
    lo, hi = newcombe_paired_ci(59, 6, 16, 80, 0.95)
    assert (round(lo, 4), round(hi, 4)) == (0.0046, 0.1186)


def test_newcombe_is_never_a_point_and_covers() -> None:
    lo, hi = newcombe_paired_ci(30, 0, 0, 33)  # no discordant pair: Wald would print [0, 0]
    assert lo < 0 < hi
    # coverage of the 95% interval by simulation (it is conservative-ish near 95%)
    rng = np.random.default_rng(0)
    n, p = 60, np.array([0.45, 0.1, 0.2, 0.25])  # a, b, c, d probabilities
    truth = p[2] - p[1]
    hits = 0
    for _ in range(2000):
        a, b, c, d = rng.multinomial(n, p)
        lo, hi = newcombe_paired_ci(int(a), int(b), int(c), int(d))
        hits += lo <= truth <= hi
    assert 0.93 <= hits / 2000 <= 0.985


def test_paired_difference_counts_and_exact_p() -> None:
    ref = [True] * 10 + [False] * 5 + [True] * 3
    cond = [True] * 10 + [True] * 5 + [False] * 3
    d = paired_difference(ref, cond)
    assert (d.n, d.b, d.c) == (18, 3, 5) and d.effect == pytest.approx(2 / 18)
    assert d.pvalue == pytest.approx(mcnemar([[10, 3], [5, 0]], exact=True).pvalue)
    assert d.ci90[0] > d.ci95[0] and d.ci90[1] < d.ci95[1]


def test_exact_power_equals_simulation() -> None:
    exact = mcnemar_power(63, 0.3, 0.10, 0.05)
    rng = np.random.default_rng(1)
    n, psi, delta, reps, rej = 63, 0.3, 0.1, 4000, 0
    for _ in range(reps):
        dis = rng.random(n) < psi
        down = rng.random(n) < (psi + delta) / (2 * psi)
        b, c = int((dis & down).sum()), int((dis & ~down).sum())
        rej += mcnemar([[0, b], [c, 0]], exact=True).pvalue < 0.05
    assert exact == pytest.approx(rej / reps, abs=0.025)
    assert mcnemar_power(63, 0.3, 0.3, 0.05) > 0.99 and mcnemar_power(5, 0.1, 0.1, 0.05) < 0.01


def test_classify_change_words_and_verdicts() -> None:
    drop = paired_difference([True] * 40, [False] * 20 + [True] * 20)
    eff, words = classify_change(drop, p_adjusted=drop.pvalue, alpha=0.05, margin=0.1,
                                 predicted_sign=-1)  # fmt: skip
    assert eff == "predicted" and "-50.0 pp" in words
    eff, _ = classify_change(drop, p_adjusted=drop.pvalue, alpha=0.05, margin=0.1, predicted_sign=1)
    assert eff == "opposite"
    flat = paired_difference([True] * 300, [True] * 300)
    assert (
        classify_change(flat, p_adjusted=1.0, alpha=0.05, margin=0.1, predicted_sign=-1)[0]
        == "none"
    )
    small = paired_difference([True] * 20, [True] * 20)
    eff, words = classify_change(small, p_adjusted=1.0, alpha=0.05, margin=0.1, predicted_sign=-1)
    assert eff == "inconclusive" and "not ruled out" in words


def test_h1_compares_the_languages_effects() -> None:
    n = 40
    rng = np.random.default_rng(3)
    frames_g, frames_r = [], []
    for lang, drop in (("python", 20), ("rust", 2)):
        flags = {"baseline": [True] * n, ko(): [False] * drop + [True] * (n - drop),
                 rc(): [True] * n}  # fmt: skip
        frames_g.append(generations_table(flags, language=lang))
        kl = {"baseline": np.zeros(n), ko(): rng.gamma(2, 0.2 if lang == "python" else 0.01, n),
              rc(): rng.gamma(2, 0.01, n)}  # fmt: skip
        frames_r.append(records_table(kl, language=lang))
        frames_r.append(records_table(kl, language=lang, kind="test"))
    results = h1(pd.concat(frames_r), pd.concat(frames_g), "m")
    res = {r.measure: r for r in results}
    p = res["preservation drop"]
    assert p.python.effect == pytest.approx(0.5) and p.rust.effect == pytest.approx(0.05)
    assert p.difference.effect == pytest.approx(0.45) and p.verdict == "larger in Python"
    assert p.scope == DEFAULT and p.control == rc()  # an old run: the renormalising control
    # An old run (no call-site readout): log-PPL from the ppl columns, no call-site row.
    assert set(res) == {"log-PPL", "preservation drop", "calls_function drop"}
    # The p is Welch's t on the per-prompt effects, and Holm runs across every comparison.
    gens = pd.concat(frames_g)

    def drops(lang: str) -> pd.Series:
        g = gens[gens["language"] == lang].set_index("sample_id")
        kept = g["preserved"].astype(float)
        return kept[g["condition"] == rc()] - kept[g["condition"] == ko()]

    ref = stats.ttest_ind(drops("python"), drops("rust"), equal_var=False)
    assert p.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    ps = [r.pvalue for r in results]
    holm = multipletests(ps, alpha=0.05, method="holm")[1]
    np.testing.assert_allclose([r.p_holm for r in results], holm, rtol=1e-12)
    # Swapped languages: Rust's drop is the larger one. A knockout that *raises* Python's
    # preservation (an effect below zero) reads "opposite direction in Python" instead.
    swap = pd.concat(frames_g).replace({"language": {"python": "rust", "rust": "python"}})
    assert {r.measure: r for r in h1(None, swap, "m")}["preservation drop"].verdict == (
        "larger in Rust"
    )
    up = pd.concat(frames_g)
    py_ko = (up["language"] == "python") & (up["condition"] == ko())
    up.loc[py_ko, "preserved"] = True
    up.loc[(up["language"] == "python") & (up["condition"] == rc()), "preserved"] = [False] * 20 + [
        True
    ] * (n - 20)
    [r] = [r for r in h1(None, up, "m") if r.measure == "preservation drop"]
    assert r.python.ci_high < 0 and r.verdict == "opposite direction in Python"


def _dose_gens(slopes: dict[str, float], n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Generations at Scale doses whose preservation log-odds rise by ``slope`` per doubling
    (prompt effects shared across doses)."""
    rng = np.random.default_rng(seed)
    frames = []
    arms = {"baseline": 1.0, steer("scale_0.5"): 0.5, steer("scale_2"): 2.0,
            steer("scale_4"): 4.0, steer("scale_calibrated"): 4.56, steer("scale_6"): 6.0}  # fmt: skip
    for lang, slope in slopes.items():
        u = rng.normal(0, 1, n)
        flags = {
            c: list(rng.random(n) < 1 / (1 + np.exp(-(u + slope * math.log2(f)))))
            for c, f in arms.items()
        }
        frames.append(generations_table(flags, language=lang))
    return pd.concat(frames)


def test_h2_trend_and_cross_check() -> None:
    g = _dose_gens({"rust": 0.8, "python": 0.0})
    up = h2(g, model="m", language="rust")
    flat = h2(g, model="m", language="python")
    assert up.slope > 0.3 and up.slope_p < 0.01 and up.perm_p < 0.01
    assert flat.slope_p > 0.01 and flat.perm_p > 0.01
    assert up.knot == pytest.approx(4.56) and flat.knot == 1.0
    # analysis.dose's trend and hinge equal statsmodels' exchangeable GEE fitted here on a
    # design built from the generations (dose 1 for the baseline, the Scale factor otherwise).
    rows = g[g["language"] == "rust"].copy()
    x = np.log2(np.where(rows["condition"] == "baseline", 1.0, rows["factor"]).astype(float))
    y, groups = rows["preserved"].astype(float).to_numpy(), rows["sample_id"].to_numpy()

    def gee(*cols: np.ndarray):
        exog = sm.add_constant(np.column_stack(cols), has_constant="add")
        return sm.GEE(y, exog, groups=groups, family=sm.families.Binomial(),
                      cov_struct=sm.cov_struct.Exchangeable()).fit()  # fmt: skip

    trend = gee(x)
    assert up.n_rows == len(rows) and up.n_prompts == rows["sample_id"].nunique()
    assert up.slope == pytest.approx(trend.params[1], rel=1e-6)
    assert up.slope_ci == pytest.approx(tuple(trend.conf_int()[1]), rel=1e-6)
    assert up.slope_p == pytest.approx(trend.pvalues[1], rel=1e-4)
    hinge = gee(x, np.maximum(0.0, x - math.log2(4.56)))
    b, cov = np.asarray(hinge.params), np.asarray(hinge.cov_params())
    assert up.before[0] == pytest.approx(b[1], rel=1e-6)
    assert up.after[0] == pytest.approx(b[1] + b[2], rel=1e-6)
    assert up.bend == pytest.approx(b[2], rel=1e-6)
    se_after = math.sqrt(cov[1, 1] + cov[2, 2] + 2 * cov[1, 2])
    assert up.after[2] - up.after[1] == pytest.approx(2 * 1.959963984540054 * se_after, rel=1e-6)
    assert up.bend_p == pytest.approx(hinge.pvalues[2], rel=1e-4)
    rates = dose_rates(g[g["language"] == "rust"])
    assert [r.dose for r in rates] == sorted(r.dose for r in rates) and rates[0].arm == "scale_0.5"


def test_h2_when_no_prompt_changes_with_the_dose_says_so() -> None:
    # Each prompt preserved (or not) alike at every dose, though prompts differ: the old words
    # blamed "no doses on both sides of the Python level", which was not the reason.
    g = _dose_gens({"rust": 0.0})
    first = g[g["condition"] == "baseline"].set_index("sample_id")["preserved"]
    g["preserved"] = g["sample_id"].map(first)
    r = h2(g, model="m", language="rust")
    # Nothing varies within a prompt: "not estimable", with no CI and no p (issue 28: the old
    # run printed a slope of -8e-18 with p = 1 here).
    assert r is not None and r.status == "not estimable" and r.verdict.startswith("not estimable")
    assert "no prompt's preservation changes with the dose" in r.verdict
    assert "both sides" not in r.verdict
    assert np.isnan(r.slope) and np.isnan(r.slope_p) and np.isnan(r.perm_p)
    assert all(np.isnan(v) for v in (*r.slope_ci, *r.before, *r.after, r.bend_p))


def test_permutation_trend_is_a_valid_test_under_the_null() -> None:
    rng = np.random.default_rng(5)
    ps = []
    for _ in range(60):
        t = pd.DataFrame({"sample_id": np.repeat(np.arange(20), 4), "x": np.tile([0, 1, 2, 3], 20),
                          "preserved": (rng.random(80) < 0.5).astype(float)})  # fmt: skip
        ps.append(permutation_trend(t, n_perm=499, seed=1))
    # p-values of a valid test are roughly uniform: about 5% below 0.05
    assert np.mean(np.array(ps) < 0.05) < 0.15 and 0.3 < np.median(ps) < 0.7
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_reach_gate() -> None:
    same = pd.Series([True] * 50)
    assert not reach(np.full(50, 1e-12), same, 1e-10).reached
    assert reach(np.full(50, 1e-3), same, 1e-10).reached  # KL above the floor
    moved = pd.Series([True] * 40 + [False] * 10)
    assert reach(np.full(50, 1e-12), moved, 1e-10).reached  # 20% of generations changed
    r = reach(np.full(50, 1e-12), same, math.nan)  # without a floor, nothing is ruled out
    assert r.reached and "generations changed" in r.words
