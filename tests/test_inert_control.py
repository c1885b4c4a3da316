"""The inert control: drawn keys zeroed post-softmax, the targets' attention left at baseline.

Checked against the hand-written reference (tests/reference_attention.py: the row redistributed
key by key in float64), on one sequence and on a left-padded batch; its verification must fire
on a wrong kernel; the mask route refuses it and ``auto`` picks eager for it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from archs import tiny_handle, tiny_model, tiny_tokenizer
from reference_attention import inert_row, reference_attention

from plip_nn import kernels
from plip_nn.edits import (
    AttentionEdit,
    Condition,
    EditSpecError,
    EditVerificationError,
    Inert,
    Knockout,
)
from plip_nn.generate import GenerationRequest, generate
from plip_nn.models import wrap_model
from plip_nn.routes import item_route
from plip_nn.trace import Item, run

IDS = tuple(range(3, 17))  # 14 tokens
LAST = len(IDS) - 1
TARGETS = (1, 2, 4)  # the protected (real) targets
KEYS = (6, 8, 9)  # the drawn control keys
SOURCES = (10, LAST)


def _inert(sources=SOURCES, keys=KEYS, protect=TARGETS, layers=(0, 1)) -> Condition:
    edit = AttentionEdit(layers=layers, sources=sources, targets=keys, op=Inert(protect=protect))
    return Condition(name="inert_control", edits=(edit,))


def _reference(model, ids, sources, keys, protect, layers=(0, 1)):
    inert = {layer: [(0, s, keys, protect) for s in sources] for layer in layers}
    record: dict = {}
    with torch.inference_mode(), reference_attention(model, inert=inert, record=record):
        logits = model(input_ids=torch.tensor([ids])).logits
    return torch.log_softmax(logits[0, -1].float(), -1), record


def test_reference_row_is_the_contract():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0], dtype=torch.float64)
    allowed = torch.tensor([True, True, True, True, False])
    row = inert_row(p, allowed, removed=(1,), protected=(0,))
    # 0.2 removed goes to keys 2 and 3 in proportion 3:4; key 0 and the masked key 4 unchanged
    expected = [0.1, 0.0, 0.3 + 0.2 * 3 / 7, 0.4 + 0.2 * 4 / 7, 0.0]
    torch.testing.assert_close(row, torch.tensor(expected, dtype=torch.float64))


def test_inert_equals_reference_and_targets_stay_at_baseline():
    handle = tiny_handle("qwen2")
    [res] = run(
        handle,
        [Item(key="i", sample_id="s", input_ids=IDS, condition=_inert())],
        keep_logprobs=True,
    )
    ref, record = _reference(tiny_model("qwen2"), IDS, SOURCES, KEYS, TARGETS)
    torch.testing.assert_close(res.logprobs, ref, atol=2e-5, rtol=0)
    assert res.kl > 0
    for layer in (0, 1):
        before, after = record[layer]
        for s in SOURCES:
            # targets exactly at the pass's own baseline, drawn keys 0, rows sum to 1
            torch.testing.assert_close(
                after[0, :, s, list(TARGETS)], before[0, :, s, list(TARGETS)]
            )
            assert (after[0, :, s, list(KEYS)] == 0).all()
            torch.testing.assert_close(after[0, :, s].sum(-1), torch.ones(4, dtype=torch.float64))
    assert len(res.readings) == 2
    for reading in res.readings:
        assert reading.op == "inert"
        assert reading.mass_after == 0.0 and reading.mass_before > 0
        assert 0.0 <= reading.target_rel_dev < 1e-6
        assert reading.error_ratio <= 1.0


def test_inert_in_a_left_padded_batch_equals_each_sequence_alone():
    """Two samples of different length in one batch (the shorter left-padded): each equals the
    reference run on its own unpadded sequence."""
    handle = tiny_handle("qwen2")
    short = IDS[3:]  # 11 tokens, padded by 3
    items = [
        Item(key="long", sample_id="a", input_ids=IDS, condition=_inert()),
        Item(
            key="short",
            sample_id="b",
            input_ids=short,
            condition=_inert(sources=(7, len(short) - 1), keys=(3, 5), protect=(0, 1)),
        ),
    ]
    got = {r.key: r for r in run(handle, items, batch_size=2, keep_logprobs=True)}
    ref_long, _ = _reference(tiny_model("qwen2"), IDS, SOURCES, KEYS, TARGETS)
    ref_short, rec = _reference(tiny_model("qwen2"), short, (7, len(short) - 1), (3, 5), (0, 1))
    torch.testing.assert_close(got["long"].logprobs, ref_long, atol=2e-5, rtol=0)
    torch.testing.assert_close(got["short"].logprobs, ref_short, atol=2e-5, rtol=0)
    before, after = rec[1]
    torch.testing.assert_close(after[0, :, 7, [0, 1]], before[0, :, 7, [0, 1]])
    for r in got.values():
        assert all(x.target_rel_dev < 1e-6 for x in r.readings)


def test_a_renormalising_kernel_makes_the_check_fire(monkeypatch):
    """A wrong kernel (the removed mass spread over every key, targets included -- what the
    renormalising control does) fails the verification and the 2% target check."""
    handle = tiny_handle("qwen2")
    item = Item(key="i", sample_id="s", input_ids=IDS, condition=_inert())
    real = kernels.inert_rows

    def renormalise(p, allowed, removed, kept):
        return real(p, allowed, removed, torch.zeros_like(kept))

    monkeypatch.setattr(kernels, "inert_rows", renormalise)
    # the check computes its expectation with the same helper: patch only the write
    real_prob = kernels.apply_prob_edits

    def wrong_write(probs, scores, groups):
        monkeypatch.setattr(kernels, "inert_rows", renormalise)
        try:
            return real_prob(probs, scores, groups)
        finally:
            monkeypatch.setattr(kernels, "inert_rows", real)

    monkeypatch.setattr(kernels, "inert_rows", real)
    monkeypatch.setattr(kernels, "apply_prob_edits", wrong_write)
    with pytest.raises(EditVerificationError, match=r"deviates|not inert"):
        run(handle, [item])


def test_the_target_check_fires_on_its_own():
    """The stats check alone: a verified Inert whose protected target moved by > 2% fails."""
    from plip_nn.verify import EditStats, check_stats

    edit = _inert().edits[0]
    ok = EditStats(0.1, 0.0, 0.3, 0.0, 0.0, 0.5, 0.0, 0.019)
    check_stats(ok, edit, "here", "s")
    for bad in (0.021, float("nan")):
        with pytest.raises(EditVerificationError, match="not inert"):
            check_stats(ok._replace(target_rel_dev=bad), edit, "here", "s")


def test_a_row_with_no_receiving_key_is_an_error():
    handle = tiny_handle("qwen2")
    # at source 3 the allowed keys are 0..3: remove 2 and 3, protect 0 and 1 -> nothing left
    cond = _inert(sources=(3,), keys=(2, 3), protect=(0, 1), layers=(0,))
    with pytest.raises(EditVerificationError, match="no allowed key outside"):
        run(handle, [Item(key="i", sample_id="s", input_ids=IDS, condition=cond)])


def test_spec_round_trips_and_rejects_overlap():
    edit = _inert().edits[0]
    assert AttentionEdit.from_dict(edit.to_dict()) == edit
    with pytest.raises(EditSpecError, match="both removed"):
        AttentionEdit(layers=(0,), sources=(9,), targets=(1, 2), op=Inert(protect=(2,)))
    with pytest.raises(EditSpecError, match="protected target position"):
        AttentionEdit(layers=(0,), sources=(9,), targets=(1,), op=Inert(protect=(99,))).validate(
            n_layers=2, n_heads=4, seq_len=14
        )


def test_auto_route_picks_eager_and_the_mask_route_refuses():
    hf = copy.deepcopy(tiny_model("qwen2"))
    h = wrap_model(hf, tiny_tokenizer(), name="tiny-auto", attn="auto")
    edit = _inert().edits[0]
    assert item_route(h, [edit], "auto") == kernels.ROUTE_SOFTMAX
    ko = AttentionEdit(layers=(0,), sources=(LAST,), targets=KEYS, op=Knockout())
    assert item_route(h, [ko], "auto") == kernels.ROUTE_MASK
    item = Item(key="i", sample_id="s", input_ids=IDS, condition=_inert())
    with pytest.raises(EditSpecError, match="Inert edits probabilities"):
        run(h, [item], route="mask")
    [res] = run(h, [item], route="auto")
    assert all(r.target_rel_dev < 1e-6 for r in res.readings)


def test_inert_in_generation_is_verified():
    handle = tiny_handle("qwen2")
    req = GenerationRequest(
        key="g", sample_id="g", input_ids=IDS, condition=_inert(sources=(LAST,))
    )
    [out] = generate(handle, [req], max_new_tokens=3, source_policy="continuation")
    assert len(out.stats) == 3 * 2  # every step at both layers (continuation edits each row)
    dev = [row[kernels.GEN_STATS + kernels.ST_TARGET_REL_DEV] for row in out.stats]
    assert all(0.0 <= d < 1e-6 for d in dev)
    assert all(row[kernels.GEN_STATS + kernels.ST_MASS_AFTER] == 0.0 for row in out.stats)
