"""Every edited pass proves its edit where the model reads it.

Mutation tests: the in-trace kernels are monkeypatched to write a wrong value (off by 1%, the
wrong query row, the wrong layer, a missed head) and a single pass, a batch and a generation
must each raise :class:`EditVerificationError`. Dtype tests: correct edits pass the check in
float32, float16 and bfloat16, whose tolerance is relative to each value and the dtype.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from archs import tiny_model, tiny_tokenizer

from plip_nn import kernels
from plip_nn.edits import (
    AttentionEdit,
    Condition,
    EditVerificationError,
    Knockout,
    Scale,
    SetValue,
)
from plip_nn.generate import GenerationRequest, generate
from plip_nn.models import wrap_model
from plip_nn.trace import Item, run

N = 12
SOURCE = (N - 1,)
TARGETS = (1, 4, 6)
OPS = {"knockout": Knockout(), "scale": Scale(factor=3.0), "set_value": SetValue(value=0.05)}


@pytest.fixture(scope="module")
def handles():
    out = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        hf = copy.deepcopy(tiny_model("qwen2")).to(dtype)
        out[dtype] = wrap_model(hf, tiny_tokenizer(), name=f"tiny-qwen2-{dtype}")
    return out


def _prompt(seed: int, n: int = N) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(3, 300, (n,), generator=g).tolist())


def _condition(op_name: str, layers=(1,)) -> Condition:
    edit = AttentionEdit(layers=layers, sources=SOURCE, targets=TARGETS, op=OPS[op_name])
    return Condition(name=op_name, edits=(edit,))


def _items(op_name: str, n_items: int, layers=(1,)) -> list[Item]:
    # Batch items differ in length (left padding shifts every position).
    return [
        Item(
            key=f"{op_name}/{i}",
            sample_id=f"s{i}",
            input_ids=_prompt(i, N + 2 * i),
            condition=Condition(
                name=op_name,
                edits=(
                    AttentionEdit(
                        layers=layers,
                        sources=(N + 2 * i - 1,),
                        targets=TARGETS,
                        op=OPS[op_name],
                    ),
                ),
            ),
        )
        for i in range(n_items)
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("op_name", list(OPS))
def test_correct_edits_verify_in_every_dtype(handles, dtype, op_name):
    h = handles[dtype]
    [res] = run(h, _items(op_name, 1), batch_size=1)
    [reading] = res.readings
    assert 0 <= reading.error_ratio <= 1.0
    if op_name == "knockout":
        assert reading.level_after == 0.0 and reading.mass_after == 0.0
    elif op_name == "set_value":
        # Every head's target weight is v, up to one rounding to the model's dtype.
        tol = torch.finfo(dtype).eps * 0.05 + 1e-6
        assert reading.level_after == pytest.approx(0.05, abs=tol)
    else:  # head-mean mass is the mean over heads of f*m / (1 - m + f*m); checked per row
        assert reading.mass_after > reading.mass_before


def test_tolerance_is_relative_to_value_and_dtype():
    # bf16: half an ulp relative (0.39%), far below a 1% error; never an absolute 8*eps.
    rtol = kernels.relative_tolerance(torch.bfloat16, torch.float32)
    assert 0.0039 < rtol < 0.004
    _diff, ratio = kernels.compare(
        torch.tensor([0.0404, 0.0, 0.04]),
        torch.tensor([0.04, 0.0, 0.04], dtype=torch.float64),
        rtol,
        1e-38,
    )
    assert ratio[0] > 1  # 1% off
    assert ratio[1] == 0  # exact zero where zero is expected
    assert ratio[2] <= 1
    _, ratio = kernels.compare(
        torch.tensor([1e-30]), torch.tensor([0.0], dtype=torch.float64), rtol, 1e-38
    )
    assert math.isinf(ratio[0])  # a knocked-out key must be exactly 0


# ---------------------------------------------------------------------------------------------
# Mutations


def _mutate(monkeypatch, kind: str) -> None:
    """Make the in-trace edits write something wrong while their verification stays honest."""
    real_ko, real_prob = kernels.apply_knockouts, kernels.apply_prob_edits
    real_site = kernels.edit_site

    def bend(groups: list, n_heads: int) -> list:
        out = []
        for group in groups:
            g = list(group)
            if kind == "off_by_1pct" and g[kernels.G_OP] != kernels.KNOCKOUT:
                g[kernels.G_PARAM] = g[kernels.G_PARAM] * 1.01
            if kind == "wrong_row":
                g[kernels.G_SOURCES] = [s - 1 for s in g[kernels.G_SOURCES]]
            if kind == "missed_head":
                heads = g[kernels.G_HEADS] or list(range(n_heads))
                g[kernels.G_HEADS] = heads[1:]
            out.append(g)
        return out

    def knockout(scores, groups):
        if kind == "off_by_1pct":  # the knocked-out weight is 1% of what it was, not 0
            for g in groups:
                if g[kernels.G_OP] != kernels.KNOCKOUT:
                    continue
                s = torch.tensor(g[kernels.G_SOURCES])
                t = torch.tensor(g[kernels.G_TARGETS])
                rows = scores[g[kernels.G_ROW]]  # [H, Q, K] view
                rows[:, s[:, None], t[None, :]] += math.log(0.01)
            return scores
        return real_ko(scores, bend(groups, scores.shape[1]))

    def prob_edits(probs, scores, groups):
        return real_prob(probs, scores, bend(groups, probs.shape[1]))

    pending: list = []
    first: list = []

    def wrong_layer(model, site, edits, verify, reads, route=kernels.ROUTE_SOFTMAX):
        # Each layer writes the previous layer's edits (the first layer of a forward, none).
        if not first:
            first.append(site[kernels.SITE_PATH])
        if site[kernels.SITE_PATH] == first[0]:
            pending.clear()
        shifted = list(pending)
        pending[:] = edits
        return real_site(model, site, shifted, verify, reads, route)

    if kind == "wrong_layer":
        monkeypatch.setattr(kernels, "edit_site", wrong_layer)
    else:
        monkeypatch.setattr(kernels, "apply_knockouts", knockout)
        monkeypatch.setattr(kernels, "apply_prob_edits", prob_edits)


MUTATIONS = ("off_by_1pct", "wrong_row", "wrong_layer", "missed_head")


@pytest.mark.parametrize("op_name", list(OPS))
@pytest.mark.parametrize("kind", MUTATIONS)
def test_mutation_fires_in_a_single_pass(handles, monkeypatch, kind, op_name):
    h = handles[torch.float32]
    items = _items(op_name, 1, layers=(0, 1))
    run(h, items, batch_size=1)  # unmutated: verified
    _mutate(monkeypatch, kind)
    with pytest.raises(EditVerificationError, match=r"deviates|without a verified reading"):
        run(h, items, batch_size=1)


@pytest.mark.parametrize("kind", MUTATIONS)
def test_mutation_fires_in_a_batch(handles, monkeypatch, kind):
    h = handles[torch.float32]
    items = _items("scale", 3, layers=(0, 1))
    run(h, items, batch_size=3)
    _mutate(monkeypatch, kind)
    with pytest.raises(EditVerificationError, match=r"deviates|without a verified reading"):
        run(h, items, batch_size=3)


@pytest.mark.parametrize("kind", MUTATIONS)
def test_mutation_fires_in_generation(handles, monkeypatch, kind):
    h = handles[torch.float32]
    req = GenerationRequest(
        key="g", sample_id="g0", input_ids=_prompt(5), condition=_condition("scale", (0, 1))
    )
    kw = {"max_new_tokens": 2, "source_policy": "continuation"}
    generate(h, [req], **kw)
    _mutate(monkeypatch, kind)
    with pytest.raises(EditVerificationError, match=r"deviates|without a verified reading"):
        generate(h, [req], **kw)


def test_mutation_fires_on_the_mask_route(monkeypatch):
    """Mask route: the attention output is checked against softmax(q kᵀ + mask + edit) @ V."""
    hf = copy.deepcopy(tiny_model("qwen2"))
    hf.set_attn_implementation("sdpa")
    h = wrap_model(hf, tiny_tokenizer(), name="tiny-sdpa", attn="as_loaded")
    items = _items("scale", 2)
    [res, _] = run(h, items, batch_size=2, route="mask")
    assert res.readings[0].error_ratio <= 1
    real_edit = kernels.edit_mask

    def off(mask, groups):
        bent = [list(g) for g in groups]
        for g in bent:
            g[kernels.G_PARAM] *= 1.01
        return real_edit(mask, bent)

    monkeypatch.setattr(kernels, "edit_mask", off)
    with pytest.raises(EditVerificationError, match="deviates"):
        run(h, items, batch_size=2, route="mask")


def test_two_edits_on_the_same_layers_are_checked_as_their_own_ops(handles):
    """Knockout and Scale on the same layers: each reading is checked under its own op."""
    h = handles[torch.float32]
    edits = (
        AttentionEdit(layers=(0, 1), sources=SOURCE, targets=(1,), op=Knockout()),
        AttentionEdit(layers=(0, 1), sources=SOURCE, targets=(4, 6), op=Scale(factor=2.0)),
    )
    req = GenerationRequest(
        key="g",
        sample_id="g0",
        input_ids=_prompt(6),
        condition=Condition(name="both", edits=edits),
    )
    [res] = generate(h, [req], max_new_tokens=2, source_policy="continuation")
    per_edit = {int(s[kernels.GEN_EDIT]) for s in res.stats}
    assert per_edit == {0, 1}
    ko = [s for s in res.stats if int(s[kernels.GEN_EDIT]) == 0]
    assert all(s[kernels.GEN_STATS + kernels.ST_LEVEL_AFTER] == 0.0 for s in ko)
    # The same two edits in one pass: the final row satisfies both (overlapping rows).
    [item] = [Item(key="x", sample_id="x", input_ids=_prompt(6), condition=req.condition)]
    [out] = run(h, [item], batch_size=1)
    assert {(r.edit, r.layer) for r in out.readings} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(r.level_after == 0.0 for r in out.readings if r.edit == 0)
