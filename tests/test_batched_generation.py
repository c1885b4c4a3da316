"""Many (prompt, condition) rows in one KV-cached loop: equal to one row at a time and to
full recomputation with the accumulated edits, token for token, on both edit routes.

The requests mix prompts of different lengths (left padding) with conditions of every kind:
no edit, a knockout at one layer and at all layers, Scale on a subset of heads, SetValue, two
edits on the same row, and a generated marker that becomes a new source.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from archs import tiny_handle, tiny_model, tiny_tokenizer

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, Condition, Knockout, Scale, SetValue
from plip_nn.generate import GenerationRequest, generate, generate_recompute
from plip_nn.models import wrap_model

N = 6
PROMPTS = [tuple(range(5, 17)), tuple(range(40, 49)), tuple(range(100, 114))]


def _conditions(n: int) -> list[Condition]:
    src = (n - 2,)
    tgt = (1, 2, 3)

    def one(name, layers, op, heads=None, targets=tgt):
        edit = AttentionEdit(layers=layers, sources=src, targets=targets, op=op, heads=heads)
        return Condition(name=name, edits=(edit,))

    both = (
        AttentionEdit(layers=(0, 1), sources=src, targets=(1,), op=Knockout()),
        AttentionEdit(layers=(1,), sources=src, targets=(2, 3), op=Scale(factor=3.0)),
    )
    return [
        Condition(name="baseline"),
        one("knockout", (1,), Knockout()),
        one("knockout_all", (0, 1), Knockout()),
        one("scale_heads", (0,), Scale(factor=4.0), heads=(0, 2)),
        one("set_value", (1,), SetValue(value=0.1)),
        one("control", (1,), Knockout(), targets=(4, 6)),
        Condition(name="two_edits", edits=both),
    ]


def _requests(markers: tuple = ()) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            key=f"{i}/{c.name}",
            sample_id=f"s{i}",
            input_ids=p,
            condition=c,
            marker_token_seqs=markers,
        )
        for i, p in enumerate(PROMPTS)
        for c in _conditions(len(p))
    ]


def _auto_handle(arch: str):
    """SDPA for knockout/Scale (mask route), eager for SetValue, on a copy of the tiny model."""
    return wrap_model(
        copy.deepcopy(tiny_model(arch)), tiny_tokenizer(), name=f"{arch}-auto", attn="auto"
    )


def _marker(handle) -> tuple:
    """A token the unedited model generates for prompt 0: generated markers then happen."""
    [base] = generate(
        handle,
        [
            GenerationRequest(
                key="b", sample_id="b", input_ids=PROMPTS[0], condition=Condition(name="b")
            )
        ],
        max_new_tokens=N,
    )
    return ((base.new_token_ids[2],),)


# Every architecture in the default run (tiny configs, N new tokens: under a second each).
MATRIX = [
    pytest.param("qwen2", "eager", id="qwen2-eager"),
    pytest.param("qwen2", "auto", id="qwen2-auto"),
    pytest.param("gpt2", "eager", id="gpt2-eager"),
    pytest.param("gpt2", "auto", id="gpt2-auto"),
]


@pytest.mark.parametrize(("arch", "attn"), MATRIX)
@pytest.mark.parametrize("policy", ["markers", "continuation"])
def test_one_loop_equals_one_row_at_a_time_and_recompute(arch, policy, attn):
    handle = tiny_handle(arch) if attn == "eager" else _auto_handle(arch)
    reqs = _requests(_marker(handle) if policy == "markers" else ())
    kw = {"max_new_tokens": N, "source_policy": policy}
    batched = generate(handle, reqs, batch_size=len(reqs), **kw)
    single = generate(handle, reqs, batch_size=1, **kw)
    for req, a, b in zip(reqs, batched, single, strict=True):
        assert a.key == req.key
        assert a.new_token_ids == b.new_token_ids, req.key
        assert a.new_token_ids == generate_recompute(handle, req, **kw), req.key
        assert a.n_edited_steps == b.n_edited_steps
        for x, y in zip(a.step_levels, b.step_levels, strict=True):
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-5)
        if req.condition.edits:
            assert a.n_edited_steps >= 1
            edits = {int(s[kernels.GEN_EDIT]) for s in a.stats}
            assert edits == set(range(len(req.condition.edits)))
    # The edits act: several conditions of a prompt generate other tokens than its baseline.
    by_prompt: dict[str, dict[str, tuple]] = {}
    for req, res in zip(reqs, batched, strict=True):
        by_prompt.setdefault(req.sample_id, {})[req.condition.name] = res.new_token_ids
    changed = sum(t != c["baseline"] for c in by_prompt.values() for t in c.values())
    assert changed >= len(PROMPTS)
    if policy == "markers":  # a generated marker became a source in some row
        assert any(r.n_edited_steps >= 2 for r in batched)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_routes_generate_the_same_tokens(arch):
    """Knockout and Scale on the mask route (SDPA) = the softmax route (eager), in generation."""
    reqs = [
        r for r in _requests() if not any(isinstance(e.op, SetValue) for e in r.condition.edits)
    ]
    auto = _auto_handle(arch)
    kw = {"max_new_tokens": N, "source_policy": "continuation", "batch_size": len(reqs)}
    mask = generate(auto, reqs, **kw)
    soft = generate(tiny_handle(arch), reqs, route="softmax", **kw)
    for a, b in zip(mask, soft, strict=True):
        assert a.new_token_ids == b.new_token_ids, a.key
        for x, y in zip(a.step_levels, b.step_levels, strict=True):
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=3e-5)


def test_auto_runs_knockout_on_sdpa_and_set_value_on_eager(monkeypatch):
    handle = _auto_handle("qwen2")
    seen: list[tuple[str, str | None]] = []
    real = kernels.edit_site

    def spy(model, site, edits, verify, reads, route=kernels.ROUTE_SOFTMAX):
        ops = {g[kernels.G_OP] for g in edits}
        seen.append((route, handle.attn_implementation, frozenset(ops)))
        return real(model, site, edits, verify, reads, route)

    monkeypatch.setattr(kernels, "edit_site", spy)
    reqs = _requests()[:7]
    generate(handle, reqs, max_new_tokens=2, batch_size=7)
    assert handle.attn_implementation == "sdpa"  # switched back after the eager batch
    for route, impl, ops in seen:
        if kernels.SET_VALUE in ops:
            assert (route, impl) == (kernels.ROUTE_SOFTMAX, "eager")
        else:
            assert (route, impl) == (kernels.ROUTE_MASK, "sdpa")
    assert {r for r, _, _ in seen} == {kernels.ROUTE_SOFTMAX, kernels.ROUTE_MASK}


def test_rows_of_a_loop_are_sorted_by_length_but_returned_in_order():
    handle = tiny_handle("qwen2")
    reqs = _requests()
    got = generate(handle, reqs, max_new_tokens=2, batch_size=5)
    assert [r.key for r in got] == [r.key for r in reqs]
    with pytest.raises(Exception, match="batch_size=0"):
        generate(handle, reqs, batch_size=0)


def test_verification_still_catches_a_wrong_row_in_a_mixed_loop(monkeypatch):
    """A mutation that edits the wrong query row of one group, in a loop of 28 rows."""
    from plip_nn.edits import EditVerificationError

    handle = tiny_handle("qwen2")
    reqs = _requests()
    real = kernels.apply_knockouts

    def shifted(scores, groups):
        bent = [list(g) for g in groups]
        bent[-1][kernels.G_SOURCES] = [s - 1 for s in bent[-1][kernels.G_SOURCES]]
        return real(scores, bent)

    monkeypatch.setattr(kernels, "apply_knockouts", shifted)
    with pytest.raises(EditVerificationError, match="deviates"):
        generate(handle, reqs, max_new_tokens=2, batch_size=len(reqs), source_policy="continuation")


def test_stats_come_back_as_one_tensor_per_edited_layer_and_step():
    handle = tiny_handle("qwen2")
    reqs = _requests()[:7]
    [res] = [r for r in generate(handle, reqs, max_new_tokens=3, batch_size=7,
                                 source_policy="continuation") if r.key.endswith("two_edits")]  # fmt: skip
    rows = torch.tensor(res.stats)
    assert rows.shape[1] == kernels.GEN_STATS + kernels.N_STATS
    # two edits: knockout at layers 0 and 1, Scale at layer 1 -> 3 rows per step
    assert rows.shape[0] == 3 * 3
    assert set(rows[:, kernels.GEN_STEP].tolist()) == {0.0, 1.0, 2.0}
