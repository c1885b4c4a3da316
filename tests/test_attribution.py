"""Head attribution (one forward + one backward) and batched per-head knockouts, against
independent references: a hand-written eager attention that moves one head's rows along the
exact knockout direction (finite differences), and one-at-a-time runs."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from archs import tiny_handle, tiny_model
from reference_attention import masked_scores, swapped_attention

from plip_nn import kernels
from plip_nn.attribution import attribute_heads
from plip_nn.edits import (
    AttentionEdit,
    CausallyMaskedEdgeError,
    Condition,
    EditSpecError,
    Knockout,
    Probe,
)
from plip_nn.trace import Item, run

IDS = tuple(range(3, 15))  # 12 tokens
SOURCES = (9, 11)
TARGETS = (1, 2, 4)
EPS = 1e-2  # the HF model casts to float32 inside (norms, RoPE): smaller steps add noise


def _probe_item(ids=IDS, key="a", sources=SOURCES, targets=TARGETS, layers=(0, 1), at=None):
    return Item(key=key, sample_id=key, input_ids=ids, condition=Condition(name="baseline"),
                probe=Probe(layers=layers, sources=sources, targets=targets), predict_at=at)  # fmt: skip


def _mixing_attention(mix):
    """Eager attention written out by hand; ``mix[layer] = (head, sources, targets, eps)`` moves
    that head's rows from p to p + eps * (p_ko - p), p_ko the row with the targets removed."""

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                  softcap=None, **_):  # fmt: skip
        scores, v = masked_scores(query, key, value, attention_mask, scaling, softcap)
        probs = torch.softmax(scores, dim=-1)
        if module.layer_idx in mix:
            head, sources, targets, eps = mix[module.layer_idx]
            probs = probs.clone()
            for s in sources:
                row = scores[0, head, s]
                ko = row.clone()
                ko[list(targets)] = -math.inf
                p, p_ko = torch.softmax(row, -1), torch.softmax(ko, -1)
                probs[0, head, s] = p + eps * (p_ko - p)
        return torch.matmul(probs, v).transpose(1, 2).contiguous(), probs

    return attention


def _reference_logp(model64, mix, top=None):
    """(log p(top), log-odds(top), top) at the last position, float64."""
    with torch.no_grad(), swapped_attention(model64, _mixing_attention(mix)):
        logits = model64(input_ids=torch.tensor([IDS])).logits[0, -1].double()
    lp = torch.log_softmax(logits, -1)
    top = int(lp.argmax()) if top is None else top
    rest = torch.logsumexp(torch.cat([lp[:top], lp[top + 1 :]]), -1)
    return float(lp[top]), float(lp[top] - rest), top


@pytest.mark.parametrize("arch", ["qwen2", "gpt2", "gemma2"])
def test_attribution_equals_finite_differences_and_knockout_reference(arch):
    handle = tiny_handle(arch)
    model64 = copy.deepcopy(tiny_model(arch)).double()
    [attr] = attribute_heads(handle, [_probe_item()])
    lp0, lam0, top = _reference_logp(model64, {})
    assert attr.top1 == top
    assert attr.logp_top1 == pytest.approx(lp0, abs=1e-5)
    items, fd = [], {}
    for layer in (0, 1):
        for head in range(handle.n_heads):
            up = _reference_logp(model64, {layer: (head, SOURCES, TARGETS, EPS)}, top)
            down = _reference_logp(model64, {layer: (head, SOURCES, TARGETS, -EPS)}, top)
            full = _reference_logp(model64, {layer: (head, SOURCES, TARGETS, 1.0)}, top)
            fd[(layer, head)] = ((up[0] - down[0]) / (2 * EPS), (up[1] - down[1]) / (2 * EPS),
                                 full[0] - lp0)  # fmt: skip
            edit = AttentionEdit(layers=(layer,), heads=(head,), sources=SOURCES,
                                 targets=TARGETS, op=Knockout())  # fmt: skip
            items.append(Item(key=f"{layer}.{head}", sample_id="a", input_ids=IDS,
                              condition=Condition(name=f"ko{layer}.{head}", edits=(edit,))))  # fmt: skip
    measured = {r.key: r.dlogp_top1 for r in run(handle, items, batch_size=8)}
    spread = max(abs(v[0]) for v in fd.values())
    assert spread > 1e-3, "the heads must matter for the test to mean anything"
    for (layer, head), (d_lp, d_lam, ko) in fd.items():
        # Plain AtP on log p is the derivative along the exact knockout direction.
        assert attr.linear[layer][head] == pytest.approx(d_lp, rel=2e-3, abs=2e-6)
        # The estimate maps the log-odds' linear change back through the output softmax.
        sig = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
        assert attr.estimate[layer][head] == pytest.approx(sig(lam0 + d_lam) - sig(lam0),
                                                           rel=2e-3, abs=2e-6)  # fmt: skip
        # The engine's knockout of one head is the reference's full step along it.
        assert measured[f"{layer}.{head}"] == pytest.approx(ko, abs=2e-5)


def test_attribution_levels_average_to_the_engines_head_mean_read():
    handle = tiny_handle("qwen2")
    item = _probe_item()
    [attr] = attribute_heads(handle, [item])
    [res] = run(handle, [item])
    for layer, (level, mass) in res.probe_baseline.items():
        assert sum(attr.level[layer]) / handle.n_heads == pytest.approx(level, abs=1e-6)
        assert sum(attr.mass[layer]) / handle.n_heads == pytest.approx(mass, abs=1e-6)


def test_attribution_batched_with_padding_equals_one_at_a_time():
    handle = tiny_handle("qwen2")
    items = [
        _probe_item(key="long"),
        _probe_item(ids=IDS[:9], key="short", sources=(7, 8), targets=(0, 3)),
        _probe_item(ids=IDS[2:], key="mid", sources=(8,), targets=(2, 5), at=8),
    ]
    batched = attribute_heads(handle, items, batch_size=3)
    for it, b in zip(items, batched, strict=True):
        [alone] = attribute_heads(handle, [it])
        assert alone.top1 == b.top1
        for field in ("estimate", "linear", "level", "mass"):
            for layer in (0, 1):
                assert getattr(b, field)[layer] == pytest.approx(getattr(alone, field)[layer],
                                                                 abs=2e-5)  # fmt: skip


def test_attribution_computes_no_weight_gradients_and_works_under_inference_mode():
    handle = tiny_handle("qwen2")
    before = attribute_heads(handle, [_probe_item()])
    with torch.inference_mode():
        inside = attribute_heads(handle, [_probe_item()])
    assert inside == before
    assert all(p.grad is None for p in handle.hf.parameters())


def test_attribution_matches_remote_local():
    handle = tiny_handle("qwen2")
    assert attribute_heads(handle, [_probe_item()], remote="local") == attribute_heads(
        handle, [_probe_item()]
    )


def test_attribution_rejects_bad_items():
    handle = tiny_handle("qwen2")
    edit = AttentionEdit(layers=(0,), sources=SOURCES, targets=TARGETS, op=Knockout())
    edited = Item(key="e", sample_id="e", input_ids=IDS, condition=Condition(name="k", edits=(edit,)),
                  probe=Probe(layers=(0,), sources=SOURCES, targets=TARGETS))  # fmt: skip
    with pytest.raises(EditSpecError, match="has edits"):
        attribute_heads(handle, [edited])
    bare = Item(key="b", sample_id="b", input_ids=IDS, condition=Condition(name="baseline"))
    with pytest.raises(EditSpecError, match="needs a probe"):
        attribute_heads(handle, [bare])
    with pytest.raises(CausallyMaskedEdgeError, match="target=10"):
        attribute_heads(handle, [_probe_item(sources=(9,), targets=(10,))])
    with pytest.raises(EditSpecError, match="layer 5"):
        attribute_heads(handle, [_probe_item(layers=(5,))])


def test_batched_per_head_knockouts_equal_one_at_a_time(monkeypatch):
    handle = tiny_handle("qwen2")
    prompts = [(IDS, SOURCES, TARGETS), (IDS[:9], (7, 8), (0, 3)), (IDS[1:], (9, 10), (1, 4))]
    items = []
    for i, (ids, src, tgt) in enumerate(prompts):
        for layer in (0, 1):
            for head in range(handle.n_heads):
                edit = AttentionEdit(layers=(layer,), heads=(head,), sources=src, targets=tgt,
                                     op=Knockout())  # fmt: skip
                items.append(Item(key=f"{i}|{layer}|{head}", sample_id=str(i), input_ids=ids,
                                  condition=Condition(name=f"h{layer}.{head}", edits=(edit,))))  # fmt: skip
    calls = []
    original = kernels.traced_pass

    def counting(model, inputs, *args, **kwargs):
        calls.append(int(inputs["input_ids"].shape[0]))
        return original(model, inputs, *args, **kwargs)

    monkeypatch.setattr(kernels, "traced_pass", counting)
    batched = run(handle, items, batch_size=8)
    # Batched: 8 knockout rows per pass plus the prompts' unedited reference rows, never one
    # pass per head.
    assert len(calls) == math.ceil(len(items) / 8)
    assert max(calls) > 8
    monkeypatch.setattr(kernels, "traced_pass", original)
    for it, b in zip(items, batched, strict=True):
        [alone] = run(handle, [it], batch_size=1)
        assert b.kl == pytest.approx(alone.kl, abs=1e-6)
        assert b.dlogp_top1 == pytest.approx(alone.dlogp_top1, abs=2e-5)
        assert b.top1_baseline == alone.top1_baseline
    assert max(abs(b.dlogp_top1) for b in batched) > 1e-3


def test_a_knockout_that_empties_a_row_is_an_error_as_in_run():
    from plip_nn.edits import EditVerificationError

    handle = tiny_handle("qwen2")
    every = (0, 1, 2, 3)  # row 3 may attend to keys 0..3 only: all of them are targets
    with pytest.raises(EditVerificationError, match="no allowed key"):
        attribute_heads(handle, [_probe_item(sources=(3,), targets=every)])
    edit = AttentionEdit(layers=(0,), heads=(1,), sources=(3,), targets=every, op=Knockout())
    with pytest.raises(EditVerificationError, match="no allowed key"):
        run(handle, [Item(key="k", sample_id="k", input_ids=IDS,
                          condition=Condition(name="k", edits=(edit,)))])  # fmt: skip
