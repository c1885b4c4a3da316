"""The edit engine inside unmodified HF models, against an independent hand-written attention."""

import math

import pytest
import torch
from archs import ARCHS, MODEL_TYPES, tiny_handle, tiny_model
from reference_attention import reference_attention

from plip_nn.edits import AttentionEdit, Condition, Knockout, Probe, Scale, SetValue
from plip_nn.models import VERIFIED_ARCHITECTURES
from plip_nn.trace import Item, run

IDS = tuple(range(3, 15))  # 12 tokens
LAST = len(IDS) - 1
TARGETS = (1, 2, 4)


def _item(cond, ids=IDS, key=None, probe=None):
    return Item(key=key or cond.name, sample_id="s", input_ids=ids, condition=cond, probe=probe)


def _ref_logprobs(model, **kw):
    with torch.inference_mode(), reference_attention(model, **kw):
        logits = model(input_ids=torch.tensor([IDS])).logits
    return torch.log_softmax(logits[0, -1].float(), -1)


def test_verified_architectures_are_the_tested_ones():
    # The list `plip-nn models` prints is exactly what the reference tests below cover, under
    # the names users know, each covering the HF model_type of the config tested under it.
    assert sorted(VERIFIED_ARCHITECTURES) == sorted(ARCHS)
    for arch in ARCHS:
        assert MODEL_TYPES[arch] in VERIFIED_ARCHITECTURES[arch], arch


@pytest.mark.parametrize("arch", ARCHS)
def test_knockout_equals_reference_attention(arch):
    handle = tiny_handle(arch)
    sources = (7, LAST)
    cond = Condition(
        name="ko",
        edits=(AttentionEdit(layers=(0, 1), sources=sources, targets=TARGETS, op=Knockout()),),
    )
    [res] = run(handle, [_item(cond)], keep_logprobs=True)
    knock = {layer: [(0, s, t) for s in sources for t in TARGETS] for layer in (0, 1)}
    ref = _ref_logprobs(tiny_model(arch), knock=knock)
    plain = _ref_logprobs(tiny_model(arch))
    assert not torch.allclose(ref, plain, atol=1e-3), "knockout must change the output"
    torch.testing.assert_close(res.logprobs, ref, atol=2e-5, rtol=0)
    assert res.kl > 0
    for reading in res.readings:
        assert reading.level_after == 0.0 and reading.mass_after == 0.0
        assert reading.max_error < 1e-6 and reading.error_ratio <= 1.0
        assert reading.level_before > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_scale_equals_log_bias_reference(arch):
    handle = tiny_handle(arch)
    f = 3.0
    cond = Condition(
        name="sc",
        edits=(AttentionEdit(layers=(0,), sources=(LAST,), targets=TARGETS, op=Scale(factor=f)),),
    )
    [res] = run(handle, [_item(cond)], keep_logprobs=True)
    bias = {0: [(0, LAST, t, math.log(f)) for t in TARGETS]}
    ref = _ref_logprobs(tiny_model(arch), bias=bias)
    torch.testing.assert_close(res.logprobs, ref, atol=2e-5, rtol=0)


@pytest.mark.parametrize("f", [0.5, 2.0, 6.0])
def test_scale_mass_formula_in_model(f):
    handle = tiny_handle("qwen2")
    # One head: the head-mean mass is then (other heads' mass + edited head's mass) / H, and the
    # edited head follows f m / (1 - m + f m) exactly.
    cond = Condition(
        name="sc",
        edits=(
            AttentionEdit(
                layers=(1,), sources=(LAST,), targets=TARGETS, op=Scale(factor=f), heads=(2,)
            ),
        ),
    )
    probe = Probe(layers=(1,), sources=(LAST,), targets=TARGETS)
    [res] = run(handle, [_item(cond, probe=probe)])
    [reading] = res.readings
    assert reading.max_error < 1e-6
    # Read the edited head's mass directly: baseline vs after.
    model = handle.nn
    site = handle.softmax
    with torch.inference_mode(), model.trace({"input_ids": torch.tensor([IDS])}):
        p = site(1).output[0, 2, LAST].save()
    m = p[list(TARGETS)].sum().item()
    expected_head = f * m / (1 - m + f * m)
    others = reading.mass_before * handle.n_heads - m
    assert reading.mass_after == pytest.approx((others + expected_head) / handle.n_heads, abs=1e-6)


@pytest.mark.parametrize("arch", ["qwen2", "gpt2", "gemma2"])
def test_identity_edits_equal_plain_forward(arch):
    handle = tiny_handle(arch)
    model = tiny_model(arch)
    with torch.inference_mode():
        plain = torch.log_softmax(model(input_ids=torch.tensor([IDS])).logits[0, -1].float(), -1)
    conds = [
        Condition(name="baseline"),
        Condition(
            name="scale_1",
            edits=(
                AttentionEdit(
                    layers=(0, 1), sources=(LAST,), targets=TARGETS, op=Scale(factor=1.0)
                ),
            ),
        ),
    ]
    res = run(handle, [_item(c) for c in conds], keep_logprobs=True)
    for r in res:
        assert (r.logprobs - plain).abs().max().item() <= 1e-6
        assert r.kl == pytest.approx(0.0, abs=1e-9)
        assert r.top1_same


@pytest.mark.parametrize("v", [0.0, 0.05, 0.3])
def test_set_value_reads_exactly_v(v):
    handle = tiny_handle("llama")
    cond = Condition(
        name="sv",
        edits=(
            AttentionEdit(layers=(0, 1), sources=(6, LAST), targets=TARGETS, op=SetValue(value=v)),
        ),
    )
    [res] = run(handle, [_item(cond)])
    assert len(res.readings) == 2
    for reading in res.readings:
        assert reading.level_after == pytest.approx(v, abs=1e-6)
        assert reading.mass_after == pytest.approx(v * len(TARGETS), abs=1e-6)
        assert reading.max_error <= 1e-6  # includes masked keys staying 0


def test_batch_equals_one_at_a_time_and_session_modes():
    handle = tiny_handle("qwen2")
    seqs = [IDS, tuple(range(40, 47)), tuple(range(60, 69))]
    items = []
    for i, ids in enumerate(seqs):
        last = len(ids) - 1
        for cond in (
            Condition(name="baseline"),
            Condition(
                name="ko",
                edits=(AttentionEdit(layers=(0,), sources=(last,), targets=(0, 2), op=Knockout()),),
            ),
            Condition(
                name="sc",
                edits=(
                    AttentionEdit(layers=(1,), sources=(last,), targets=(1,), op=Scale(factor=4.0)),
                ),
            ),
            Condition(
                name="sv",
                edits=(
                    AttentionEdit(
                        layers=(0, 1), sources=(last,), targets=(1, 3), op=SetValue(value=0.2)
                    ),
                ),
            ),
        ):
            items.append(
                _item(
                    cond,
                    ids=ids,
                    key=f"{i}/{cond.name}",
                    probe=Probe(layers=(0, 1), sources=(last,), targets=(0, 1)),
                )
            )
    batched = run(handle, items, batch_size=8, keep_logprobs=True)
    single = [run(handle, [it], batch_size=1, keep_logprobs=True)[0] for it in items]
    local = run(handle, items, batch_size=2, remote="local", keep_logprobs=True)
    for a, b, c in zip(batched, single, local, strict=True):
        assert a.key == b.key == c.key
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=2e-5, rtol=0)
        torch.testing.assert_close(c.logprobs, b.logprobs, atol=2e-5, rtol=0)
        for x in (a, c):
            assert x.kl == pytest.approx(b.kl, abs=1e-5)
            assert x.top1_same == b.top1_same
            assert x.nll_condition == pytest.approx(b.nll_condition, abs=1e-3)
            assert x.n_tokens == b.n_tokens
            for ra, rb in zip(x.readings, b.readings, strict=True):
                assert ra.level_after == pytest.approx(rb.level_after, abs=1e-5)
                assert ra.level_before == pytest.approx(rb.level_before, abs=1e-5)
            for layer, (lv, _ms) in b.probe_condition.items():
                assert x.probe_condition[layer][0] == pytest.approx(lv, abs=1e-5)
    assert any(r.kl > 1e-4 for r in single)


def test_identity_edit_in_a_mixed_batch_has_exactly_zero_effect():
    # Edited rows are compared with an unedited row of the same forward pass, so padding and
    # batch composition cannot create a spurious KL or perplexity change.
    handle = tiny_handle("qwen2")
    prompts = [IDS, IDS[:9], tuple(reversed(IDS))]
    items = []
    for i, ids in enumerate(prompts):
        n = len(ids)
        for f in (1.0, 2.0):
            edit = AttentionEdit(layers=(0,), sources=(n - 1,), targets=(1, 2), op=Scale(factor=f))
            items.append(_item(Condition(name=f"s{f}", edits=(edit,)), ids=ids, key=f"{i}/{f}"))
    res = {r.key: r for r in run(handle, items, batch_size=4)}
    for i in range(len(prompts)):
        ident = res[f"{i}/1.0"]
        assert ident.kl == 0.0 and ident.top1_same
        assert ident.nll_condition == ident.nll_baseline
        assert res[f"{i}/2.0"].kl > 0


def test_prompts_per_chunk_is_separate_from_batch_size():
    """``batch_size`` is rows per pass; how many prompts a chunk (session) holds is its own knob."""
    from plip_nn.edits import EditSpecError

    handle = tiny_handle("qwen2")  # the cached handle (a second wrap of the model fails)
    ko = Condition(
        name="ko",
        edits=(AttentionEdit(layers=(0,), sources=(LAST,), targets=TARGETS, op=Knockout()),),
    )
    items = [_item(ko, ids=tuple(range(3 + i, 15 + i)), key=f"p{i}") for i in range(4)]

    def chunk_sizes(**kw):
        done: list[int] = []
        results = run(handle, items, progress=done.append, **kw)
        return done, [r.kl for r in results]

    default, kl = chunk_sizes(batch_size=8)
    assert default == [4]  # default: batch_size prompts per chunk
    one, kl_one = chunk_sizes(batch_size=8, prompts_per_chunk=1)
    assert one == [1, 1, 1, 1]
    wide, kl_wide = chunk_sizes(batch_size=1, prompts_per_chunk=3)
    assert wide == [3, 1]
    assert all(k > 0 for k in kl)
    # equal-length prompts: the chunking changes no number
    assert kl_one == pytest.approx(kl, abs=1e-6) and kl_wide == pytest.approx(kl, abs=1e-6)
    with pytest.raises(EditSpecError, match="prompts_per_chunk=0"):
        run(handle, items, prompts_per_chunk=0)
