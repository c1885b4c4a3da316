"""Which heads carry it (experiments.heads, analysis.heads): a built copy head is found first by
both the sweep and the attribution; the held-out split is disjoint and seeded; the top-K is
chosen over every layer and becomes one edit per layer; the random heads are matched within
±25% and never repeat across draws; the share of the whole-model effect matches a hand
computation; the command runs end to end and exits 2 on a bad K."""

from __future__ import annotations

import binascii
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from archs import tiny_handle, tiny_tokenizer
from study_fixtures import write_corpus, write_model_dir
from transformers import AutoModelForCausalLM, Qwen2Config

from analysis.heads import (
    held_out,
    summarize,
    top_overlap,
    validate_attribution,
    whole_model_share,
)
from experiments import conditions
from experiments.cli import main as cli_main
from experiments.heads import (
    HEADS_TOLERANCE,
    HeadsFlags,
    distinct_draws,
    head_arms,
    head_sets,
    resolve_k,
    run_sweep,
    select_heads,
    sweep_masses,
)
from experiments.study import Prepared, Study
from plip_nn.models import wrap_model
from plip_nn.positions import TokenPositions
from plip_nn.runs import RunDir
from plip_nn.scope import function_half

# ---------------------------------------------------------------------------------------------
# A model with one head built to copy from the function's tokens

V, D, N_HEADS, HD = 320, 64, 4, 16
COPY_LAYER, COPY_HEAD = 1, 2
F_T, F_M = D - 2, D - 1  # residual dims that flag "function token" and "marker"
TARGET_IDS = (40, 41, 42)
MARKER = 50


def copy_head_model() -> torch.nn.Module:
    """Qwen2 (2 layers, 4 heads) whose head 1.2 attends from the marker to the tokens flagged as
    the function's and writes their identity into the residual, which the unembedding reads.

    Layer 0 and both MLPs write nothing, so layer 1 reads the embeddings; the other heads of
    layer 1 keep their random weights at 0.3 of their output, so they matter a little.
    """
    cfg = Qwen2Config(
        vocab_size=V, hidden_size=D, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=N_HEADS, num_key_value_heads=N_HEADS, max_position_embeddings=256,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False,
        initializer_range=0.2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    rows = slice(COPY_HEAD * HD, (COPY_HEAD + 1) * HD)
    rope_slow = COPY_HEAD * HD + HD // 2 - 1  # the slowest rotary pair: ~no position effect
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.normal_()
        emb[:, [F_T, F_M]] = 0.0
        emb[list(TARGET_IDS), :HD] *= 2.0
        emb[list(TARGET_IDS), F_T] = 4.0
        emb[MARKER] *= 0.1
        emb[MARKER, F_M] = 4.0
        layer0, layer1 = model.model.layers
        layer0.self_attn.o_proj.weight.zero_()
        layer0.mlp.down_proj.weight.zero_()
        layer1.mlp.down_proj.weight.zero_()
        attn = layer1.self_attn
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            lin.weight[rows] = 0.0
            lin.bias[rows] = 0.0
        attn.q_proj.weight[rope_slow, F_M] = 0.5  # the marker asks ...
        attn.k_proj.weight[rope_slow, F_T] = 0.5  # ... for the function's tokens
        attn.o_proj.weight *= 0.3
        attn.o_proj.weight[:, rows] = 0.0
        for j in range(HD):  # copy the first HD residual dims
            attn.v_proj.weight[COPY_HEAD * HD + j, j] = 1.0
            attn.o_proj.weight[j, COPY_HEAD * HD + j] = 2.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, :HD] = emb[:, :HD]
    return model


def _prompts() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(ids, target positions): the function's tokens among fillers, the marker last."""
    out = []
    for i, layout in enumerate(("TTfTffff", "fTTfTfff", "TfTfTfff", "ffTTTfff")):
        ids, targets, t = [], [], 0
        for j, c in enumerate(layout):
            if c == "T":
                ids.append(TARGET_IDS[t])
                targets.append(j)
                t += 1
            else:
                ids.append(60 + 7 * i + j)
        out.append(((*ids, MARKER), tuple(targets)))
    return out


def _study(handle, prompts, tmp_path: Path, seed: int = 0) -> Study:
    cfg = HeadsFlags(model=handle.name, progress=False, seed=seed, batch_size=8)
    samples = []
    for i, (ids, targets) in enumerate(prompts):
        pos = TokenPositions(input_ids=ids, source=len(ids) - 1, targets=targets, bos_offset=0,
                             mid_token_chars=(), dropped_targets=())  # fmt: skip
        sample = SimpleNamespace(
            id=f"pyg_f{i}", language="python", kind="generation", source="hand-written"
        )
        samples.append(Prepared(sample=sample, positions=pos))
    run = RunDir.open(tmp_path / "run", {"test": True}, resume=False, manifest={})
    return Study(cfg=cfg, experiment="heads", handle=handle, samples=samples, run=run)


def test_copy_head_is_ranked_first_by_the_sweep_and_by_the_attribution(tmp_path):
    model = copy_head_model()
    handle = wrap_model(model, tiny_tokenizer(), name="copy-head")
    study = _study(handle, _prompts(), tmp_path)
    cost = {"plain": 0.0, "attribution": 0.0, "knockouts": 0.0, "prompts": 0}
    sweep = run_sweep(study, study.samples, cost)
    assert len(sweep) == len(study.samples) * 2 * N_HEADS
    # The model copies: its greedy token after the marker is one of the function's tokens.
    assert set(sweep["top1_baseline"]) <= set(TARGET_IDS)
    heads = summarize(sweep)
    first = heads.set_index(["layer", "head"])
    assert first.loc[(COPY_LAYER, COPY_HEAD), "rank_measured"] == 1
    assert first.loc[(COPY_LAYER, COPY_HEAD), "rank_attribution"] == 1
    # ... by a margin, and the others are not all zero (the ranking is not a tie).
    others = heads[(heads["layer"] != COPY_LAYER) | (heads["head"] != COPY_HEAD)]
    assert first.loc[(COPY_LAYER, COPY_HEAD), "dlogp_top1_ci_high"] < others["dlogp_top1"].min()
    assert (others["dlogp_top1"].abs() > 1e-4).any()
    # Layer 0 writes nothing: knocking out its heads changes nothing, measured or estimated.
    layer0 = sweep[sweep["layer"] == 0]
    assert layer0["dlogp_top1"].abs().max() < 1e-6 and layer0["attribution"].abs().max() < 1e-9
    assert cost["prompts"] == len(study.samples) and cost["plain"] > 0


# ---------------------------------------------------------------------------------------------
# The split, the selection and the random heads


def _synthetic_sweep(seed: int, n: int = 40) -> pd.DataFrame:
    """Per prompt × layer 1 × 4 heads: head 1 hurts on half 0's prompts, head 2 on half 1's."""
    rows = []
    rng = np.random.default_rng(1)
    for i in range(n):
        sid = f"pyg_fn{i}"
        half = function_half(sid, seed)
        for layer in (0, 1):
            for head in range(4):
                hurt = layer == 1 and head == (1 if half == 0 else 2)
                rows.append({
                    "model": "m", "sample_id": sid, "language": "python", "half": half,
                    "layer": layer, "head": head, "n_heads": 4, "rows": "marker_span",
                    "targets": "identifiers", "dlogp_top1": -1.0 if hurt else -0.01 * head,
                    "kl": 0.5 if hurt else 0.01, "top1_same": True,
                    "attn_mass": float(rng.uniform(0.05, 0.4)), "attn_level": 0.1,
                    "attribution": 0.0, "attribution_linear": 0.0, "logp_top1": -0.1,
                })  # fmt: skip
    return pd.DataFrame(rows)


def test_function_halves_are_disjoint_covering_and_seeded():
    ids = [f"pyg_fn{i}" for i in range(200)]
    for seed in (0, 1):
        halves = {h: {s for s in ids if function_half(s, seed) == h} for h in (0, 1)}
        assert halves[0].isdisjoint(halves[1]) and halves[0] | halves[1] == set(ids)
        assert all(
            function_half(s, seed) == binascii.crc32(f"{seed}:{s[4:]}".encode()) % 2 for s in ids
        )
        assert 50 < len(halves[0]) < 150
    assert any(function_half(s, 0) != function_half(s, 1) for s in ids)
    # A function's prompts and tests share a half (the prefix up to the first "_" is ignored).
    assert all(function_half(f"py_fn{i}", 0) == function_half(f"pyg_fn{i}", 0) for i in range(50))


@pytest.mark.parametrize("seed", [0, 3])
def test_each_half_is_tested_with_heads_chosen_on_the_other(seed):
    sweep = _synthetic_sweep(seed)
    sel = select_heads(sweep, k=2)
    assert set(sel["half"]) == {0, 1}
    assert (sel["chosen_on_half"] == 1 - sel["half"]).all()
    assert (sel["measure"] == "dlogp_top1").all()  # the sweep has no dlogp_gold
    top = {h: list(map(tuple, g.sort_values("rank")[["layer", "head"]].to_numpy()))
           for h, g in sel.groupby("half")}  # fmt: skip
    # Half 0's samples are tested with half 1's worst head (1.2), and the reverse; second: head
    # 3 (-0.03) ties across layers and the lower layer wins.
    assert top[0] == [(1, 2), (0, 3)] and top[1] == [(1, 1), (0, 3)]
    for r in sel.itertuples():  # the scores are the other half's means, recomputed here
        train = sweep[(sweep["half"] == 1 - r.half) & (sweep["layer"] == r.layer)
                      & (sweep["head"] == r.head)]  # fmt: skip
        assert r.mean_score == pytest.approx(train["dlogp_top1"].mean())
        assert r.n_prompts == train["sample_id"].nunique()
    # Selecting on a half leaves the other half's data out entirely: changing half h's own
    # numbers cannot change the heads it is tested with.
    changed = sweep.copy()
    own = changed["half"] == 0
    changed.loc[own, "dlogp_top1"] = -changed.loc[own, "dlogp_top1"]
    sel2 = select_heads(changed, k=2)
    h0 = ["layer", "head"]
    assert (sel2[sel2["half"] == 0][h0].to_numpy() == sel[sel["half"] == 0][h0].to_numpy()).all()


def test_selection_spans_layers_and_becomes_one_edit_per_layer():
    # The strongest heads lie in different layers (as in the embedded model: 6 of the 7
    # strongest in layer 3): the top-K is chosen over every (layer, head), not inside a layer.
    rows = []
    for i in range(30):
        sid = f"pyg_fn{i}"
        for layer in range(3):
            for head in range(4):
                effect = {(2, 1): -2.0, (0, 3): -1.5, (2, 0): -1.0}.get((layer, head), -0.01)
                rows.append({"model": "m", "sample_id": sid, "language": "python",
                             "half": function_half(sid, 0), "layer": layer, "head": head,
                             "dlogp_top1": effect, "kl": -effect, "attn_mass": 0.1})  # fmt: skip
    sweep = pd.DataFrame(rows)
    sel = select_heads(sweep, k=3)
    for _, g in sel.groupby("half"):
        assert list(zip(g["layer"], g["head"], strict=True)) == [(2, 1), (0, 3), (2, 0)]
    # With dlogp_gold present the selection uses it (and says so).
    gold = sweep.assign(dlogp_gold=np.where(sweep["head"] == 2, -3.0, 0.0) - 0.1 * sweep["layer"])
    sel_gold = select_heads(gold, k=2)
    assert (sel_gold["measure"] == "dlogp_gold").all()
    assert list(zip(sel_gold["layer"], sel_gold["head"], strict=True))[:2] == [(2, 2), (1, 2)]
    # The condition: one AttentionEdit per layer of the set, each with that layer's heads.
    ids = tuple(range(10, 20))
    pos = TokenPositions(input_ids=ids, source=9, targets=(1, 2), bos_offset=0,
                         mid_token_chars=(), dropped_targets=())  # fmt: skip
    p = Prepared(sample=SimpleNamespace(id="py_fn0", language="python", kind="test",
                                        source="hand-written"),
                 positions=pos)  # fmt: skip
    sets = conditions.HeadSets(top={p.id: ((0, 3), (2, 0), (2, 1))},
                               random={(p.id, 0): ((1, 0), (1, 2), (2, 3))}, factor=4.0)  # fmt: skip
    arms = head_arms("marker", "identifiers", draws=1)
    units = conditions.plan_units([p], arms, layer_of=1, n_layers=3, heads=sets)
    got = {u.arm.arm: u for u in units}
    ko = got["knockout_topk"].condition
    assert [(e.layers, e.heads) for e in ko.edits] == [((0,), (3,)), ((2,), (0, 1))]
    assert all(isinstance(e.op, conditions.Knockout) for e in ko.edits)
    rnd = got["random_heads"].condition
    assert [(e.layers, e.heads) for e in rnd.edits] == [((1,), (0, 2)), ((2,), (3,))]
    steer = got["steer_topk"].condition
    assert {e.op.factor for e in steer.edits} == {4.0}  # type: ignore[union-attr]
    assert all(u.record_layer == conditions.ALL_LAYERS for u in units)
    assert got["knockout_topk"].condition.name == "knockout_topk@marker/identifiers/all"


def test_random_heads_are_distinct_across_draws_matched_within_25_percent_and_seeded():
    seed = 0
    sweep = _synthetic_sweep(seed)
    sel = select_heads(sweep, k=2)
    prompts = [SimpleNamespace(id=s, language="python", kind="test")
               for s in sorted(set(sweep["sample_id"]))]  # fmt: skip
    masses = sweep_masses(sweep)
    sets, control = head_sets(prompts, masses, sel, seed=seed, draws=4, factor=6.0, model="m")
    assert sets == head_sets(prompts, masses, sel, seed=seed, draws=4, factor=6.0, model="m")[0]
    assert len(control) == len(prompts) * 4
    assert (control["tolerance"] == HEADS_TOLERANCE).all() and HEADS_TOLERANCE == 0.25
    for p in prompts:
        chosen = sets.top[p.id]
        goal = sum(masses[(p.id, lay, h)] for lay, h in chosen)
        drawn = [sets.random[(p.id, d)] for d in range(4)]
        assert len(set(drawn)) == 4  # no draw repeats another's head set
        others = [c for c in masses if c[0] == p.id and c[1:] not in chosen]
        n_within = sum(  # every set of 2 other heads within ±25%, counted by hand
            abs(masses[a] + masses[b] - goal) <= 0.25 * goal
            for i, a in enumerate(others) for b in others[i + 1:]
        )  # fmt: skip
        rows = control[control["sample_id"] == p.id].sort_values("draw")
        for d, (rnd, r) in enumerate(zip(drawn, rows.itertuples(), strict=True)):
            assert r.draw == d and tuple(map(tuple, json.loads(r.control_heads))) == rnd
            assert len(rnd) == 2 and not set(rnd) & set(chosen)
            got = sum(masses[(p.id, lay, h)] for lay, h in rnd)
            assert r.target_mass == pytest.approx(goal) and r.control_mass == pytest.approx(got)
            assert r.mass_ratio == pytest.approx(got / goal)
            assert r.within_tolerance == (abs(got - goal) <= 0.25 * goal)
            assert r.n_matched_sets == n_within
            # Matched whenever enough matched sets exist.
            assert r.within_tolerance or d >= n_within


def test_distinct_draws_by_hand_and_a_pool_too_small():
    pool = [(0, 0), (0, 1), (1, 0), (1, 1)]
    mass = {(0, 0): 0.10, (0, 1): 0.20, (1, 0): 0.30, (1, 1): 0.50}
    rng = np.random.default_rng(0)
    # Sets of 2 within ±25% of 0.45: {0.1+0.3=0.4, 0.2+0.3=0.5}; 0.6, 0.7, 0.3, 0.8 are not.
    found, n = distinct_draws(pool, mass, 2, 0.45, 2, rng)
    assert n == 2 and all(d.within for d in found)
    assert {d.heads for d in found} == {((0, 0), (1, 0)), ((0, 1), (1, 0))}
    # A third draw: no third matched set; the closest other (0.3 or 0.6) is marked outside.
    found3, n3 = distinct_draws(pool, mass, 2, 0.45, 3, np.random.default_rng(0))
    assert n3 == 2 and len({d.heads for d in found3}) == 3
    assert not found3[2].within and abs(found3[2].mass - 0.45) == pytest.approx(0.15)
    assert found3[2].ratio == pytest.approx(found3[2].mass / 0.45)
    with pytest.raises(ValueError, match="fewer than 7 distinct sets"):
        distinct_draws(pool, mass, 2, 0.45, 7, rng)  # C(4, 2) = 6 sets


def test_resolve_k_is_three_up_to_64_heads_and_off_above_in_the_triangle():
    small = SimpleNamespace(n_layers=2, n_heads=4)
    big = SimpleNamespace(n_layers=24, n_heads=16)
    assert resolve_k(None, small, auto=True) == 3
    assert resolve_k(None, big, auto=True) == 0
    assert resolve_k(None, big, auto=False) == 3
    assert resolve_k(2, big, auto=True) == 2
    with pytest.raises(ValueError, match=r"--heads 4.*K <= 3"):
        resolve_k(4, small, auto=True)
    with pytest.raises(ValueError, match="--heads -1"):
        HeadsFlags(heads=-1)
    with pytest.raises(ValueError, match="--heads-factor"):
        HeadsFlags(heads_factor=0.0)


# ---------------------------------------------------------------------------------------------
# Analysis


def test_summary_and_validation_against_direct_computation():
    sweep = _synthetic_sweep(0)
    rng = np.random.default_rng(0)
    sweep["dlogp_top1"] = sweep["dlogp_top1"] + rng.normal(0, 0.01, len(sweep))
    sweep["attribution"] = 0.5 * sweep["dlogp_top1"]
    sweep["attribution_linear"] = sweep["dlogp_top1"] ** 3
    heads = summarize(sweep)
    assert len(heads) == 8
    g = sweep[(sweep["layer"] == 1) & (sweep["head"] == 2)]
    row = heads[(heads["layer"] == 1) & (heads["head"] == 2)].iloc[0]
    assert row["dlogp_top1"] == pytest.approx(g["dlogp_top1"].mean())
    assert row["dlogp_top1_ci_low"] < row["dlogp_top1"] < row["dlogp_top1_ci_high"]
    assert row["kl"] == pytest.approx(g["kl"].mean())
    v = validate_attribution(sweep).set_index("estimator")
    # A monotone estimate ranks exactly like the measurement: ρ = 1, every top head shared.
    assert v.loc["attribution", "rho_heads"] == pytest.approx(1.0)
    assert v.loc["attribution", "top_shared"] == v.loc["attribution", "top_n"] == 8
    assert top_overlap([3, 1, 2, 0], [0, 1, 2, 3], n=2) == (1, 2)
    assert top_overlap([-5, -4, 0, 1], [1, 0, -4, -5], n=2) == (0, 2)


def _held_tables(n: int, drop: int) -> dict[str, pd.DataFrame]:
    """Generations where the top-K knockout loses ``drop`` of ``n`` preserved prompts and the
    random heads lose none."""
    scope = "marker_span/identifiers/all"
    rows = []
    for i in range(n):
        for cond, preserved in (
            ("baseline", True), (f"knockout_topk@{scope}", i >= drop),
            (f"random_heads@{scope}#0", True), (f"random_heads@{scope}#1", True),
            (f"knockout@{scope}", i >= drop), (f"steer_topk@{scope}", True),
        ):  # fmt: skip
            rows.append({"model": "m", "language": "python", "sample_id": f"pyg_f{i}",
                         "condition": cond, "preserved": preserved, "tokens": [1, 2],
                         "factor": 6.0 if cond.startswith("steer") else float("nan")})  # fmt: skip
    gens = pd.DataFrame(rows)
    sel = pd.DataFrame([{"model": "m", "language": "python", "half": h, "chosen_on_half": 1 - h,
                         "layer": 1, "rank": 1, "head": 2 + h} for h in (0, 1)])  # fmt: skip
    return {"heads_generations": gens, "heads_selection": sel}


def test_held_out_verdicts_use_the_study_rule():
    [h] = held_out(_held_tables(60, 30), alpha=0.05, margin=0.10)
    assert h.knockout_effect == "predicted"  # 30 of 60 lost vs none: a significant drop
    assert [c.ref for c in h.vs_random] == [
        f"random_heads@{h.scope}#0",
        f"random_heads@{h.scope}#1",
    ]
    assert h.vs_random[0].diff.effect == pytest.approx(-0.5)
    assert h.vs_layer is not None and h.vs_layer.effect == "none"  # identical to the layer's
    assert h.steer is not None and h.steer.effect == "none"
    assert h.selection == {0: ((1, 2),), 1: ((1, 3),)}
    [h0] = held_out(_held_tables(60, 0), alpha=0.05, margin=0.10)
    assert h0.knockout_effect == "none"  # no change, 90% CI inside ±10 pp
    [small] = held_out(_held_tables(8, 2), alpha=0.05, margin=0.10)
    assert small.knockout_effect == "inconclusive"


def test_share_of_the_whole_model_effect_against_a_hand_computation():
    rng = np.random.default_rng(3)
    n = 40
    whole = rng.normal(-1.0, 0.3, n)
    topk = 0.4 * whole + rng.normal(0, 0.05, n)
    scope = "marker_span/identifiers/all"
    rows = []
    for i in range(n):
        for cond, v in ((f"knockout_topk@{scope}", topk[i]), (f"knockout@{scope}", whole[i]),
                        (f"random_heads@{scope}#0", 0.0), ("baseline", 0.0)):  # fmt: skip
            rows.append({"model": "m", "language": "python", "sample_id": f"py_f{i}",
                         "kind": "test", "condition": cond, "dlogp_top1": v, "kl": abs(v),
                         "top1_same": False, "dlogp_gold": 2 * v,
                         "attn_baseline": 0.1, "attn_achieved": 0.1, "factor": np.nan})  # fmt: skip
    recs = pd.DataFrame(rows)
    sh = whole_model_share(recs, f"knockout_topk@{scope}", f"knockout@{scope}", "dlogp_top1")
    assert sh is not None and sh.n == n
    assert sh.topk_mean == pytest.approx(topk.mean())
    assert sh.whole_mean == pytest.approx(whole.mean())
    assert sh.share == pytest.approx(topk.mean() / whole.mean())  # the hand computation
    # The CI: a percentile bootstrap of the same ratio over resampled samples, by hand.
    idx = np.random.default_rng(7).integers(0, n, (4000, n))
    hand = topk[idx].mean(axis=1) / whole[idx].mean(axis=1)
    lo, hi = np.percentile(hand, [2.5, 97.5])
    assert sh.ci_low < sh.share < sh.ci_high
    assert sh.ci_low == pytest.approx(lo, abs=0.02) and sh.ci_high == pytest.approx(hi, abs=0.02)
    # A constant ratio gives a CI of that ratio.
    is_top = recs["condition"] == f"knockout_topk@{scope}"
    by_id = dict(zip([f"py_f{i}" for i in range(n)], whole, strict=True))
    const = recs.assign(dlogp_top1=np.where(is_top, 0.25 * recs["sample_id"].map(by_id),
                                            recs["dlogp_top1"]))  # fmt: skip
    c = whole_model_share(const, f"knockout_topk@{scope}", f"knockout@{scope}", "dlogp_top1")
    assert c is not None and [c.share, c.ci_low, c.ci_high] == pytest.approx([0.25] * 3)
    # held_out reports it per language, on dlogp_gold when the records have it.
    tables = {**_held_tables(n, 0), "heads_records": recs}
    [h] = held_out(tables, alpha=0.05, margin=0.10)
    assert h.measure == "dlogp_gold" and h.share is not None
    assert h.share.share == pytest.approx((2 * topk).mean() / (2 * whole).mean())
    assert h.share.whole == f"knockout@{scope}"
    from analysis.heads import stats_rows

    [row] = [r for r in stats_rows(pd.DataFrame(), [h]) if r["test"].startswith("share")]
    assert row["effect"] == pytest.approx(h.share.share) and row["n"] == n
    # Without dlogp_gold the share falls back to dlogp_top1.
    [h1] = held_out({**tables, "heads_records": recs.drop(columns="dlogp_gold")}, alpha=0.05,
                    margin=0.10)  # fmt: skip
    assert h1.measure == "dlogp_top1" and h1.share is not None
    assert h1.share.share == pytest.approx(sh.share)


def test_control_summary_says_whether_draws_repeat_and_pools_were_short():
    tables = _held_tables(10, 0)
    ctrl = pd.DataFrame([
        {"model": "m", "language": "python", "sample_id": f"pyg_f{i}", "draw": d,
         "control_heads": json.dumps([[0, d]]), "within_tolerance": d == 0,
         "mass_ratio": 1.0 + 0.5 * d, "tolerance": 0.25, "n_matched_sets": 1}
        for i in range(10) for d in (0, 1)
    ])  # fmt: skip
    [h] = held_out({**tables, "heads_control": ctrl}, alpha=0.05, margin=0.10)
    assert h.control == {"within": 0.5, "median_ratio": 1.25, "n": 20.0, "tolerance": 0.25,
                         "distinct": 1.0, "short": 10.0}  # fmt: skip
    ctrl.loc[ctrl["draw"] == 1, "control_heads"] = json.dumps([[0, 0]])
    [h2] = held_out({**tables, "heads_control": ctrl}, alpha=0.05, margin=0.10)
    assert h2.control["distinct"] == 0.0


def test_analysis_heads_loads_no_model_stack():
    code = (
        "import sys, analysis.heads\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'nnsight')]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# The command


def test_heads_command_end_to_end(tmp_path):
    model_dir = write_model_dir(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.json")
    out = tmp_path / "run"
    argv = ["heads", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
            "--no-progress", "--no-execute", "--max-new-tokens", "3", "--heads", "1",
            "--heads-draws", "2", "--device", "cpu"]  # fmt: skip
    assert cli_main(argv) == 0
    handle = tiny_handle("qwen2")
    heads = pd.read_parquet(out / "heads.parquet")
    sweep = pd.read_parquet(out / "head_sweep.parquet")
    n_prompts = sweep["sample_id"].nunique()
    assert len(sweep) == n_prompts * handle.n_layers * handle.n_heads
    assert len(heads) == len(set(sweep["language"])) * handle.n_layers * handle.n_heads
    for col in ("attn_level", "attribution", "kl", "kl_ci_low", "kl_ci_high", "dlogp_top1",
                "dlogp_top1_ci_low", "dlogp_top1_ci_high"):  # fmt: skip
        assert col in heads
    recs = pd.read_parquet(out / "heads_records.parquet")
    sel = pd.read_parquet(out / "heads_selection.parquet")
    top = recs[recs["arm"] == "knockout_topk"]
    assert len(top) and top["sample_id"].is_unique
    assert set(top["kind"]) == {"test"} and set(recs["kind"]) == {"test"}
    for r in top.itertuples():  # tested with the heads chosen on the other half of the functions
        half = function_half(r.sample_id, 0)
        edits = json.loads(r.edit)
        chosen = sel[(sel["language"] == r.language) & (sel["half"] == half)]
        assert (chosen["chosen_on_half"] == 1 - half).all()
        pairs = {(lay, h) for e in edits for lay in e["layers"] for h in e["heads"]}
        assert pairs == set(zip(chosen["layer"], chosen["head"], strict=True))
        assert all(len(e["layers"]) == 1 for e in edits)  # one edit per layer
    assert "knockout@marker_span/identifiers/all" in set(recs["condition"])
    control = pd.read_parquet(out / "heads_control.parquet")
    assert (control.groupby("sample_id")["control_heads"].nunique() == 2).all()
    assert {"mass_ratio", "within_tolerance", "tolerance"} <= set(control.columns)
    gens = pd.read_parquet(out / "heads_generations.parquet")
    assert {"baseline", "knockout_topk", "random_heads", "steer_topk", "knockout"} <= set(
        gens["condition"].str.split("@").str[0]
    )
    report = (out / "report.md").read_text()
    assert "## Heads: which heads carry it" in report and "figures/heads_" in report
    assert list((out / "figures").glob("heads_*.png"))
    stats = pd.read_csv(out / "stats.csv")
    assert (stats["family"] == "heads").any()
    cost = json.loads((out / "manifest.json").read_text())["heads_cost"]
    assert cost["prompts_timed"] == n_prompts and cost["seconds"]["plain"] > 0


def test_heads_command_rejects_k_without_other_heads_before_writing(tmp_path, capsys):
    model_dir = write_model_dir(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.json")
    out = tmp_path / "run"
    argv = ["heads", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
            "--heads", "4", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "--heads 4" in err and "K <= 3" in err
    assert not out.exists()


def test_benchmark_section_is_spliced_and_kept():
    from benchmarks.heads import BEGIN, END, kept_section, splice

    section = f"{BEGIN}\n## Heads step\nnew\n{END}\n"
    old = f"# Results\n\nP1\n\n{BEGIN}\n## Heads step\nold\n{END}\n"
    assert splice(old, section) == f"# Results\n\nP1\n\n{BEGIN}\n## Heads step\nnew\n{END}\n"
    assert splice("# Results\n", section) == "# Results\n\n" + section
    assert kept_section(splice(old, section)) == section
    assert kept_section("# Results\n") == ""


@pytest.mark.slow
def test_triangle_runs_the_heads_step_and_reuses_its_own_references(tmp_path):
    model_dir = write_model_dir(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.json")
    out = tmp_path / "run"
    argv = ["triangle", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
            "--no-progress", "--no-execute", "--max-new-tokens", "3", "--heads", "1",
            "--heads-draws", "1", "--draws", "1", "--device", "cpu"]  # fmt: skip
    assert cli_main(argv) == 0
    recs = pd.read_parquet(out / "records.parquet")
    heads_recs = pd.read_parquet(out / "heads_records.parquet")
    heads_gens = pd.read_parquet(out / "heads_generations.parquet")
    # The references the study already runs (baseline, the all-layer knockout) are not run
    # twice; the heads tables hold the head-level arms and Scale of every head at all layers.
    for table in (heads_recs, heads_gens):
        assert set(table["arm"]) == {"knockout_topk", "random_heads", "steer_topk", "scale_6"}
    assert not set(recs["arm"]) & {"knockout_topk", "random_heads", "steer_topk"}
    assert "knockout@marker_span/identifiers/all" in set(recs["condition"])
    report = (out / "report.md").read_text()
    assert "## Heads: which heads carry it" in report and "knockout@marker_span" in report
    assert (out / "heads.parquet").exists()


@pytest.mark.parametrize(("lift", "ok"), [(0.05, True), (-0.05, False)])
def test_steering_decides_only_when_its_manipulation_check_passes(lift, ok):
    tables = _held_tables(30, 0)
    gens = tables["heads_generations"]
    rng = np.random.default_rng(0)
    recs = gens[["model", "language", "sample_id", "condition", "factor"]].copy()
    recs["kind"] = "generation"
    recs["attn_baseline"] = rng.uniform(0.1, 0.2, len(recs))
    steer = recs["condition"].str.startswith("steer_topk")
    recs["attn_achieved"] = recs["attn_baseline"] + np.where(steer, lift, 0.0)
    recs["kl"], recs["dlogp_top1"] = rng.uniform(0, 0.1, len(recs)), rng.normal(0, 0.1, len(recs))
    [h] = held_out({**tables, "heads_records": recs}, alpha=0.05, margin=0.10)
    assert h.manipulation_ok is ok
    assert h.manipulation is not None and np.sign(h.manipulation.effect) == np.sign(lift)
    assert h.steer is not None  # reported either way; the words say whether it decides


def test_an_edit_that_does_not_reach_the_output_never_reads_no_effect():
    # Every generation token-identical to baseline and no top-1 change at the prediction: the
    # top-K knockout and the steering do not reach the output (the study's gate), whatever
    # the preservation comparison says.
    tables = _held_tables(60, 0)
    gens = tables["heads_generations"]
    recs = gens[["model", "language", "sample_id", "condition", "factor"]].copy()
    recs["kind"] = "generation"
    recs["attn_baseline"] = recs["attn_achieved"] = 0.1
    recs["kl"], recs["top1_same"], recs["dlogp_top1"] = 1e-7, True, 0.0
    noise = pd.DataFrame({"model": "m", "sample_id": ["a", "b"], "kl": [0.0, 1e-12]})
    [h] = held_out({**tables, "heads_records": recs, "noise_floor": noise}, alpha=0.05,
                   margin=0.10)  # fmt: skip
    assert h.knockout_reach is not None and not h.knockout_reach.reached
    assert h.knockout_effect == "unreached" and h.vs_random[0].effect == "none"
    assert h.steer is not None and h.steer.effect == "unreached"
    # With the top-1 token moving on some prompts the same edit reaches the output.
    recs["top1_same"] = recs["sample_id"] != "pyg_f0"
    [h2] = held_out({**tables, "heads_records": recs, "noise_floor": noise}, alpha=0.05,
                    margin=0.10)  # fmt: skip
    assert h2.knockout_effect == "none" and h2.knockout_reach.reached


def test_the_sweep_stops_at_the_readout_row_and_reads_the_same(tmp_path, monkeypatch):
    # prompts with tokens after the marker: the sweep cuts them (heads.sweep_length); every
    # measure equals that of the whole sequence, which attention's causality guarantees
    import experiments.heads as heads_mod

    model = copy_head_model()
    handle = wrap_model(model, tiny_tokenizer(), name="copy-head")
    tail = (61, 62, 63, 64, 65)

    def study(path: Path) -> Study:
        cfg = HeadsFlags(model=handle.name, progress=False, seed=0, batch_size=8)
        samples = []
        for i, (ids, targets) in enumerate(_prompts()):
            pos = TokenPositions(input_ids=(*ids, *tail), source=len(ids) - 1, targets=targets,
                                 bos_offset=0, mid_token_chars=(), dropped_targets=())  # fmt: skip
            sample = SimpleNamespace(id=f"pyg_f{i}", language="python", kind="generation",
                                     source="hand-written")  # fmt: skip
            samples.append(Prepared(sample=sample, positions=pos))
        run = RunDir.open(path, {"test": True}, resume=False, manifest={})
        return Study(cfg=cfg, experiment="heads", handle=handle, samples=samples, run=run)

    s = study(tmp_path / "cut")
    assert {heads_mod.sweep_length(p) for p in s.samples} == {len(_prompts()[0][0])}
    cost = {"plain": 0.0, "attribution": 0.0, "knockouts": 0.0, "prompts": 0}
    cut = run_sweep(s, s.samples, dict(cost))
    monkeypatch.setattr(heads_mod, "sweep_length", lambda p: len(p.input_ids))
    s = study(tmp_path / "whole")
    whole = run_sweep(s, s.samples, dict(cost))
    keys = ["sample_id", "layer", "head"]
    cut, whole = (
        cut.sort_values(keys).reset_index(drop=True),
        whole.sort_values(keys).reset_index(drop=True),
    )
    assert (cut[keys] == whole[keys]).all().all() and len(cut) == len(s.samples) * 2 * N_HEADS
    for col in ("kl", "dlogp_top1", "attribution", "attn_level", "attn_mass"):
        np.testing.assert_allclose(cut[col], whole[col], rtol=1e-5, atol=1e-7, err_msg=col)
    assert (cut["top1_same"] == whole["top1_same"]).all()
