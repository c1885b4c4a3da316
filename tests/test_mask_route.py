"""The additive-mask route (for SDPA models) gives the same numbers as the softmax route."""

import pytest
import torch
from archs import _configs, tiny_handle, tiny_model, tiny_tokenizer
from transformers import AutoModelForCausalLM

from plip_nn.edits import AttentionEdit, Condition, EditSpecError, Knockout, Probe, Scale, SetValue
from plip_nn.models import wrap_model
from plip_nn.trace import Item, run

SEQS = [tuple(range(3, 15)), tuple(range(40, 48))]


def _items():
    items = []
    for i, ids in enumerate(SEQS):
        last = len(ids) - 1
        probe = Probe(layers=(0, 1), sources=(last,), targets=(1, 2))
        for cond in (
            Condition(name="baseline"),
            Condition(
                name="ko",
                edits=(
                    AttentionEdit(
                        layers=(0, 1), sources=(last - 2, last), targets=(1, 2), op=Knockout()
                    ),
                ),
            ),
            Condition(
                name="sc",
                edits=(
                    AttentionEdit(
                        layers=(0,),
                        sources=(last,),
                        targets=(0, 3),
                        op=Scale(factor=5.0),
                        heads=(1, 2),
                    ),
                ),
            ),
            Condition(
                name="sc_half",
                edits=(
                    AttentionEdit(layers=(1,), sources=(last,), targets=(2,), op=Scale(factor=0.5)),
                ),
            ),
        ):
            items.append(
                Item(
                    key=f"{i}/{cond.name}",
                    sample_id=str(i),
                    input_ids=ids,
                    condition=cond,
                    probe=probe,
                )
            )
    return items


def _sdpa_handle(arch):
    eager = tiny_model(arch)
    model = AutoModelForCausalLM.from_config(_configs()[arch], attn_implementation="sdpa").eval()
    model.load_state_dict(eager.state_dict())
    return wrap_model(model, tiny_tokenizer(), name=f"{arch}-sdpa", attn="as_loaded", check=False)


def _assert_same(a, b, atol=3e-5):
    for x, y in zip(a, b, strict=True):
        assert x.key == y.key
        torch.testing.assert_close(x.logprobs, y.logprobs, atol=atol, rtol=0)
        assert x.kl == pytest.approx(y.kl, abs=atol)
        for rx, ry in zip(x.readings, y.readings, strict=True):
            for f in ("level_before", "level_after", "mass_before", "mass_after"):
                assert getattr(rx, f) == pytest.approx(getattr(ry, f), abs=atol), f
        for layer, (lv, _) in y.probe_condition.items():
            assert x.probe_condition[layer][0] == pytest.approx(lv, abs=atol)


@pytest.mark.parametrize("arch", ["qwen2", "gpt2", "gemma2"])
def test_mask_route_equals_softmax_route_on_eager(arch):
    handle = tiny_handle(arch)
    soft = run(handle, _items(), keep_logprobs=True, route="softmax")
    mask = run(handle, _items(), keep_logprobs=True, route="mask")
    _assert_same(mask, soft)
    assert any(r.kl > 1e-4 for r in soft)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_mask_route_under_sdpa_equals_eager_softmax_route(arch):
    sdpa = _sdpa_handle(arch)
    assert sdpa.attn_implementation == "sdpa"
    got = run(sdpa, _items(), keep_logprobs=True)  # auto -> mask route
    ref = run(tiny_handle(arch), _items(), keep_logprobs=True, route="softmax")
    _assert_same(got, ref)


def test_mask_route_refuses_set_value():
    item = Item(
        key="k",
        sample_id="s",
        input_ids=SEQS[0],
        condition=Condition(
            name="sv",
            edits=(AttentionEdit(layers=(0,), sources=(9,), targets=(1,), op=SetValue(value=0.1)),),
        ),
    )
    with pytest.raises(EditSpecError, match="needs the softmax route"):
        run(tiny_handle("qwen2"), [item], route="mask")


def test_auto_handle_runs_each_item_on_its_fastest_allowed_route(monkeypatch):
    """``attn="auto"``: knockout/Scale items on the mask route under SDPA, SetValue items on
    eager in their own pass; every number equals an all-eager run."""
    import copy

    from plip_nn import kernels

    auto = wrap_model(copy.deepcopy(tiny_model("qwen2")), tiny_tokenizer(), attn="auto")
    assert auto.implementations == ("sdpa", "eager")
    assert auto.attention_policy()["set_value"] == "softmax route on eager"
    sv = [
        Item(
            key=f"{i}/sv",
            sample_id=str(i),
            input_ids=ids,
            condition=Condition(
                name="sv",
                edits=(
                    AttentionEdit(
                        layers=(1,), sources=(len(ids) - 1,), targets=(1, 2), op=SetValue(value=0.1)
                    ),
                ),
            ),
        )
        for i, ids in enumerate(SEQS)
    ]
    items = _items() + sv
    seen = []
    real = kernels.traced_pass

    def spy(model, inputs, sites, plan, base_rows, keep, in_session, route=kernels.ROUTE_SOFTMAX,
            *rest):  # fmt: skip
        seen.append((route, auto.attn_implementation))
        return real(model, inputs, sites, plan, base_rows, keep, in_session, route, *rest)

    monkeypatch.setattr(kernels, "traced_pass", spy)
    got = run(auto, items, keep_logprobs=True)
    assert set(seen) == {(kernels.ROUTE_MASK, "sdpa"), (kernels.ROUTE_SOFTMAX, "eager")}
    assert auto.attn_implementation == "sdpa"
    ref = run(tiny_handle("qwen2"), items, keep_logprobs=True, route="softmax")
    _assert_same(got, ref)
    assert any(r.kl > 1e-4 for r in got if r.condition == "sv")
