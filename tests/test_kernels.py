"""Pure tensor edits against hand-written references (no model)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy

from plip_nn import kernels
from plip_nn.edits import EditSpecError, Scale

torch.manual_seed(0)


def _causal_scores(b=2, h=3, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, h, n, n, generator=g) * 2
    mask = torch.ones(n, n, dtype=torch.bool).triu(1)
    return s.masked_fill(mask, torch.finfo(s.dtype).min)


def _verify(scores, consumed, groups):
    """Stats of ``groups`` for a model that consumed ``consumed`` (float32 reference rtol)."""
    rows, srcs = kernels.edited_rows(groups)
    thresh = kernels.masked_threshold(scores.dtype)
    rtol = kernels.relative_tolerance(consumed.dtype, torch.float32)
    st = kernels.verify_groups(
        scores[rows, :, srcs, :],
        consumed[rows, :, srcs, :],
        groups,
        rows,
        srcs,
        thresh,
        rtol,
        1e-38,
    )
    return st[0] if len(groups) == 1 else st


def test_knockout_matches_hand_softmax():
    scores = _causal_scores()
    group = [1, None, [5, 6], [0, 2, 3], kernels.KNOCKOUT, 0.0]
    out = kernels.knockout_scores(scores, group)
    stats = _verify(scores, torch.softmax(out, -1), [group])
    probs = torch.softmax(out, -1)
    # Reference: exp over allowed, non-knocked keys only, by hand.
    for h in range(3):
        for s in (5, 6):
            row = scores[1, h, s].double()
            keep = [t for t in range(s + 1) if t not in (0, 2, 3)]
            z = sum(math.exp(row[t] - row[keep].max()) for t in keep)
            for t in range(7):
                expected = math.exp(row[t] - row[keep].max()) / z if t in keep else 0.0
                assert probs[1, h, s, t].item() == pytest.approx(expected, abs=1e-6)
            assert probs[1, h, s, [0, 2, 3]].abs().max().item() == 0.0
    # Other batch rows and other query rows are untouched.
    assert torch.equal(out[0], scores[0])
    assert torch.equal(out[1, :, :5], scores[1, :, :5])
    assert stats[kernels.ST_LEVEL_AFTER].item() == 0.0
    assert stats[kernels.ST_ERROR_RATIO].item() <= 1.0 and stats[kernels.ST_N_BAD].item() == 0.0
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-6)


def test_knockout_flags_dead_rows_and_masked_edges():
    scores = _causal_scores()
    # Row 1 may attend to keys 0,1 only: knocking out both leaves nothing.
    for group in ([0, None, [1], [0, 1], kernels.KNOCKOUT, 0.0], [0, None, [2], [4], 0, 0.0]):
        # Row 1 may attend to keys 0, 1 only (both knocked out); key 4 is in row 2's future.
        out = kernels.knockout_scores(scores, group)
        stats = _verify(scores, torch.softmax(out, -1), [group])
        assert stats[kernels.ST_N_BAD].item() > 0


@pytest.mark.parametrize("f", [0.5, 2.0, 6.0])
def test_scale_mass_formula(f):
    scores = _causal_scores(seed=1)
    probs = torch.softmax(scores, -1)
    group = [0, [0, 2], [6], [1, 4], kernels.SCALE, f]
    out = kernels.scale_probs(probs, group)
    stats = _verify(scores, out, [group])
    for h in (0, 2):
        m = probs[0, h, 6, [1, 4]].sum().item()
        # the spec's closed form (edits.Scale) against the kernel's renormalisation
        expected = Scale(factor=f).expected_mass(m)
        assert out[0, h, 6, [1, 4]].sum().item() == pytest.approx(expected, abs=1e-6)
        # Non-targets keep their proportions.
        others = [0, 2, 3, 5, 6]
        ratio = out[0, h, 6, others] / probs[0, h, 6, others]
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5)
        assert out[0, h, 6].sum().item() == pytest.approx(1.0, abs=1e-6)
    # Head 1 not edited.
    assert torch.equal(out[0, 1], probs[0, 1])
    assert stats[kernels.ST_ERROR_RATIO].item() <= 1 and stats[kernels.ST_N_BAD].item() == 0


def test_scale_formula_by_hand_and_its_inverse():
    # f = 3, m = 1/4: 3/4 / (1 - 1/4 + 3/4) = 1/2, and back.
    assert Scale(factor=3.0).expected_mass(0.25) == 0.5
    assert Scale.factor_for(0.25, 0.5) == 3.0
    assert Scale(factor=1.0).expected_mass(0.3) == 0.3
    for m in (1e-4, 0.1, 0.5, 0.93):
        for target in (1e-3, 0.2, 0.5, 0.99):
            f = Scale.factor_for(m, target)
            assert Scale(factor=f).expected_mass(m) == pytest.approx(target, rel=1e-12)


@pytest.mark.parametrize(("m", "target", "bad"), [(0.0, 0.5, "mass=0.0"), (1.0, 0.5, "mass=1.0"),
                                                   (0.2, 1.0, "target=1.0"), (0.2, 0.0, "target=0.0"),
                                                   (0.2, float("nan"), "target=nan")])  # fmt: skip
def test_scale_inverse_refuses_masses_outside_zero_one(m, target, bad):
    with pytest.raises(EditSpecError, match=f"{bad} must be strictly between 0 and 1"):
        Scale.factor_for(m, target)


def test_scale_one_is_identity():
    probs = torch.softmax(_causal_scores(), -1)
    out = kernels.scale_probs(probs, [0, None, [3, 6], [0, 2], kernels.SCALE, 1.0])
    assert (out - probs).abs().max().item() <= 1e-6


def test_set_value_exact_and_proportional():
    scores = _causal_scores(seed=2)
    probs = torch.softmax(scores, -1)
    v = 0.15
    group = [1, None, [4], [0, 3], kernels.SET_VALUE, v]
    out = kernels.set_value_probs(probs, scores, group)
    stats = _verify(scores, out, [group])
    for h in range(3):
        row, new = probs[1, h, 4], out[1, h, 4]
        assert new[[0, 3]].tolist() == pytest.approx([v, v], abs=1e-7)
        assert new[5:].abs().max().item() == 0.0  # masked future keys stay 0
        others = [1, 2, 4]
        expected = row[others] / row[others].sum() * (1 - 2 * v)
        assert torch.allclose(new[others], expected, atol=1e-6)
    assert stats[kernels.ST_ERROR_RATIO].item() <= 1 and stats[kernels.ST_N_BAD].item() == 0


def test_read_levels_is_head_mean_over_targets():
    probs = torch.softmax(_causal_scores(), -1)
    lv = kernels.read_levels(probs, [[1, [6], [0, 2, 5]]])[0]
    w = probs[1, :, 6, [0, 2, 5]].mean(0)
    assert lv[0].item() == pytest.approx(w.mean().item(), abs=1e-7)
    assert lv[1].item() == pytest.approx(w.sum().item(), abs=1e-7)


def test_kl_rows_matches_scipy_in_the_baseline_to_condition_direction():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 50)) * 3
    cond = rng.normal(size=(3, 50))
    lb = torch.log_softmax(torch.tensor(base, dtype=torch.float32), -1)
    lc = torch.log_softmax(torch.tensor(cond, dtype=torch.float32), -1)
    kl = kernels.kl_rows(lb, lc)
    assert kl.dtype == torch.float64
    # KL(P_base || P_cond) of the float32 log-probs, renormalised in float64
    p, q = softmax(lb.double().numpy(), axis=-1), softmax(lc.double().numpy(), axis=-1)
    np.testing.assert_allclose(kl.numpy(), entropy(p, q, axis=-1), rtol=1e-10)
    assert not np.allclose(kl.numpy(), entropy(q, p, axis=-1), rtol=1e-3)
    # zero mass in the condition where the baseline has some: inf, no smoothing
    zero = torch.tensor([[0.0, -math.inf]])
    assert kernels.kl_rows(torch.log(torch.tensor([[0.5, 0.5]])), zero).item() == math.inf
    assert kernels.kl_rows(zero, zero).item() == 0.0  # 0 * log 0 counts as 0


def test_kl_rows_matches_definition():
    g = torch.Generator().manual_seed(3)
    a = torch.log_softmax(torch.randn(4, 11, generator=g), -1)
    b = torch.log_softmax(torch.randn(4, 11, generator=g), -1)
    kl = kernels.kl_rows(a, b)
    pa = a.double().exp()
    ref = (pa * (a.double() - b.double())).sum(-1)
    assert torch.allclose(kl, ref)
    assert torch.allclose(kernels.kl_rows(a, a), torch.zeros(4, dtype=torch.float64))


def test_token_nll_ignores_padding():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 5, 9, generator=g)
    ids = torch.tensor([[0, 0, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    nll, n = kernels.token_nll(logits, ids, mask)
    lp = torch.log_softmax(logits.double(), -1)
    ref = -(lp[0, 2, 4] + lp[0, 3, 5])
    assert n.item() == 2
    assert nll.item() == pytest.approx(ref.item(), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Many groups at once (the vectorised path) against a per-group, per-head, per-row loop


def _loop_reference(scores, groups):
    """Knockouts on the scores, softmax, then each Scale / SetValue group in order, one
    (head, source) row at a time, exactly as docs/CONTRACT.md states the edits."""
    thresh = kernels.masked_threshold(scores.dtype)
    sc = scores.clone()
    for g in groups:
        if g[kernels.G_OP] != kernels.KNOCKOUT:
            continue
        for h in g[kernels.G_HEADS] or range(scores.shape[1]):
            for s in g[kernels.G_SOURCES]:
                for t in g[kernels.G_TARGETS]:
                    sc[g[kernels.G_ROW], h, s, t] = -math.inf
    p = torch.softmax(sc, -1)
    for g in groups:
        op, param = g[kernels.G_OP], g[kernels.G_PARAM]
        if op == kernels.KNOCKOUT:
            continue
        targets = g[kernels.G_TARGETS]
        for h in g[kernels.G_HEADS] or range(scores.shape[1]):
            for s in g[kernels.G_SOURCES]:
                row = p[g[kernels.G_ROW], h, s].clone()
                if op == kernels.SCALE:
                    row[targets] = row[targets] * param
                    row = row / row.sum()
                else:
                    allowed = sc[g[kernels.G_ROW], h, s] > thresh
                    others = [t for t in range(len(row)) if allowed[t] and t not in targets]
                    mass = row[others].sum()
                    new = torch.zeros_like(row)
                    new[others] = row[others] / mass * (1 - param * len(targets))
                    new[targets] = param
                    row = new
                p[g[kernels.G_ROW], h, s] = row
    return sc, p


def _random_groups(gen: torch.Generator, b: int, h: int, n: int, count: int) -> list:
    groups = []
    for _ in range(count):
        row = int(torch.randint(b, (1,), generator=gen))
        sources = sorted({int(x) for x in torch.randint(4, n, (2,), generator=gen)})
        targets = sorted({int(x) for x in torch.randint(0, 3, (2,), generator=gen)})
        heads = None
        if torch.rand(1, generator=gen) < 0.4:
            heads = sorted({int(x) for x in torch.randint(h, (2,), generator=gen)})
        op = int(torch.randint(3, (1,), generator=gen))
        param = {kernels.KNOCKOUT: 0.0, kernels.SCALE: float(torch.rand(1, generator=gen)) * 5 + 0.2,
                 kernels.SET_VALUE: 0.1}[op]  # fmt: skip
        groups.append([row, heads, sources, targets, op, param])
    return groups


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_edits_equal_a_per_group_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    scores = _causal_scores(b=3, h=4, n=9, seed=seed)
    groups = _random_groups(gen, 3, 4, 9, count=10)
    ref_scores, ref_probs = _loop_reference(scores, groups)
    got_scores = kernels.apply_knockouts(scores.clone(), groups)
    assert torch.equal(got_scores, ref_scores)
    got = kernels.apply_prob_edits(torch.softmax(got_scores, -1), got_scores, groups)
    torch.testing.assert_close(got, ref_probs, atol=2e-6, rtol=0)
    # The verification of all groups at once accepts the edit and measures each group.
    stats = _verify(scores, got, groups)
    assert stats.shape == (len(groups), kernels.N_STATS)
    assert (stats[:, kernels.ST_ERROR_RATIO] <= 1).all()
    assert (stats[:, kernels.ST_N_BAD] == 0).all()
    for g, st in zip(groups, stats, strict=True):
        w = got[g[kernels.G_ROW]][:, g[kernels.G_SOURCES]][:, :, g[kernels.G_TARGETS]].mean(0)
        assert st[kernels.ST_LEVEL_AFTER].item() == pytest.approx(w.mean().item(), abs=1e-6)
        assert st[kernels.ST_MASS_AFTER].item() == pytest.approx(w.sum(-1).mean().item(), abs=1e-6)


def test_vectorised_verification_names_the_wrong_group():
    scores = _causal_scores(b=2, h=3, n=8, seed=9)
    groups = [
        [0, None, [7], [1, 2], kernels.SCALE, 3.0],
        [1, [0, 2], [6, 7], [0], kernels.KNOCKOUT, 0.0],
        [1, None, [5], [2, 3], kernels.SET_VALUE, 0.2],
    ]
    edited = kernels.apply_knockouts(scores.clone(), groups)
    probs = kernels.apply_prob_edits(torch.softmax(edited, -1), edited, groups)
    assert (_verify(scores, probs, groups)[:, kernels.ST_ERROR_RATIO] <= 1).all()
    wrong = probs.clone()
    wrong[1, 1, 5, 2] *= 1.01  # the SetValue row of head 1 is 1% off on one target
    ratios = _verify(scores, wrong, groups)[:, kernels.ST_ERROR_RATIO]
    assert ratios[2] > 1 and ratios[0] <= 1 and ratios[1] <= 1


def test_read_levels_of_several_reads_at_once():
    probs = torch.softmax(_causal_scores(b=2, h=3, n=8), -1)
    reads = [[1, [6], [0, 2, 5]], [0, [4, 7], [1]], [1, [6, 7], [3, 0]]]
    got = kernels.read_levels(probs, reads)
    for r, (row, srcs, tgts) in enumerate(reads):
        w = probs[row][:, srcs][:, :, tgts].mean(0)  # [S, T] head-mean
        assert got[r, kernels.RD_LEVEL].item() == pytest.approx(w.mean().item(), abs=1e-7)
        assert got[r, kernels.RD_MASS].item() == pytest.approx(w.sum(-1).mean().item(), abs=1e-7)
