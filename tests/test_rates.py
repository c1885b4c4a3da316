"""Per-prompt rates (analysis.rates): hand-computed rates, a direct statsmodels GEE, a simulation
with a known effect (coverage) and a null (false-positive rate, uniform p-values)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats

from analysis.hypothesis import bootstrap_mean_diff
from analysis.rates import (
    classify_rates,
    decoding_rows,
    gee_paired,
    paired_rate_test,
    prompt_rates,
)


def simulate(
    rng: np.random.Generator, *, n: int = 50, k: int = 4, effect: float = -0.15
) -> pd.DataFrame:
    """Generations of ``ref`` and ``ko``: prompt rates p ~ U(0.3, 0.9), ko = p + effect."""
    p_ref = rng.uniform(0.3, 0.9, n)
    rows = []
    for cond, p in (("ref", p_ref), ("ko", p_ref + effect)):
        for i in range(n):
            y = rng.random(k + 1) < p[i]
            rows.append((f"s{i}", cond, "greedy", 0, 0, bool(y[0]), True))
            rows += [(f"s{i}", cond, "sampled", j, 1000 + j, bool(y[j + 1]), bool(j % 2))
                     for j in range(k)]  # fmt: skip
    cols = ["sample_id", "condition", "decoding", "sample_index", "gen_seed", "preserved",
            "calls_function"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def test_prompt_rates_match_a_hand_count() -> None:
    g = simulate(np.random.default_rng(0), n=6, k=3)
    rates = prompt_rates(g)
    s = g[g["decoding"] == "sampled"]
    for (sid, cond), sub in s.groupby(["sample_id", "condition"]):
        row = rates[(rates["sample_id"] == sid) & (rates["condition"] == cond)].iloc[0]
        assert row["k"] == 3 and row["rate"] == pytest.approx(sub["preserved"].mean())
        greedy = g[(g["sample_id"] == sid) & (g["condition"] == cond) & (g["decoding"] == "greedy")]
        assert row["greedy"] == float(greedy["preserved"].iloc[0])
    both = prompt_rates(g, decodings=("greedy", "sampled"), outcome="calls_function")
    assert (both["k"] == 4).all() and both["rate"].eq(0.5).all()  # greedy True + 1 of 3 sampled


def test_bootstrap_and_gee_equal_direct_references() -> None:
    g = simulate(np.random.default_rng(1))
    res = paired_rate_test(g, "ko", "ref", n_resamples=2000, seed=3)
    s = g[g["decoding"] == "sampled"]
    r = s.groupby(["condition", "sample_id"])["preserved"].mean().unstack(0)
    boot = bootstrap_mean_diff(r["ko"], r["ref"], paired=True, n_resamples=2000, seed=3)
    assert res.effect == pytest.approx(r["ko"].mean() - r["ref"].mean())
    assert res.ci == pytest.approx((boot.ci_low, boot.ci_high))
    data = s.assign(y=s["preserved"].astype(float), ko=(s["condition"] == "ko").astype(float))
    direct = smf.gee("y ~ ko", groups="sample_id", data=data, family=sm.families.Binomial(),
                     cov_struct=sm.cov_struct.Exchangeable()).fit()  # fmt: skip
    assert res.gee.status == "ok"
    assert res.gee.log_or == pytest.approx(direct.params["ko"], abs=1e-6)
    assert res.gee.pvalue == pytest.approx(direct.pvalues["ko"], rel=1e-4)
    assert res.gee.ci == pytest.approx(tuple(direct.conf_int().loc["ko"]), abs=1e-5)
    assert res.gee.n_clusters == 50 and res.gee.n_rows == 400


def test_known_effect_is_covered_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(11)
    effect, reps = -0.15, 100
    true_log_or = math.log(0.45 / 0.55) - math.log(0.6 / 0.4)  # marginal means 0.45 vs 0.6
    boot_cover = gee_cover = agree = sig = 0
    for _ in range(reps):
        res = paired_rate_test(simulate(rng, effect=effect), "ko", "ref", n_resamples=1000,
                               seed=int(rng.integers(1 << 30)))  # fmt: skip
        boot_cover += res.ci[0] <= effect <= res.ci[1]
        gee_cover += res.gee.ci[0] <= true_log_or <= res.gee.ci[1]
        agree += bool(res.agree)
        sig += res.boot_significant and res.effect < 0
    # 95% intervals over 100 repetitions: binomial SD 2.2 points
    assert 0.88 <= boot_cover / reps <= 0.99
    assert 0.88 <= gee_cover / reps <= 0.99
    assert sig / reps > 0.6 and agree / reps >= 0.85


def test_null_gives_nominal_false_positives_and_uniform_p() -> None:
    rng = np.random.default_rng(12)
    reps = 150
    boot_fp = gee_fp = 0
    pvals = []
    for _ in range(reps):
        res = paired_rate_test(simulate(rng, effect=0.0), "ko", "ref", n_resamples=1000,
                               seed=int(rng.integers(1 << 30)))  # fmt: skip
        boot_fp += res.boot_significant
        gee_fp += res.gee.pvalue < 0.05
        pvals.append(res.gee.pvalue)
    # alpha = 0.05 over 150 nulls: expected 7.5, SD 2.7
    assert boot_fp / reps <= 0.11 and gee_fp / reps <= 0.11
    assert stats.kstest(pvals, "uniform").pvalue > 0.01


def test_verdicts_in_words() -> None:
    rng = np.random.default_rng(2)
    drop = paired_rate_test(simulate(rng, n=120, effect=-0.3), "ko", "ref", n_resamples=1000)
    assert classify_rates(drop, margin=0.1, predicted_sign=-1)[0] == "predicted"
    assert classify_rates(drop, margin=0.1, predicted_sign=1)[0] == "opposite"
    flat = paired_rate_test(simulate(rng, n=400, k=6, effect=0.0), "ko", "ref", n_resamples=1000)
    eff, words = classify_rates(flat, margin=0.1, predicted_sign=-1)
    assert eff == "none" and "TOST" in words
    small = paired_rate_test(simulate(rng, n=8, effect=0.0), "ko", "ref", n_resamples=1000)
    assert classify_rates(small, margin=0.1, predicted_sign=-1)[0] in ("inconclusive",)


def test_nothing_varies_is_not_estimable() -> None:
    g = simulate(np.random.default_rng(4), n=10)
    g["preserved"] = True
    res = paired_rate_test(g, "ko", "ref", n_resamples=1000)
    assert res.effect == 0 and res.gee.status.startswith("not estimable")
    assert res.agree is None and math.isnan(res.gee.pvalue)
    eff, words = classify_rates(res, margin=0.1, predicted_sign=-1)
    assert res.degenerate and eff == "inconclusive" and "not estimable" in words
    rows = decoding_rows(g)
    assert gee_paired(rows, "ko", "nope").status.startswith("not estimable")


def test_bad_tables_fail_with_the_fix() -> None:
    g = simulate(np.random.default_rng(5), n=4)
    with pytest.raises(ValueError, match="lacks columns"):
        prompt_rates(g.drop(columns="gen_seed"))
    with pytest.raises(ValueError, match="allowed values"):
        prompt_rates(g.assign(decoding="beam"))
    with pytest.raises(ValueError, match="share a key"):
        prompt_rates(pd.concat([g, g.iloc[:1]]))
    with pytest.raises(ValueError, match="filter to one language"):
        prompt_rates(g.assign(language=np.where(np.arange(len(g)) % 2, "python", "rust")))
    with pytest.raises(ValueError, match="has no sampled decodings"):
        paired_rate_test(g, "knockout", "ref")
    with pytest.raises(ValueError, match="must be boolean"):
        prompt_rates(g.assign(preserved=2.0))
