"""``plip_nn.intervene`` inside the user's own ``generate``: the edits stay on at every step.

References, each independent of the code path under test:

* ``plip_nn.generate`` -- the engine's own KV-cached loop (one generate per batch), and
* ``generate_recompute`` -- a full forward over the whole sequence at every step with the
  accumulated edge set (every row edited so far), no KV cache: the original system's method;
* a single plain ``trace`` over the final sequence with every edited row, for the user's
  per-step logit lens.

Greedy tokens must agree token for token (lengths checked with ``zip(strict=True)``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from archs import tiny_handle, tiny_model, tiny_tokenizer

import plip_nn
from plip_nn import kernels
from plip_nn.edits import (
    AttentionEdit,
    Condition,
    EditSpecError,
    EditVerificationError,
    Knockout,
    Scale,
    SetValue,
)
from plip_nn.generate import (
    GenerationRequest,
    generate,
    generate_recompute,
    resolve_source_policy,
)
from plip_nn.models import wrap_model
from plip_nn.padding import pad_batch, pad_id
from plip_nn.scope import ROWS

N = 6
PROMPTS = [tuple(range(5, 17)), tuple(range(40, 49)), tuple(range(100, 114))]  # 12, 9, 14
SOURCE = 7  # in every prompt (unpadded position)
TARGETS = (1, 2, 3)
OPS = [Knockout(), Scale(factor=3.0), SetValue(value=0.1)]
OP_IDS = ["knockout", "scale3", "setvalue"]


def _edit(op, layers=(0, 1)) -> AttentionEdit:
    return AttentionEdit(layers=layers, sources=(SOURCE,), targets=TARGETS, op=op)


def _request(i: int, edit: AttentionEdit, markers: tuple = ()) -> GenerationRequest:
    return GenerationRequest(
        key=str(i),
        sample_id=f"s{i}",
        input_ids=PROMPTS[i],
        condition=Condition(name="c", edits=(edit,)),
        marker_token_seqs=markers,
    )


def user_generate(handle, prompts, edits, *, n=N, lens_layer=None, gen_kwargs=None, **kw):
    """The user's own generate over ``prompts`` (left-padded) with ``intervene`` kept on and,
    with ``lens_layer``, a logit lens (top-1 at the new row) saved at each step.

    Returns ``(new tokens per row, the Intervention, lens [steps, batch] or None)``.
    """
    inputs, offsets = pad_batch(prompts, pad_id(handle), handle.device)
    del inputs["position_ids"]  # generate derives positions from the mask
    nn = handle.nn
    gen_kwargs = gen_kwargs or {"do_sample": False}
    with (
        torch.inference_mode(),
        nn.generate(
            inputs, max_new_tokens=n, min_new_tokens=n, pad_token_id=pad_id(handle), **gen_kwargs
        ) as tracer,
    ):
        edited = plip_nn.intervene(handle, edits, steps=tracer.iter[:n], offsets=offsets, **kw)
        lens = list().save()
        for _step in edited:
            if lens_layer is not None:
                h = nn.model.layers[lens_layer].output[:, -1]
                lens.append(nn.lm_head(nn.model.norm(h)).argmax(-1).cpu())
        seqs = tracer.result.save()
    width = inputs["input_ids"].shape[1]
    tokens = [tuple(int(t) for t in row[width:]) for row in seqs]
    return tokens, edited, (torch.stack(lens) if lens else None)


def _generated_marker(handle, edit: AttentionEdit, i: int) -> tuple:
    """Two tokens the edited model generates at steps 0 and 1 for prompt ``i``: as a marker
    they complete at step 2, whatever the marker policy did before (nothing: no marker yet)."""
    [res] = generate(handle, [_request(i, edit)], max_new_tokens=2)
    return (tuple(res.new_token_ids[:2]),)


def _check_readings(edited, edits, policy: str, n_rows: int) -> None:
    """Every scheduled (edit, layer, step, row) has a verified reading, and the schedule
    follows the policy (continuation: every step, markers: the prefill plus marker steps)."""
    value = edited.value
    assert sorted(edited.schedule) == list(range(N))
    for step, active in edited.schedule.items():
        assert len(active) == n_rows
        for row, rows in enumerate(active):
            if policy == "continuation" or step == 0:
                assert rows, (step, row)
            for e_idx, edit in enumerate(edits):
                for layer in edit.layers:
                    assert ((e_idx, layer, step, row) in value) == bool(rows)
    for (e_idx, _layer, _step, _row), reading in value.items():
        assert reading.error_ratio <= 1.0
        if isinstance(edits[e_idx].op, Knockout):
            assert reading.level_after == 0.0
        if isinstance(edits[e_idx].op, SetValue):
            assert reading.level_after == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
@pytest.mark.parametrize("policy", ["markers", "continuation"])
def test_batch1_greedy_equals_generate_and_recompute(op, policy):
    handle = tiny_handle("qwen2")
    edit = _edit(op)
    markers = _generated_marker(handle, edit, 0) if policy == "markers" else ()
    req = _request(0, edit, markers)
    [ref] = generate(handle, [req], max_new_tokens=N, source_policy=policy)
    recompute = generate_recompute(handle, req, max_new_tokens=N, source_policy=policy)
    [got], edited, _ = user_generate(
        handle, [PROMPTS[0]], [edit], source_policy=policy, marker_token_seqs=markers
    )
    assert len(got) == len(ref.new_token_ids) == len(recompute) == N
    for step, (a, b, c) in enumerate(zip(got, ref.new_token_ids, recompute, strict=True)):
        assert a == b == c, f"step {step}: intervene {a}, generate {b}, recompute {c}"
    _check_readings(edited, [edit], policy, 1)
    n_edited = sum(bool(active[0]) for active in edited.schedule.values())
    assert n_edited == ref.n_edited_steps
    if policy == "markers":  # the prompt's marker and the generated one (at step 2)
        assert edited.schedule[2] == [[0]] and n_edited >= 2


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
@pytest.mark.parametrize("policy", ["markers", "continuation"])
def test_batch3_left_padded_greedy_equals_generate_and_recompute(op, policy):
    handle = tiny_handle("qwen2")
    edit = _edit(op)
    markers = _generated_marker(handle, edit, 1) if policy == "markers" else ()
    reqs = [_request(i, edit, markers) for i in range(len(PROMPTS))]
    refs = generate(handle, reqs, max_new_tokens=N, source_policy=policy, batch_size=3)
    got, edited, _ = user_generate(
        handle, PROMPTS, [edit], source_policy=policy, marker_token_seqs=markers
    )
    assert len({len(p) for p in PROMPTS}) == 3  # three pad offsets
    for req, mine, ref in zip(reqs, got, refs, strict=True):
        recompute = generate_recompute(handle, req, max_new_tokens=N, source_policy=policy)
        assert len(mine) == N
        for step, (a, b, c) in enumerate(zip(mine, ref.new_token_ids, recompute, strict=True)):
            assert a == b == c, f"prompt {req.key}, step {step}: {a}, {b}, {c}"
    _check_readings(edited, [edit], policy, 3)
    for r, ref in enumerate(refs):
        assert sum(bool(a[r]) for a in edited.schedule.values()) == ref.n_edited_steps
    if policy == "markers":  # row 1 generated its marker at step 2
        assert edited.schedule[2][1] == [0]


def test_edits_change_the_users_generation():
    """The reference equality would hold trivially if nothing were edited: it is not so."""
    handle = tiny_handle("qwen2")
    plain = generate(
        handle,
        [GenerationRequest(key="b", sample_id="b", input_ids=PROMPTS[0], condition=Condition(name="b"))],
        max_new_tokens=N,
    )[0].new_token_ids  # fmt: skip
    [got], _, _ = user_generate(
        handle, [PROMPTS[0]], [_edit(Knockout())], source_policy="continuation"
    )
    assert got != plain


def test_one_percent_off_kernel_is_caught_at_a_decode_step(monkeypatch):
    handle = tiny_handle("qwen2")
    edit = _edit(Scale(factor=3.0), layers=(1,))
    real = kernels.apply_prob_edits

    def off_at_decode(probs, scores, groups):
        if probs.shape[2] > 1:  # the prefill stays right
            return real(probs, scores, groups)
        bent = [list(g) for g in groups]
        for g in bent:
            g[kernels.G_PARAM] = g[kernels.G_PARAM] * 1.01
        return real(probs, scores, bent)

    monkeypatch.setattr(kernels, "apply_prob_edits", off_at_decode)
    # The loop over the steps ends with the check: the generate block raises, nothing read.
    with pytest.raises(EditVerificationError, match=r"step 1, batch row 0.*deviates"):
        user_generate(handle, [PROMPTS[0]], [edit], source_policy="continuation")


def test_a_step_with_a_missing_reading_raises():
    handle = tiny_handle("qwen2")
    _, edited, _ = user_generate(
        handle, PROMPTS[:2], [_edit(Knockout())], source_policy="continuation"
    )
    tables = edited.stats["steps"]
    step3 = [t for t in tables if t[0, kernels.GEN_STEP].item() == 3]
    assert step3 and all(t.shape[0] == 2 for t in step3)  # both rows at every edited layer
    edited.stats["steps"] = [t for t in tables if t[0, kernels.GEN_STEP].item() != 3]
    with pytest.raises(EditVerificationError, match=r"step 3, batch row 0: edit 0 at layer 0"):
        edited.check()


def test_users_logit_lens_per_step_equals_a_full_pass():
    """The lens the user saves at each step (layer 1 of 2, after the knockout at layer 0)
    equals a single full pass over the final sequence with every edited row, and the last
    layer's lens is the token greedy decoding chose."""
    handle = tiny_handle("qwen2")
    edit = _edit(Knockout(), layers=(0,))
    [got], edited, lens = user_generate(
        handle, [PROMPTS[0]], [edit], source_policy="continuation", lens_layer=0
    )
    [_, _, last] = user_generate(
        handle, [PROMPTS[0]], [edit], source_policy="continuation", lens_layer=1
    )
    assert [int(t) for t in last[:, 0]] == list(got)
    seq = list(PROMPTS[0]) + list(got[:-1])  # what the KV-cached run fed
    full = AttentionEdit(
        layers=(0,), sources=tuple(range(SOURCE, len(seq))), targets=TARGETS, op=Knockout()
    )
    nn = handle.nn
    with torch.inference_mode(), nn.trace(torch.tensor([seq])):
        once = plip_nn.intervene(handle, [full])
        ref = nn.lm_head(nn.model.norm(nn.model.layers[0].output)).argmax(-1).save()
    assert once.value[(0, 0)][0].level_after == 0.0
    rows = range(len(PROMPTS[0]) - 1, len(seq))
    assert len(rows) == lens.shape[0] == N
    assert [int(x) for x in lens[:, 0]] == [int(ref[0, r]) for r in rows]
    assert edited.value  # verified alongside the user's reads


def test_sampling_equals_plip_generate_with_the_same_seed():
    handle = tiny_handle("qwen2")
    edit = _edit(Knockout())
    order = [1, 0]  # shortest prompt first: generate's own row order in a batch
    reqs = [_request(i, edit) for i in order]
    refs = generate(
        handle, reqs, max_new_tokens=N, do_sample=True, seed=5, temperature=1.5,
        source_policy="continuation", batch_size=2,
    )  # fmt: skip
    torch.manual_seed(5)
    got, edited, _ = user_generate(
        handle, [PROMPTS[i] for i in order], [edit], source_policy="continuation",
        gen_kwargs={"do_sample": True, "temperature": 1.5},
    )  # fmt: skip
    for mine, ref in zip(got, refs, strict=True):
        assert mine == ref.new_token_ids
    greedy = generate(handle, reqs, max_new_tokens=N, source_policy="continuation", batch_size=2)
    assert [r.new_token_ids for r in greedy] != got  # sampling did sample
    _check_readings(edited, [edit], "continuation", 2)


def test_remote_local_equals_local():
    handle = tiny_handle("qwen2")
    plip_nn.remote.register_for_remote()
    edit = _edit(Scale(factor=3.0))
    inputs, offsets = pad_batch(PROMPTS[:2], pad_id(handle), handle.device)
    del inputs["position_ids"]
    nn = handle.nn
    out = {}
    for remote in (False, "local"):
        with (
            torch.inference_mode(),
            nn.generate(
                inputs, max_new_tokens=N, min_new_tokens=N, do_sample=False,
                pad_token_id=pad_id(handle), remote=remote,
            ) as tracer,
        ):  # fmt: skip
            edited = plip_nn.intervene(
                handle, [edit], steps=tracer.iter[:N], offsets=offsets,
                source_policy="continuation",
            )  # fmt: skip
            lens = list().save()
            for _step in edited:
                lens.append(nn.lm_head.output[:, -1].argmax(-1).cpu())
            seqs = tracer.result.save()
        out[remote] = (seqs, edited.value, torch.stack(lens))
    assert torch.equal(out["local"][0], out[False][0])
    assert torch.equal(out["local"][2], out[False][2])
    assert out["local"][1] == out[False][1] and len(out["local"][1]) == 2 * 2 * N


def test_a_range_of_steps_edits_only_those_steps():
    handle = tiny_handle("qwen2")
    edit = _edit(Knockout())
    inputs, _ = pad_batch([PROMPTS[0]], pad_id(handle), handle.device)
    del inputs["position_ids"]
    nn = handle.nn
    kw = {"max_new_tokens": N, "min_new_tokens": N, "do_sample": False, "pad_token_id": 0}
    with torch.inference_mode(), nn.generate(inputs, **kw) as tracer:
        edited = plip_nn.intervene(
            handle, [edit], steps=tracer.iter[2:5], source_policy="continuation"
        )
        for _step in edited:
            pass
        seqs = tracer.result.save()
    assert sorted(edited.schedule) == [2, 3, 4]
    assert {k[2] for k in edited.value} == {2, 3, 4}
    plain = generate(
        handle,
        [GenerationRequest(key="b", sample_id="b", input_ids=PROMPTS[0], condition=Condition(name="b"))],
        max_new_tokens=N,
    )[0].new_token_ids  # fmt: skip
    got = tuple(int(t) for t in seqs[0, len(PROMPTS[0]) :])
    assert got[:2] == plain[:2]  # the tokens of the unedited steps 0 and 1
    assert got[2:] != plain[2:]  # step 2 on: the new rows are knocked out


def test_verify_false_generates_the_same_tokens_without_proof():
    handle = tiny_handle("qwen2")
    edit = _edit(Scale(factor=3.0))
    a, _, _ = user_generate(handle, PROMPTS, [edit], source_policy="continuation")
    b, edited, _ = user_generate(
        handle, PROMPTS, [edit], source_policy="continuation", verify=False
    )
    assert a == b
    assert sorted(edited.schedule) == list(range(N)) and not edited.stats["steps"]
    with pytest.raises(EditVerificationError, match="verify=True"):
        edited.check()


def test_bad_arguments_say_what_and_how():
    handle = tiny_handle("qwen2")
    edit = _edit(Knockout())
    with pytest.raises(EditSpecError, match=r"source_policy='rows'.*continuation"):
        resolve_source_policy("rows")
    with pytest.raises(ValueError, match=r"offsets has 2 entries but the batch has 3 rows"):
        inputs, _ = pad_batch(PROMPTS, 0, handle.device)
        del inputs["position_ids"]
        with (
            torch.inference_mode(),
            handle.nn.generate(
                inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False, pad_token_id=0
            ) as tracer,
        ):
            for _ in plip_nn.intervene(handle, [edit], steps=tracer.iter[:2], offsets=[0, 1]):
                pass
    ids = torch.tensor([PROMPTS[0]])
    expect = pytest.raises(EditSpecError, match=r"pass steps=tracer\.iter")
    with expect, torch.inference_mode(), handle.nn.trace(ids):
        plip_nn.intervene(handle, [edit], source_policy="continuation")
    with pytest.raises(EditSpecError, match="no steps to walk"), handle.nn.trace(ids):
        for _ in plip_nn.intervene(handle, [edit]):
            pass
    with pytest.raises(EditSpecError, match="offsets"):
        plip_nn.intervene(handle, [edit], offsets=[-1])


def test_one_policy_definition_covers_the_scope_rows():
    assert {resolve_source_policy(r) for r in ROWS} <= {"markers", "continuation", "to_call"}
    assert resolve_source_policy("marker_span") == resolve_source_policy("marker") == "markers"
    assert resolve_source_policy("continuation") == "continuation"
    assert resolve_source_policy("to_call") == "to_call"
    rows = kernels.policy_rows
    assert rows("markers", [3, 4], 9, 0, [], [[7]]) == [3, 4]
    assert rows("continuation", [3, 4], 9, 0, [], []) == list(range(3, 9))
    assert rows("markers", [3], 1, 2, [5, 7], [[7]]) == [0]  # a generated marker, KV cached
    assert rows("markers", [3], 14, 2, [5, 7], [[5, 7]]) == [13]  # recompute: absolute row
    assert rows("markers", [3], 1, 2, [7, 5], [[7]]) == []
    assert rows("continuation", [], 1, 2, [7], []) == []  # no edit, no row
    with pytest.raises(EditSpecError, match="source_policy"):
        generate_recompute(tiny_handle("qwen2"), _request(0, _edit(Knockout())), source_policy="x")


def test_readme_generation_snippet_runs_as_written(capsys, tmp_path):
    """The README's generation snippet (a knockout kept on while the model samples, with a
    per-step logit lens) runs as written, and samples what ``plip_nn.generate`` samples from
    the same seed with the same edit."""
    import re
    import runpy
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Use the edits in your own trace", 1)[1].split("\n## ", 1)[0]
    _single_pass, code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    script = tmp_path / "readme_generation.py"  # nnsight reads a trace's source from its file
    script.write_text(code)
    scope = runpy.run_path(str(script))
    n, ids, knock, handle = scope["n"], scope["ids"], scope["knock"], scope["handle"]
    new = tuple(int(t) for t in scope["tokens"][0, ids.shape[1] :])
    assert len(new) == len(scope["lens"]) == n
    value = scope["edited"].value
    assert {k[2] for k in value} == set(range(n))  # every step edited ("continuation")
    assert all(r.level_after == 0.0 for r in value.values())
    assert "-> 0.0" in capsys.readouterr().out
    req = GenerationRequest(
        key="readme", sample_id="readme", input_ids=tuple(int(t) for t in ids[0]),
        condition=Condition(name="knockout", edits=(knock,)),
    )  # fmt: skip
    [ref] = generate(
        handle, [req], max_new_tokens=n, do_sample=True, seed=0, temperature=0.8,
        source_policy="continuation",
    )  # fmt: skip
    assert new == ref.new_token_ids


def test_a_late_first_edit_on_a_fresh_model_binds_to_its_step():
    """On a model whose attention sources nnsight has not instrumented yet (no self-check),
    a range that starts after the prefill edits the right steps: the same tokens and readings
    as on the checked handle."""
    fresh = wrap_model(
        tiny_model.__wrapped__("qwen2"), tiny_tokenizer(), name="fresh", attn="eager",
        check=False,
    )  # fmt: skip
    out = []
    for handle in (tiny_handle("qwen2"), fresh):
        ids = torch.tensor([PROMPTS[0]])
        kw = {"max_new_tokens": N, "min_new_tokens": N, "do_sample": False, "pad_token_id": 0}
        with torch.inference_mode(), handle.nn.generate(ids, **kw) as tracer:
            edited = plip_nn.intervene(
                handle, [_edit(Scale(factor=3.0))], steps=tracer.iter[3:N],
                source_policy="continuation",
            )  # fmt: skip
            for _step in edited:
                pass
            seqs = tracer.result.save()
        out.append((seqs.tolist(), edited.value))
    assert out[0][0] == out[1][0]
    assert out[0][1].keys() == out[1][1].keys() and {k[2] for k in out[1][1]} == {3, 4, 5}
    for key, reading in out[0][1].items():
        assert out[1][1][key].mass_after == pytest.approx(reading.mass_after, abs=1e-6)


@pytest.mark.parametrize("op", OPS[:2], ids=OP_IDS[:2])
def test_mask_route_on_sdpa_equals_generate_and_recompute(op):
    """SDPA (route auto -> the additive-mask route) with the eager model's weights: the same
    tokens as plip_nn.generate and the recompute on that handle, and as on eager."""
    sdpa = wrap_model(
        copy.deepcopy(tiny_model("qwen2")), tiny_tokenizer(), name="qwen2-auto", attn="auto"
    )
    assert sdpa.attn_implementation != "eager"
    edit = _edit(op)
    reqs = [_request(i, edit) for i in range(len(PROMPTS))]
    kw = {"max_new_tokens": N, "source_policy": "continuation"}
    refs = generate(sdpa, reqs, batch_size=3, **kw)
    got, edited, _ = user_generate(sdpa, PROMPTS, [edit], source_policy="continuation")
    eager, _, _ = user_generate(tiny_handle("qwen2"), PROMPTS, [edit], source_policy="continuation")
    for req, mine, ref, on_eager in zip(reqs, got, refs, eager, strict=True):
        recompute = generate_recompute(sdpa, req, **kw)
        assert mine == ref.new_token_ids == recompute == on_eager, req.key
    _check_readings(edited, [edit], "continuation", 3)
    with pytest.raises(EditSpecError, match="SetValue"):
        user_generate(sdpa, PROMPTS, [_edit(SetValue(value=0.1))])
