"""``plip_nn.intervene`` inside the user's own nnsight trace, against independent references.

References: the hand-written eager attention (``reference_attention``) with the edit applied
by hand plus the user's patch as a plain torch forward hook; ``plip_nn.generate`` for
generation; a local trace for ``remote="local"``.
"""

from __future__ import annotations

import math

import pytest
import torch
from archs import _configs, tiny_handle, tiny_model, tiny_tokenizer
from reference_attention import reference_attention
from transformers import AutoModelForCausalLM

import plip_nn
from plip_nn import kernels
from plip_nn.edits import (
    AttentionEdit,
    Condition,
    EditSpecError,
    EditVerificationError,
    Knockout,
    Scale,
)
from plip_nn.generate import GenerationRequest, generate
from plip_nn.models import wrap_model

IDS = tuple(range(3, 15))  # 12 tokens
LAST = len(IDS) - 1
SOURCES = (7, LAST)
TARGETS = (1, 2, 4)
PATCH_POS = 5


def _knock(layer: int) -> AttentionEdit:
    return AttentionEdit(layers=(layer,), sources=SOURCES, targets=TARGETS, op=Knockout())


def _zero_mlp_row(module, args, output):
    out = output.clone()
    out[:, PATCH_POS, :] = 0
    return out


def _reference(edit_layer: int, patch_layer: int, rows: int = 1) -> torch.Tensor:
    """Last-position log-probs: hand-written attention with the knockout, plus the patch as a
    forward hook on ``layers[patch_layer].mlp`` (the same tiny model, same weights)."""
    model = tiny_model("qwen2")
    knock = {edit_layer: [(b, s, t) for b in range(rows) for s in SOURCES for t in TARGETS]}
    hook = model.model.layers[patch_layer].mlp.register_forward_hook(_zero_mlp_row)
    try:
        with torch.inference_mode(), reference_attention(model, knock=knock):
            logits = model(input_ids=torch.tensor([IDS] * rows)).logits
    finally:
        hook.remove()
    return torch.log_softmax(logits[:, -1].float(), -1)


def _plain_reference() -> torch.Tensor:
    model = tiny_model("qwen2")
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([IDS])).logits
    return torch.log_softmax(logits[:, -1].float(), -1)


@pytest.mark.parametrize(
    ("edit_layer", "patch_layer"),
    [(0, 1), (1, 0)],
    ids=["patch-after-intervene", "patch-before-intervene"],
)
def test_intervene_with_own_patch_equals_hand_reference(edit_layer, patch_layer):
    handle = tiny_handle("qwen2")
    nn = handle.nn
    ids = torch.tensor([IDS, IDS])
    with torch.inference_mode(), nn.trace(ids):
        if patch_layer < edit_layer:  # the user's access to an earlier layer comes first
            nn.model.layers[patch_layer].mlp.output[:, PATCH_POS, :] = 0
            edited = plip_nn.intervene(handle, [_knock(edit_layer)])
        else:
            edited = plip_nn.intervene(handle, [_knock(edit_layer)])
            nn.model.layers[patch_layer].mlp.output[:, PATCH_POS, :] = 0
        logits = nn.output.logits.save()
    got = torch.log_softmax(logits[:, -1].float(), -1)
    ref = _reference(edit_layer, patch_layer, rows=2)
    assert not torch.allclose(ref[:1], _plain_reference(), atol=1e-3)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=0)
    [(key, readings)] = edited.value.items()
    assert key == (0, edit_layer)
    assert len(readings) == 2  # one per batch row
    for r in readings:
        assert r.level_after == 0.0 and r.mass_after == 0.0 and r.level_before > 0
        assert r.error_ratio <= 1.0


def test_intervene_scale_levels_match_run():
    """Split into two calls around the user's read at layer 0: the logits and achieved levels
    equal what ``run()`` reports for the same edit (one shared core), the read equals a plain
    torch hook's."""
    handle = tiny_handle("qwen2")
    edit = AttentionEdit(layers=(0, 1), sources=(LAST,), targets=TARGETS, op=Scale(factor=3.0))
    with torch.inference_mode(), handle.nn.trace(torch.tensor([IDS])):
        first = plip_nn.intervene(handle, [edit], layers=[0])
        h0 = handle.nn.model.layers[0].output.save()
        second = plip_nn.intervene(handle, [edit], layers=[1])
        logits = handle.nn.output.logits.save()
    edited = type("Both", (), {"value": {**first.value, **second.value}})
    model = tiny_model("qwen2")
    seen = {}
    hook = model.model.layers[0].register_forward_hook(
        lambda m, a, o: seen.setdefault("h0", o[0] if isinstance(o, tuple) else o)
    )
    try:
        bias = {0: [(0, LAST, t, math.log(3.0)) for t in TARGETS]}
        with torch.inference_mode(), reference_attention(model, bias=bias):
            model(input_ids=torch.tensor([IDS]))
    finally:
        hook.remove()
    torch.testing.assert_close(h0, seen["h0"], atol=2e-5, rtol=0)
    [res] = plip_nn.run(
        handle,
        [
            plip_nn.Item(
                key="k", sample_id="s", input_ids=IDS, condition=Condition(name="c", edits=(edit,))
            )
        ],
        keep_logprobs=True,
    )
    torch.testing.assert_close(
        torch.log_softmax(logits[0, -1].float(), -1), res.logprobs, atol=2e-5, rtol=0
    )
    for reading in res.readings:
        [mine] = edited.value[(0, reading.layer)]
        assert mine.level_before == pytest.approx(reading.level_before, abs=1e-7)
        assert mine.level_after == pytest.approx(reading.level_after, abs=1e-7)
        assert mine.mass_after == pytest.approx(reading.mass_after, abs=1e-7)
        assert mine.mass_after > mine.mass_before


def test_intervene_in_a_session_with_several_traces():
    handle = tiny_handle("qwen2")
    nn = handle.nn
    ids = torch.tensor([IDS])
    with torch.inference_mode(), nn.session():
        with nn.trace(ids):
            plain = nn.output.logits.save()
        with nn.trace(ids):
            e0 = plip_nn.intervene(handle, [_knock(0)])
            nn.model.layers[1].mlp.output[:, PATCH_POS, :] = 0
            patched = nn.output.logits.save()
        with nn.trace(ids):
            e1 = plip_nn.intervene(handle, [_knock(1)])
            knocked = nn.output.logits.save()
    lp = lambda x: torch.log_softmax(x[:, -1].float(), -1)  # noqa: E731
    torch.testing.assert_close(lp(plain), _plain_reference(), atol=2e-5, rtol=0)
    torch.testing.assert_close(lp(patched), _reference(0, 1), atol=2e-5, rtol=0)
    model = tiny_model("qwen2")
    knock = {1: [(0, s, t) for s in SOURCES for t in TARGETS]}
    with torch.inference_mode(), reference_attention(model, knock=knock):
        ref1 = lp(model(input_ids=ids).logits)
    torch.testing.assert_close(lp(knocked), ref1, atol=2e-5, rtol=0)
    assert set(e0.value) == {(0, 0)} and set(e1.value) == {(0, 1)}


def test_intervene_during_generate_equals_plip_generate():
    handle = tiny_handle("qwen2")
    edit = AttentionEdit(layers=(0, 1), sources=(LAST,), targets=TARGETS, op=Knockout())
    n = 6
    [ref] = generate(
        handle,
        [
            GenerationRequest(
                key="k", sample_id="s", input_ids=IDS, condition=Condition(name="c", edits=(edit,))
            )
        ],
        max_new_tokens=n,
    )
    ids = torch.tensor([IDS])
    with torch.inference_mode():
        with handle.nn.generate(
            {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=plip_nn.padding.pad_id(handle),
        ) as tracer:
            edited = plip_nn.intervene(handle, [edit])
            seqs = tracer.result.save()
        with handle.nn.generate(
            ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0
        ) as tracer:
            plain = tracer.result.save()
    got = tuple(int(t) for t in seqs[0, len(IDS) :])
    assert got == ref.new_token_ids
    assert got != tuple(int(t) for t in plain[0, len(IDS) :])
    assert set(edited.value) == {(0, 0), (0, 1)}


def test_out_of_order_access_raises_our_error():
    handle = tiny_handle("qwen2")
    nn = handle.nn
    expect = pytest.raises(plip_nn.InterventionOrderError, match=r"call plip_nn\.intervene before")
    with expect as err:  # noqa: SIM117 -- nnsight captures the trace's own block
        with torch.inference_mode(), nn.trace(torch.tensor([IDS])):
            nn.model.layers[1].output.save()
            plip_nn.intervene(handle, [_knock(0)])
    assert "layer 0" in str(err.value) and err.value.__cause__ is None
    assert "OutOfOrderError" not in repr(err.value)


def test_wrong_write_raises_at_the_end_of_the_block_with_nothing_read(monkeypatch):
    """A kernel off by 1%: leaving the ``with`` block raises; no ``.value``/``.check()`` read."""
    handle = tiny_handle("qwen2")
    edit = AttentionEdit(layers=(0,), sources=(LAST,), targets=TARGETS, op=Scale(factor=3.0))
    real = kernels.apply_prob_edits

    def off_by_one_percent(probs, scores, groups):
        bent = [list(g) for g in groups]
        for g in bent:
            g[kernels.G_PARAM] = g[kernels.G_PARAM] * 1.01
        return real(probs, scores, bent)

    monkeypatch.setattr(kernels, "apply_prob_edits", off_by_one_percent)
    after = []
    with pytest.raises(EditVerificationError, match="deviates from the request"):
        with torch.inference_mode(), handle.nn.trace(torch.tensor([IDS])):
            plip_nn.intervene(handle, [edit])
            handle.nn.model.layers[1].output.save()
        after.append("left the block")
    assert after == []
    # verify=False is the explicit opt-out: the same wrong edit passes unchecked.
    with torch.inference_mode(), handle.nn.trace(torch.tensor([IDS])):
        plip_nn.intervene(handle, [edit], verify=False)
        logits = handle.nn.output.logits.save()
    assert torch.isfinite(logits).all()


def test_remote_local_equals_local():
    handle = tiny_handle("qwen2")
    nn = handle.nn
    ids = torch.tensor([IDS])
    plip_nn.remote.register_for_remote()
    out = {}
    for remote in (False, "local"):
        with torch.inference_mode(), nn.trace(ids, remote=remote):
            edited = plip_nn.intervene(handle, [_knock(0)])
            nn.model.layers[1].mlp.output[:, PATCH_POS, :] = 0
            logits = nn.output.logits.save()
        out[remote] = (logits, edited.value)
    torch.testing.assert_close(out["local"][0], out[False][0], atol=0, rtol=0)
    torch.testing.assert_close(
        torch.log_softmax(out["local"][0][:, -1].float(), -1), _reference(0, 1), atol=2e-5, rtol=0
    )
    assert out["local"][1] == out[False][1]


def test_readme_snippet_runs_as_written(capsys, tmp_path):
    import re
    import runpy
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Use the edits in your own trace", 1)[1].split("\n## ", 1)[0]
    code, _generation = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    script = tmp_path / "readme_snippet.py"  # nnsight reads a trace's source from its file
    script.write_text(code)
    scope = runpy.run_path(str(script))
    [reading] = scope["edited"].value[(0, 1)]
    assert reading.level_after == 0.0 and reading.level_before > 0
    assert scope["lens"].shape[-1] == scope["logits"].shape[-1]
    assert "-> 0.0" in capsys.readouterr().out


def test_mask_route_on_sdpa_with_own_patch_equals_hand_reference():
    """An SDPA model (route auto -> additive mask) with the same weights as the eager one."""
    eager = tiny_model("qwen2")
    model = AutoModelForCausalLM.from_config(_configs()["qwen2"], attn_implementation="sdpa")
    model.eval().load_state_dict(eager.state_dict())
    handle = wrap_model(model, tiny_tokenizer(), name="qwen2-sdpa", attn="as_loaded", check=False)
    nn = handle.nn
    with torch.inference_mode(), nn.trace(torch.tensor([IDS])):
        edited = plip_nn.intervene(handle, [_knock(0)])
        nn.model.layers[1].mlp.output[:, PATCH_POS, :] = 0
        logits = nn.output.logits.save()
    got = torch.log_softmax(logits[:, -1].float(), -1)
    torch.testing.assert_close(got, _reference(0, 1), atol=3e-5, rtol=0)
    [reading] = edited.value[(0, 0)]
    assert reading.level_after == 0.0 and reading.error_ratio <= 1.0


def test_intervene_in_a_decode_step_says_to_call_it_at_prefill():
    handle = tiny_handle("qwen2")
    ids = torch.tensor([IDS])
    expect = pytest.raises(EditSpecError, match=r"outside tracer\.iter")
    with expect:  # noqa: SIM117 -- nnsight captures the generate block itself
        with (
            torch.inference_mode(),
            handle.nn.generate(
                ids, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0
            ) as tracer,
        ):
            for _step in tracer.iter[:3]:
                plip_nn.intervene(handle, [_knock(0)])


def test_verify_false_edits_without_proof():
    handle = tiny_handle("qwen2")
    nn = handle.nn
    with torch.inference_mode(), nn.trace(torch.tensor([IDS])):
        edited = plip_nn.intervene(handle, [_knock(0)], verify=False)
        nn.model.layers[1].mlp.output[:, PATCH_POS, :] = 0
        logits = nn.output.logits.save()
    got = torch.log_softmax(logits[:, -1].float(), -1)
    torch.testing.assert_close(got, _reference(0, 1), atol=2e-5, rtol=0)
    with pytest.raises(EditVerificationError, match="verify=True"):
        edited.check()
