"""Bad inputs to the engine each raise a clear error before anything runs."""

import pytest
import torch
from archs import tiny_handle, tiny_model, tiny_tokenizer

from plip_nn.edits import (
    AttentionEdit,
    CausallyMaskedEdgeError,
    Condition,
    EditSpecError,
    EditVerificationError,
    Knockout,
    Scale,
    SetValue,
)
from plip_nn.models import UnsupportedArchitectureError, wrap_model
from plip_nn.trace import Item, RemoteConfigError, run

IDS = tuple(range(3, 13))


def _run(edit, ids=IDS, handle=None, **kw):
    cond = Condition(name="c", edits=(edit,))
    return run(
        handle or tiny_handle("qwen2"),
        [Item(key="k", sample_id="s1", input_ids=ids, condition=cond)],
        **kw,
    )


def test_layer_out_of_range():
    with pytest.raises(EditSpecError, match=r"layer 5 is out of range; the model has 2 layers"):
        _run(AttentionEdit(layers=(5,), sources=(8,), targets=(1,), op=Knockout()))


def test_position_beyond_sequence():
    with pytest.raises(EditSpecError, match=r"source position 10 >= sequence length 10"):
        _run(AttentionEdit(layers=(0,), sources=(10,), targets=(1,), op=Knockout()))


def test_future_edge_is_causally_masked():
    with pytest.raises(CausallyMaskedEdgeError, match=r"sample 's1': edge \(source=3, target=5\)"):
        _run(AttentionEdit(layers=(0,), sources=(3,), targets=(1, 5), op=Knockout()))


def test_sliding_window_edge_is_masked():
    handle = tiny_handle("gemma3")  # window 64 on every layer
    ids = tuple(i % 300 + 1 for i in range(80))
    with pytest.raises(CausallyMaskedEdgeError, match="sliding window 64"):
        _run(
            AttentionEdit(layers=(0,), sources=(79,), targets=(2,), op=Knockout()),
            ids=ids,
            handle=handle,
        )


@pytest.mark.parametrize("f", [0.0, -1.0, float("nan"), float("inf")])
def test_scale_must_be_positive_finite(f):
    with pytest.raises(EditSpecError, match=r"Scale\.factor"):
        Scale(factor=f)


def test_set_value_total_must_stay_below_one():
    with pytest.raises(EditSpecError, match=r"v\*\|T\|=1 >= 1"):
        AttentionEdit(layers=(0,), sources=(5,), targets=(1, 2, 3, 4), op=SetValue(value=0.25))
    with pytest.raises(EditSpecError, match=r"SetValue\.value"):
        SetValue(value=1.5)


@pytest.mark.parametrize("field", ["sources", "targets", "layers"])
def test_empty_positions(field):
    kw = dict(layers=(0,), sources=(5,), targets=(1,), op=Knockout())
    kw[field] = ()
    with pytest.raises(EditSpecError, match=f"{field} is empty"):
        AttentionEdit(**kw)


def test_knockout_of_every_allowed_key():
    with pytest.raises(EditVerificationError, match="no allowed key"):
        _run(AttentionEdit(layers=(0,), sources=(1,), targets=(0, 1), op=Knockout()))


def test_unsupported_architecture():
    class NoAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = tiny_model("qwen2").config
            self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])

    with pytest.raises(
        UnsupportedArchitectureError, match="no submodule calls an attention function"
    ):
        wrap_model(NoAttention(), tiny_tokenizer(), attn="as_loaded")


def test_non_eager_attention_refused_for_probabilities():
    from archs import _configs
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(_configs()["qwen2"], attn_implementation="sdpa").eval()
    handle = wrap_model(model, tiny_tokenizer(), attn="as_loaded", check=False)
    with pytest.raises(EditSpecError, match="needs the softmax route with eager attention"):
        _run(
            AttentionEdit(layers=(0,), sources=(8,), targets=(1,), op=SetValue(value=0.1)),
            handle=handle,
        )
    with pytest.raises(UnsupportedArchitectureError, match="needs eager attention"):
        _run(
            AttentionEdit(layers=(0,), sources=(8,), targets=(1,), op=Knockout()),
            handle=handle,
            route="softmax",
        )


def test_wrap_switches_to_eager():
    from archs import _configs
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(_configs()["llama"], attn_implementation="sdpa").eval()
    handle = wrap_model(model, tiny_tokenizer())
    assert handle.attn_implementation == "eager"


def test_ndif_without_key(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(RemoteConfigError, match="NDIF_API_KEY"):
        _run(AttentionEdit(layers=(0,), sources=(8,), targets=(1,), op=Knockout()), remote="ndif")


def test_duplicate_keys_and_short_sequences():
    cond = Condition(name="baseline")
    item = Item(key="k", sample_id="s", input_ids=IDS, condition=cond)
    with pytest.raises(EditSpecError, match="duplicate item keys"):
        run(tiny_handle("qwen2"), [item, item])
    with pytest.raises(EditSpecError, match="need at least 2"):
        Item(key="k", sample_id="s", input_ids=(1,), condition=cond)


def test_spec_json_round_trip():
    cond = Condition(
        name="mix",
        edits=(
            AttentionEdit(layers=(0, 1), sources=(5,), targets=(1, 2), op=Knockout()),
            AttentionEdit(
                layers=(1,), sources=(5,), targets=(3,), op=Scale(factor=2.5), heads=(0, 3)
            ),
            AttentionEdit(layers=(0,), sources=(6,), targets=(2,), op=SetValue(value=0.1)),
        ),
    )
    assert Condition.from_json("mix", cond.to_json()) == cond
    with pytest.raises(EditSpecError, match="positions must be ints"):
        AttentionEdit(layers=(0,), sources=(1.5,), targets=(0,), op=Knockout())
