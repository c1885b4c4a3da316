"""Loading models from disk, dtype handling, and the structural self-check."""

import pytest
import torch
from archs import tiny_model, tiny_tokenizer

from plip_nn.edits import AttentionEdit, Condition, Knockout, Scale, SetValue
from plip_nn.models import ModelLoadError, load_model
from plip_nn.trace import Item, run


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-qwen2")
    tiny_model("qwen2").save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def test_load_from_local_dir(saved_dir):
    handle = load_model(saved_dir)
    assert handle.name == str(saved_dir)
    assert handle.attn_implementation == "eager"
    assert [s.layer for s in handle.sites] == [0, 1]
    assert handle.sites[1].module_path == "model.layers.1.self_attn"


def test_unknown_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_model(tmp_path / "does-not-exist")


def test_unknown_dtype(saved_dir):
    with pytest.raises(ModelLoadError, match="unknown dtype 'float8'"):
        load_model(saved_dir, dtype="float8")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_edits(saved_dir, dtype):
    handle = load_model(saved_dir, dtype=dtype)
    assert next(handle.hf.parameters()).dtype == getattr(torch, dtype)
    ids = tuple(range(3, 15))
    conds = [
        Condition(
            name="ko",
            edits=(AttentionEdit(layers=(0, 1), sources=(11,), targets=(1, 2), op=Knockout()),),
        ),
        Condition(
            name="sc",
            edits=(
                AttentionEdit(layers=(0, 1), sources=(11,), targets=(1, 2), op=Scale(factor=3.0)),
            ),
        ),
        Condition(
            name="sv",
            edits=(
                AttentionEdit(layers=(1,), sources=(11,), targets=(1, 2), op=SetValue(value=0.2)),
            ),
        ),
    ]
    res = run(
        handle,
        [Item(key=c.name, sample_id="s", input_ids=ids, condition=c) for c in conds],
        keep_logprobs=True,
    )
    for r in res:
        assert torch.isfinite(r.logprobs).all()
        assert r.kl == r.kl and r.kl >= -1e-6
    assert all(x.level_after == 0.0 for x in res[0].readings)
    assert all(x.level_after == pytest.approx(0.2, abs=2e-3) for x in res[2].readings)


def test_device_map_loads_straight_onto_the_device(saved_dir, monkeypatch):
    """device_map="cpu" and device="auto" place weights while loading: no ``.to()`` afterwards."""

    def no_copy(self, *args, **kwargs):
        raise AssertionError("load_model copied the model with .to() after loading")

    monkeypatch.setattr(torch.nn.Module, "to", no_copy)
    for kwargs in ({"device_map": "cpu"}, {"device": "auto"}):
        handle = load_model(saved_dir, **kwargs)
        assert handle.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
        assert next(handle.hf.parameters()).dtype == torch.float32


def test_self_check_runs_on_the_mask_route(saved_dir, monkeypatch):
    """attn="as_loaded" still self-checks: an identity edit must verify on the mask route."""
    from plip_nn import kernels

    handle = load_model(saved_dir, attn="as_loaded")
    assert handle.attn_implementation != "eager"
    real = kernels.edit_mask

    def wrong(full, groups):
        bent = [list(g) for g in groups]
        for g in bent:
            g[kernels.G_PARAM] = 2.0  # the identity edit now doubles the weights
        return real(full, bent)

    monkeypatch.setattr(kernels, "edit_mask", wrong)
    with pytest.raises(Exception, match="does not verify"):
        handle.self_check()
