"""Causal-triangle classification on hand-built paired tables with known counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from synthetic_runs import generations_table, records_table

from analysis.pairing import DuplicateRowError
from analysis.triangle import (
    INCONCLUSIVE,
    OPPOSITE_BOTH,
    OPPOSITE_KNOCKOUT,
    OPPOSITE_STEERING,
    classify,
    classify_all,
    interpret,
    interpretation_table,
)

T, F = True, False


def gens(
    ko: list[bool], rc: list[bool], base: list[bool], sv: list[bool], **kw: str
) -> pd.DataFrame:
    return generations_table(
        {"baseline": base, "knockout": ko, "random_control": rc, "set_value_calibrated": sv}, **kw
    )


N = 20
ALL_T = [T] * N
KO_DROP = [F] * 15 + [T] * 5  # vs random_control all True: b = 15, c = 0
HALF = [T] * 10 + [F] * 10  # baseline: 10 failures = room to improve
LIFT = [T] * N  # c = 10, b = 0


def test_causal_and_malleable_with_hand_p_values() -> None:
    out = classify(None, gens(KO_DROP, ALL_T, HALF, LIFT))
    assert out.interpretation == "causal and malleable"
    assert out.knockout_effect == "predicted" and out.steering_effect == "predicted"
    ko, st = [t for t in out.tests if t.decides]
    assert ko.decides and ko.measure == "preserved" and ko.reference == "random_control"
    # Two deciding tests -> Bonferroni x2 on exact two-sided binomial p-values.
    assert ko.p_adjusted == pytest.approx(2 * 2 * 0.5**15)
    assert st.p_adjusted == pytest.approx(2 * 2 * 0.5**10)
    assert st.result.pvalue == pytest.approx(mcnemar([[10, 0], [10, 0]], exact=True).pvalue)
    assert out.n_pairs == {"knockout": N, "set_value_calibrated": N}
    assert "-0.750" in out.knockout_direction and "+0.500" in out.steering_direction
    assert "alpha=0.05" in out.rule and "Bonferroni" in out.rule


def test_causal_one_way() -> None:
    out = classify(None, gens(KO_DROP, ALL_T, HALF, HALF))
    assert (out.knockout_effect, out.steering_effect) == ("predicted", "none")
    assert out.interpretation == "causal one-way"


def test_confounded() -> None:
    out = classify(None, gens(ALL_T, ALL_T, HALF, LIFT))
    assert (out.knockout_effect, out.steering_effect) == ("none", "predicted")
    assert out.interpretation == "confounded"


def test_epiphenomenal() -> None:
    out = classify(None, gens(ALL_T, ALL_T, HALF, HALF))
    assert out.interpretation == "epiphenomenal"


def test_low_n_is_inconclusive() -> None:
    out = classify(None, gens([T] * 5, [T] * 5, [T, F, T, F, T], [T, F, T, F, T]))
    assert out.knockout_effect == "inconclusive" and out.interpretation == INCONCLUSIVE


def test_ceiling_leaves_no_room_for_steering() -> None:
    # Baseline preserves every sample: a rise is impossible, so "no improvement" is not evidence.
    out = classify(None, gens(KO_DROP, ALL_T, ALL_T, ALL_T))
    assert out.knockout_effect == "predicted" and out.steering_effect == "inconclusive"
    assert out.interpretation == INCONCLUSIVE


def test_few_movable_pairs_is_inconclusive() -> None:
    # Only 4 baseline failures: even all four improving gives exact p = 0.125 > alpha/2.
    base = [F] * 4 + [T] * 16
    out = classify(None, gens(KO_DROP, ALL_T, base, base))
    assert out.steering_effect == "inconclusive"


def test_opposite_direction_is_reported_never_as_no_effect() -> None:
    # Knockout preserves MORE than the control (b = 0, c = 15); steering drops (b = 10, c = 0).
    out = classify(None, gens(ALL_T, KO_DROP, HALF, [F] * N))
    assert out.knockout_effect == "opposite" and "OPPOSITE" in out.knockout_direction
    assert out.steering_effect == "opposite" and "significant drop" in out.steering_direction
    assert out.interpretation == OPPOSITE_BOTH
    out = classify(None, gens(ALL_T, KO_DROP, HALF, LIFT))
    assert (out.knockout_effect, out.steering_effect) == ("opposite", "predicted")
    assert out.interpretation == OPPOSITE_KNOCKOUT
    out = classify(None, gens(KO_DROP, ALL_T, HALF, [F] * N))
    assert out.interpretation == OPPOSITE_STEERING


def test_interpretation_table_covers_every_cell() -> None:
    table = interpretation_table()
    assert len(table) == 16 and table["outcome"].nunique() == 8
    assert interpret("predicted", "predicted") == "causal and malleable"
    assert interpret("none", "none") == "epiphenomenal"
    assert interpret("opposite", "inconclusive") == OPPOSITE_KNOCKOUT
    assert interpret("inconclusive", "none") == INCONCLUSIVE
    with pytest.raises(ValueError, match="not one of"):
        interpret("True", "none")


def test_p_value_zero_is_significant() -> None:
    # 3000 pairs whose differences all share a sign: scipy's Wilcoxon p is exactly 0.0.
    n = 3000
    ko = np.arange(1, n + 1, dtype=float)
    recs = records_table({"baseline": np.zeros(n), "knockout": ko, "random_control": ko / 2})
    assert stats.wilcoxon(ko, ko / 2).pvalue == 0.0
    out = classify(recs, None)
    dec = next(t for t in out.tests if t.decides)
    assert dec.result.pvalue == 0.0 and dec.p_adjusted == 0.0
    assert out.knockout_effect == "predicted"


def test_kl_path_without_generations_uses_wilcoxon() -> None:
    rng = np.random.default_rng(0)
    ko, rc = rng.gamma(2, 0.05, 25) + 0.3, rng.gamma(2, 0.05, 25)
    recs = records_table(
        {"baseline": np.zeros(25), "knockout": ko, "random_control": rc, "scale_2": rc}
    )
    out = classify(recs, None)
    dec = out.tests[0]
    assert dec.measure == "kl" and dec.decides
    assert dec.result.pvalue == pytest.approx(stats.wilcoxon(ko, rc).pvalue)
    assert out.knockout_effect == "predicted" and out.steering_effect == "inconclusive"
    assert out.interpretation == INCONCLUSIVE
    # Manipulation check is paired: Wilcoxon and paired t of achieved vs baseline, same rows.
    manip = [t for t in out.tests if t.role == "manipulation"]
    assert [t.result.name for t in manip] == ["wilcoxon_signed_rank", "paired_t"]
    rows = recs[recs["condition"] == "scale_2"]
    ref_w = stats.wilcoxon(rows["attn_achieved"], rows["attn_baseline"])
    ref_t = stats.ttest_rel(rows["attn_achieved"], rows["attn_baseline"])
    assert manip[0].result.pvalue == pytest.approx(ref_w.pvalue, rel=1e-12)
    assert manip[1].result.statistic == pytest.approx(ref_t.statistic, rel=1e-12)
    diff = rows["attn_achieved"] - rows["attn_baseline"]
    assert out.d_z["scale_2"] == pytest.approx(diff.mean() / diff.std(ddof=1))


def test_generations_decide_and_kl_supports() -> None:
    recs = records_table({"knockout": np.full(N, 0.5), "random_control": np.full(N, 0.1)})
    out = classify(recs, gens(KO_DROP, ALL_T, HALF, LIFT))
    measures = [(t.measure, t.decides) for t in out.tests if t.role == "knockout"]
    assert measures == [("preserved", True), ("preserved", False), ("kl", False)]


def test_several_models_need_selection() -> None:
    g = pd.concat(
        [gens(KO_DROP, ALL_T, HALF, LIFT, model="a"), gens(ALL_T, ALL_T, HALF, HALF, model="b")]
    )
    with pytest.raises(ValueError, match="pass model= and language="):
        classify(None, g)
    outs = classify_all(None, g)
    assert [(o.model, o.interpretation) for o in outs] == [
        ("a", "causal and malleable"),
        ("b", "epiphenomenal"),
    ]
    with pytest.raises(ValueError, match="no rows for model='c'"):
        classify(None, g, model="c", language="rust")


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="alpha"):
        classify(None, gens(ALL_T, ALL_T, HALF, HALF), alpha=0.0)
    with pytest.raises(ValueError, match="both are empty"):
        classify(None, None)
    g = gens(ALL_T, ALL_T, HALF, HALF)
    with pytest.raises(DuplicateRowError, match="sample 's0' appears more than once"):
        classify(None, pd.concat([g, g]))
    with pytest.raises(ValueError, match="lacks columns"):
        classify(None, g.drop(columns=["sample_id"]))


def test_direction_comes_from_the_rank_sums_not_the_median() -> None:
    # Blocks of 7 tiny negative and 5 large positive differences: median < 0 but W+ > W-.
    n = 96
    diff = np.array(([-1e-3] * 7 + [1.0, 2.0, 3.0, 4.0, 5.0]) * 8)
    rc = np.full(n, 1.0)
    recs = records_table({"baseline": np.zeros(n), "knockout": rc + diff, "random_control": rc})
    out = classify(recs, None)
    dec = next(t for t in out.tests if t.decides)
    assert dec.result.effect < 0  # the median difference points the other way
    ranks = stats.rankdata(np.abs(diff))
    assert ranks[diff > 0].sum() > ranks[diff < 0].sum() and dec.direction == 1
    assert dec.result.pvalue == pytest.approx(stats.wilcoxon(rc + diff, rc).pvalue)
    assert dec.p_adjusted < 0.05 and out.knockout_effect == "predicted"
