"""KV-cached generation with edits equals full recomputation with the accumulated edits."""

import math

import pytest
from archs import tiny_handle

from plip_nn.edits import AttentionEdit, Condition, Knockout, Scale
from plip_nn.generate import GenerationRequest, generate, generate_recompute, marker_token_sequences

PROMPTS = [tuple(range(5, 17)), tuple(range(40, 49))]
N = 10


def _requests(op, markers=()):
    reqs = []
    for i, p in enumerate(PROMPTS):
        cond = Condition(
            name="c",
            edits=(AttentionEdit(layers=(0, 1), sources=(len(p) - 2,), targets=(1, 2, 3), op=op),),
        )
        reqs.append(
            GenerationRequest(
                key=str(i),
                sample_id=f"s{i}",
                input_ids=p,
                condition=cond,
                marker_token_seqs=markers,
            )
        )
    return reqs


@pytest.mark.parametrize("arch", ["qwen2", "gpt2", "gemma2"])
@pytest.mark.parametrize("op", [Knockout(), Scale(factor=4.0)], ids=["knockout", "scale4"])
@pytest.mark.parametrize("policy", ["markers", "continuation"])
def test_kv_cached_equals_recompute(arch, op, policy):
    handle = tiny_handle(arch)
    reqs = _requests(op)
    got = generate(handle, reqs, max_new_tokens=N, source_policy=policy, batch_size=2)
    for res, req in zip(got, reqs, strict=True):
        assert res.new_token_ids == generate_recompute(
            handle, req, max_new_tokens=N, source_policy=policy
        )
        assert len(res.step_levels) == N
        if isinstance(op, Knockout):
            assert res.step_levels[0] == 0.0
        if policy == "continuation":
            assert res.n_edited_steps == N
            assert all(not math.isnan(x) for x in res.step_levels)
        else:
            assert res.n_edited_steps == 1


def test_edits_change_generation():
    handle = tiny_handle("qwen2")
    base = generate(
        handle,
        [
            GenerationRequest(
                key="b", sample_id="b", input_ids=PROMPTS[0], condition=Condition(name="baseline")
            )
        ],
        max_new_tokens=N,
    )
    ko = generate(handle, _requests(Knockout())[:1], max_new_tokens=N, source_policy="continuation")
    assert base[0].new_token_ids != ko[0].new_token_ids
    assert all(math.isnan(x) for x in base[0].step_levels)


def test_generated_marker_becomes_source():
    handle = tiny_handle("gpt2")
    base = generate(
        handle,
        [
            GenerationRequest(
                key="b", sample_id="b", input_ids=PROMPTS[0], condition=Condition(name="baseline")
            )
        ],
        max_new_tokens=N,
    )
    marker = (base[0].new_token_ids[3],)  # a token the model will generate
    [req] = _requests(Scale(factor=3.0), markers=(marker,))[:1]
    [res] = generate(handle, [req], max_new_tokens=N, source_policy="markers")
    assert res.n_edited_steps >= 2  # the prompt marker plus at least one generated marker
    assert res.new_token_ids == generate_recompute(
        handle, req, max_new_tokens=N, source_policy="markers"
    )


def test_remote_local_generation_matches_local():
    handle = tiny_handle("qwen2")
    reqs = _requests(Knockout())
    a = generate(handle, reqs, max_new_tokens=6, source_policy="continuation", batch_size=2)
    b = generate(
        handle, reqs, max_new_tokens=6, source_policy="continuation", batch_size=2, remote="local"
    )
    assert [r.new_token_ids for r in a] == [r.new_token_ids for r in b]


def test_marker_token_sequences_cover_marker():
    from archs import tiny_tokenizer

    tok = tiny_tokenizer()
    seqs = marker_token_sequences(tok, ">>>")
    assert seqs
    for seq in seqs:
        assert ">>>" in tok.decode(list(seq)) or ">" in tok.decode(list(seq))
