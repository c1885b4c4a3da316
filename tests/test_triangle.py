"""The triangle by scope on hand-built paired tables with known counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from synthetic_runs import (
    ALL,
    DEFAULT,
    PLIP,
    generations_table,
    ko,
    noise_table,
    rc,
    records_table,
    steer,
)

from analysis.equivalence import paired_difference
from analysis.findings import findings
from analysis.pairing import DuplicateRowError
from analysis.triangle import (
    INCONCLUSIVE,
    OPPOSITE_BOTH,
    OPPOSITE_KNOCKOUT,
    OPPOSITE_STEERING,
    STEERING_UNREACHED,
    STEERING_UNREACHED_CAUSAL,
    UNREACHED,
    classify,
    classify_all,
    interpret,
    interpretation_table,
)

T, F = True, False
SV = steer("set_value_calibrated")


def study(
    ko_flags: list[bool], rc_flags: list[bool], base: list[bool], sv: list[bool],
    *, language: str = "rust", model: str = "m", sv_up: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """(records, generations): one knockout scope with one control draw, SetValue steering
    whose manipulation check passes (attention up) unless ``sv_up`` is False."""
    n = len(base)
    g = generations_table({"baseline": base, ko(): ko_flags, rc(): rc_flags, SV: sv},
                          model=model, language=language)  # fmt: skip
    kl = {"baseline": np.zeros(n), ko(): np.full(n, 0.5), rc(): np.full(n, 0.1),
          SV: np.full(n, 0.2)}  # fmt: skip
    r = records_table(kl, model=model, language=language, seed=1)
    base_attn = r.loc[r["condition"] == SV, "attn_baseline"].to_numpy()
    r.loc[r["condition"] == SV, "attn_achieved"] = base_attn * (3.0 if sv_up else 1.0) + (
        0 if sv_up else np.random.default_rng(2).normal(0, 1e-4, n)
    )
    return r, g


N = 20
ALL_T = [T] * N
KO_DROP = [F] * 15 + [T] * 5  # vs control all True: b = 15, c = 0
HALF = [T] * 10 + [F] * 10  # baseline: 10 failures = room to improve
LIFT = [T] * N  # c = 10, b = 0


def test_causal_and_malleable_with_hand_p_values() -> None:
    out = classify(*study(KO_DROP, ALL_T, HALF, LIFT))
    assert out.cells == {DEFAULT: "causal and malleable"}
    [k] = out.knockouts
    assert k.effect == "predicted" and k.measure == "preserved"
    [st] = [t for t in out.steering.tests if t.role == "deciding"]
    # Two deciding tests (one knockout scope, one steering condition) -> Bonferroni x2.
    assert out.family_size == 2
    assert k.draws[0].p_adjusted == pytest.approx(2 * 2 * 0.5**15)
    assert st.p_adjusted == pytest.approx(2 * 2 * 0.5**10)
    assert st.diff.pvalue == pytest.approx(mcnemar([[10, 0], [10, 0]], exact=True).pvalue)
    assert k.n_pairs == N and k.knockout_rate == 0.25 and k.control_rate == 1.0
    assert "-75.0 pp" in k.words and "alpha = 0.05" in out.rule and "Bonferroni" in out.rule


def test_no_effect_needs_equivalence_not_just_significance_failing() -> None:
    # 20 pairs without a single discordant pair: not significant, but the 90% CI is wider than
    # ±10 pp, so the verdict is inconclusive, never "no effect".
    out = classify(*study(ALL_T, ALL_T, HALF, HALF))
    [k] = out.knockouts
    assert k.effect == "inconclusive" and "90% CI" in k.words and "not ruled out" in k.words
    assert k.draws[0].diff.ci90[0] < -0.10
    assert out.cells[DEFAULT] == INCONCLUSIVE
    # 200 pairs with the same rates are tight enough: equivalent, and "epiphenomenal".
    big = [T] * 200
    half = [T] * 100 + [F] * 100
    out = classify(*study(big, big, half, half))
    assert out.knockouts[0].effect == "none" and out.steering.effect == "none"
    assert out.cells[DEFAULT] == "epiphenomenal"


@pytest.mark.parametrize("inside", [True, False])
def test_tost_just_inside_and_just_outside_the_margin(inside: bool) -> None:
    # 6 of 100 pairs drop (b = 6, c = 2): not significant; the margin is set just around the
    # 90% CI's far end, which decides between "no effect" and "inconclusive".
    ref = [T] * 100
    cond = [F] * 6 + [T] * 94
    ref[10:12] = [F, F]
    diff = paired_difference(ref, cond)
    far = max(abs(v) for v in diff.ci90)
    margin = far + 1e-4 if inside else far - 1e-4
    r, g = study(cond, ref, [T] * 100, [T] * 100)
    out = classify(r, g, margin=margin)
    assert out.knockouts[0].effect == ("none" if inside else "inconclusive")


def test_effect_in_one_scope_only_decides_only_there() -> None:
    n = 40
    base = [T] * 30 + [F] * 10
    drop = [F] * 20 + [T] * 20
    flags = {"baseline": base, ko(DEFAULT): drop, rc(DEFAULT): [T] * n,
             ko(ALL): [T] * n, rc(ALL): [T] * n, ko(PLIP): [T] * n, rc(PLIP): [T] * n}  # fmt: skip
    g = generations_table(flags)
    out = classify(None, g)
    verdicts = {k.scope: k.effect for k in out.knockouts}
    assert verdicts[DEFAULT] == "predicted"
    assert verdicts[ALL] != "predicted" and verdicts[PLIP] != "predicted"
    assert out.family_size == 3


def test_an_edit_at_the_floor_that_moves_no_generation_does_not_reach_the_output() -> None:
    n = 30
    base = [T] * 20 + [F] * 10
    g = generations_table({"baseline": base, ko(PLIP): base, rc(PLIP): base},
                          same_tokens=[ko(PLIP), rc(PLIP)])  # fmt: skip
    kl = {"baseline": np.zeros(n), ko(PLIP): np.full(n, 1e-12), rc(PLIP): np.full(n, 1e-12)}
    r = records_table(kl)
    out = classify(r, g, noise_table(1e-10))
    [k] = out.knockouts
    assert k.effect == "unreached" and not k.reach.reached
    assert k.reach.changed == 0.0 and k.reach.median_kl <= k.reach.floor
    assert out.cells[PLIP] == UNREACHED and "does not reach" in k.words
    # The same knockout with a KL above the floor reaches the output: then it is judged.
    r2 = records_table({**kl, ko(PLIP): np.full(n, 0.1)})  # moves the top-1 token too
    out2 = classify(r2, g, noise_table(1e-10))
    assert out2.knockouts[0].effect != "unreached"


def test_steering_that_does_not_reach_the_output_never_decides() -> None:
    # Knockout equivalent to its control, SetValue whose attention moves (manipulation passes)
    # but whose KL stays at the floor and whose generations are token-identical to baseline:
    # the old rule read this "epiphenomenal"; the steering side must read "does not reach".
    n = 30
    base = [T] * 20 + [F] * 10
    g = generations_table({"baseline": base, ko(): base, rc(): base, SV: base},
                          same_tokens=[SV])  # fmt: skip
    kl = {"baseline": np.zeros(n), ko(): np.full(n, 0.2), rc(): np.full(n, 0.2),
          SV: np.full(n, 1e-12)}  # fmt: skip
    r = records_table(kl, seed=1)
    r.loc[r["condition"] == SV, "attn_achieved"] = 3 * r.loc[r["condition"] == SV, "attn_baseline"]
    out = classify(r, g, noise_table(1e-10))
    [t] = out.steering.tests
    assert t.manipulation_ok and t.role == "not deciding" and t.reach is not None
    assert not t.reach.reached and "does not reach the output" in t.words
    assert out.knockouts[0].effect == "none" and out.steering.effect == "unreached"
    assert out.cells[DEFAULT] == STEERING_UNREACHED and out.family_size == 1
    assert interpret("predicted", "unreached") == STEERING_UNREACHED_CAUSAL
    [sentence] = [f for f in findings([out]) if f.startswith("Knocking out")]
    assert "[steering does not reach the output]" in sentence
    # The same SetValue with a KL above the floor reaches the output, and decides.
    r.loc[r["condition"] == SV, "kl"] = 0.1
    g2 = generations_table({"baseline": base, ko(): base, rc(): base, SV: base})
    out2 = classify(r, g2, noise_table(1e-10))
    assert out2.steering.tests[0].role == "deciding" and out2.cells[DEFAULT] == "epiphenomenal"


def test_control_draws_must_agree() -> None:
    n = 40
    drop = [F] * 20 + [T] * 20
    g = generations_table({"baseline": [T] * n, ko(): drop, rc(draw=0): [T] * n,
                           rc(draw=1): drop})  # fmt: skip
    out = classify(None, g)
    [k] = out.knockouts
    assert [d.effect for d in k.draws] == ["predicted", "none"]
    assert k.effect == "disagree" and k.words.startswith("draws disagree")
    assert out.cells[DEFAULT] == "draws disagree"


def test_failed_manipulation_does_not_decide_and_python_setvalue_is_a_control() -> None:
    out = classify(*study(KO_DROP, ALL_T, HALF, LIFT, sv_up=False))
    [t] = out.steering.tests
    assert t.role == "not deciding" and not t.manipulation_ok
    assert out.steering.effect == "inconclusive" and out.family_size == 1
    py = classify(*study(KO_DROP, ALL_T, HALF, LIFT, language="python"))
    [t] = py.steering.tests
    assert t.role == "control" and "roadmap's control" in t.words


def test_opposite_direction_is_reported_never_as_no_effect() -> None:
    out = classify(*study(ALL_T, KO_DROP, HALF, [F] * N))
    assert out.knockouts[0].effect == "opposite" and "OPPOSITE" in out.knockouts[0].words
    assert out.steering.effect == "opposite"
    assert out.cells[DEFAULT] == OPPOSITE_BOTH
    out = classify(*study(ALL_T, KO_DROP, HALF, LIFT))
    assert out.cells[DEFAULT] == OPPOSITE_KNOCKOUT
    out = classify(*study(KO_DROP, ALL_T, HALF, [F] * N))
    assert out.cells[DEFAULT] == OPPOSITE_STEERING


def test_interpretation_table_covers_every_cell() -> None:
    table = interpretation_table()
    # 7 knockout effects x (7 steering effects + "steering not run").
    assert len(table) == 7 * 8 and UNREACHED in set(table["outcome"])
    assert interpret("predicted", None) == "in the predicted direction (knockout); steering not run"
    assert "one-way" not in " ".join(table.loc[table["steering effect"] == "steering not run",
                                               "outcome"])  # fmt: skip
    assert interpret("unmatched", "predicted") == "control unmatched"
    assert interpret("disagree", "none") == "draws disagree"
    assert interpret("predicted", "predicted") == "causal and malleable"
    assert interpret("none", "none") == "epiphenomenal"
    assert interpret("unreached", "predicted") == UNREACHED
    assert interpret("opposite", "inconclusive") == OPPOSITE_KNOCKOUT
    assert interpret("inconclusive", "none") == INCONCLUSIVE
    with pytest.raises(ValueError, match="not one of"):
        interpret("True", "none")


def test_p_value_zero_is_significant() -> None:
    # 3000 pairs whose differences all share a sign: scipy's Wilcoxon p is exactly 0.0.
    n = 3000
    k = np.arange(1, n + 1, dtype=float)
    recs = records_table({"baseline": np.zeros(n), ko(): k, rc(): k / 2})
    assert stats.wilcoxon(k, k / 2).pvalue == 0.0
    out = classify(recs, None)
    d = out.knockouts[0].draws[0]
    assert d.pvalue == 0.0 and d.p_adjusted == 0.0 and out.knockouts[0].effect == "predicted"


def test_kl_path_without_generations_uses_wilcoxon_and_never_claims_no_effect() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.gamma(2, 0.05, 25) + 0.3, rng.gamma(2, 0.05, 25)
    out = classify(records_table({"baseline": np.zeros(25), ko(): a, rc(): b}), None)
    [k] = out.knockouts
    assert k.measure == "kl" and k.effect == "predicted"
    assert k.draws[0].pvalue == pytest.approx(stats.wilcoxon(a, b).pvalue)
    # The headline names what decided: the KL, never preservation (nothing was generated).
    [sentence] = [f for f in findings([out]) if f.startswith("Knocking out")]
    assert "KL at the prediction" in sentence and "preservation was not measured" in sentence
    assert "lowered preservation" not in sentence
    same = classify(records_table({"baseline": np.zeros(25), ko(): b, rc(): b + 1e-6}), None)
    assert same.knockouts[0].effect in ("inconclusive", "opposite")


def test_manipulation_check_is_paired() -> None:
    r, g = study(KO_DROP, ALL_T, HALF, LIFT)
    out = classify(r, g)
    [t] = out.steering.tests
    rows = r[r["condition"] == SV]
    ref = stats.wilcoxon(rows["attn_achieved"], rows["attn_baseline"])
    assert t.manipulation.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    diff = rows["attn_achieved"] - rows["attn_baseline"]
    assert t.d_z == pytest.approx(diff.mean() / diff.std(ddof=1))


def test_several_models_need_selection() -> None:
    ra, ga = study(KO_DROP, ALL_T, HALF, LIFT, model="a")
    rb, gb = study(ALL_T, ALL_T, HALF, HALF, model="b")
    r, g = pd.concat([ra, rb]), pd.concat([ga, gb])
    with pytest.raises(ValueError, match="pass model= and language="):
        classify(r, g)
    outs = classify_all(r, g)
    assert [(o.model, o.cells[DEFAULT]) for o in outs] == [
        ("a", "causal and malleable"),
        ("b", INCONCLUSIVE),
    ]
    with pytest.raises(ValueError, match="no rows for model='c'"):
        classify(r, g, model="c", language="rust")


def test_bad_input() -> None:
    r, g = study(ALL_T, ALL_T, HALF, HALF)
    with pytest.raises(ValueError, match="alpha"):
        classify(r, g, alpha=0.0)
    with pytest.raises(ValueError, match="margin"):
        classify(r, g, margin=0.0)
    with pytest.raises(ValueError, match="both are empty"):
        classify(None, None)
    with pytest.raises(DuplicateRowError, match="sample 's0' appears more than once"):
        classify(None, pd.concat([g, g]))
    with pytest.raises(ValueError, match="lacks columns"):
        classify(None, g.drop(columns=["sample_id"]))


def test_direction_comes_from_the_rank_sums_not_the_median() -> None:
    # Blocks of 7 tiny negative and 5 large positive differences: median < 0 but W+ > W-.
    n = 96
    diff = np.array(([-1e-3] * 7 + [1.0, 2.0, 3.0, 4.0, 5.0]) * 8)
    base = np.full(n, 1.0)
    out = classify(records_table({"baseline": np.zeros(n), ko(): base + diff, rc(): base}), None)
    d = out.knockouts[0].draws[0]
    assert d.kl.effect < 0  # the median difference points the other way
    ranks = stats.rankdata(np.abs(diff))
    assert ranks[diff > 0].sum() > ranks[diff < 0].sum() and d.kl_direction == 1
    assert d.p_adjusted < 0.05 and out.knockouts[0].effect == "predicted"
