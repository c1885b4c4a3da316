"""The ``to_call`` row policy in generation: every generated row until the test's first call of
the function has been written, or the first test ends.

References: a KV-cached :func:`plip_nn.generate` must equal :func:`generate_recompute` (a full
forward at every step with every row edited so far) token for token, and
``plip_nn.intervene`` under the user's own ``generate`` must equal both. Which steps are
edited is checked against an independent stop rule: a regular expression for the call and
tree-sitter (:func:`plip_nn.codesrc.rust_test_end`) for the end of a Rust test.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from archs import tiny_handle

import plip_nn
from plip_nn import kernels
from plip_nn.codesrc import rust_test_end
from plip_nn.corpus import load_corpus
from plip_nn.edits import AttentionEdit, Condition, EditSpecError, Knockout, Scale
from plip_nn.generate import GenerationRequest, generate, generate_recompute, token_texts
from plip_nn.padding import pad_batch, pad_id

N = 24
PROMPT_IDS = ("pyg_count_vowels", "rsg_count_vowels")  # both write the call within N


@pytest.mark.parametrize(
    ("text", "called"),
    [
        (" add(1, 2)", True),
        ("x.add (1)", True),
        ("Calc::add(1)", True),
        ("add::<i32>(1)", True),
        ("fn test_add() {\n    assert_eq!(add(2, 3), 5);", True),
        ("fn test_add() {\n", False),  # the header names the function but calls nothing
        ("def add(a):", False),
        ("fn add(a: i32)", False),
        (" adder(1)", False),
        (" add_one(1)", False),
        (" add", False),  # not written yet: no "("
        ("let f = add;\n", False),
    ],
)
def test_calls_name(text: str, called: bool) -> None:
    assert kernels.calls_name(text, "add") is called


def test_first_test_ended() -> None:
    assert kernels.first_test_ended(' add(1)\n    3\n    """\n', "python")
    assert not kernels.first_test_ended(" add(1)\n    3\n", "python")
    assert kernels.first_test_ended("fn t() {\n    if x { y(); }\n}\n", "rust")
    assert not kernels.first_test_ended('fn t() {\n    let s = "}";\n    // }\n', "rust")
    assert not kernels.first_test_ended("fn t() {\n    let c = '}';\n", "rust")
    assert not kernels.first_test_ended("fn t()", "rust")


def test_policy_rows_to_call() -> None:
    texts = ["", " add", "(", "1", ")", "fn", " test", "_add", "()", " {", "}"]
    call = ["add", "rust", texts]
    rows = kernels.policy_rows
    assert rows("to_call", [3, 4], 9, 0, [], [], call) == list(range(3, 9))  # the prompt
    assert rows("to_call", [3], 1, 1, [5], [], call) == [0]  # "fn": edited (KV row 0)
    assert rows("to_call", [3], 12, 3, [5, 6, 7], [], call) == [11]  # header: still edited
    assert rows("to_call", [3], 1, 5, [5, 6, 7, 8, 9], [], call) == [0]
    assert rows("to_call", [3], 1, 6, [5, 6, 7, 8, 9, 1], [], call) == [0]  # " add": edited
    assert rows("to_call", [3], 1, 7, [5, 6, 7, 8, 9, 1, 2], [], call) == []  # "(" completes
    assert rows("to_call", [3], 1, 3, [9, 10, 3], [], call) == []  # the body closed
    assert rows("to_call", [], 1, 3, [1], [], call) == []  # no edit, no row


def _expected_steps(text_of, new: tuple[int, ...], name: str, language: str) -> list[int]:
    """The steps ``to_call`` edits, by an independent rule: step 0 (the prompt), then step i
    while the tokens fed so far (``new[:i]``) hold no call of ``name`` and no finished test."""
    call = re.compile(r"(?<![A-Za-z0-9_])(?<!def )(?<!fn )" + re.escape(name) + r"\s*\(")
    steps = [0]
    for i in range(1, len(new)):
        text = text_of(new[:i])
        ended = ('"""' in text) if language == "python" else rust_test_end(text) is not None
        if call.search(text) or ended:
            break
        steps.append(i)
    return steps


@pytest.fixture(scope="module")
def embedded():
    from plip_nn.models import load_model

    return load_model("embedded", device="cpu", dtype="float32", attn="eager")


@pytest.fixture(scope="module")
def prompts(embedded):
    from experiments.study import prepare

    samples = [s for s in load_corpus().samples if s.id in PROMPT_IDS]
    return prepare(embedded, samples)


def _request(p, op) -> GenerationRequest:
    pos = p.positions
    edit = AttentionEdit(
        layers=(0, 1, 2, 3), sources=pos.rows("to_call"), targets=pos.identifier_targets, op=op
    )
    return GenerationRequest(
        key=f"{p.id}/{op}", sample_id=p.id, input_ids=p.input_ids,
        condition=Condition(name="to_call", edits=(edit,)), source_policy="to_call",
        call_name=p.sample.function.name, language=p.language,
    )  # fmt: skip


@pytest.mark.parametrize("op", [Knockout(), Scale(factor=0.5)], ids=["knockout", "scale0.5"])
def test_to_call_kv_cached_equals_recompute_on_the_embedded_model(embedded, prompts, op) -> None:
    reqs = [_request(p, op) for p in prompts]
    got = generate(embedded, reqs, max_new_tokens=N, batch_size=len(reqs))  # left-padded batch
    texts = token_texts(embedded.tokenizer)
    stopped = 0
    for res, req, p in zip(got, reqs, prompts, strict=True):
        ref = generate_recompute(embedded, req, max_new_tokens=N)
        assert res.new_token_ids == ref, p.id
        edited = [i for i, v in enumerate(res.step_levels) if not math.isnan(v)]
        expect = _expected_steps(
            lambda ids: "".join(texts[t] for t in ids),
            res.new_token_ids, p.sample.function.name, p.language,
        )  # fmt: skip
        assert edited == expect, (p.id, res.text)
        assert res.n_edited_steps == len(expect)
        stopped += len(expect) < N
    assert stopped == 2  # the stop is exercised, not only "edit every row"


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_to_call_kv_cached_equals_recompute_on_tiny_models(arch) -> None:
    handle = tiny_handle(arch)
    prompts = [tuple(range(5, 17)), tuple(range(40, 49))]
    reqs = [
        GenerationRequest(
            key=str(i), sample_id=f"s{i}", input_ids=p,
            condition=Condition(name="c", edits=(
                AttentionEdit(layers=(0, 1), sources=(len(p) - 2, len(p) - 1), targets=(1, 2, 3),
                              op=Knockout()),
            )),
            source_policy="to_call", call_name=handle.tokenizer.decode([p[-1]]).strip() or "x",
            language="rust",
        )
        for i, p in enumerate(prompts)
    ]  # fmt: skip
    got = generate(handle, reqs, max_new_tokens=10, batch_size=2)
    for res, req in zip(got, reqs, strict=True):
        assert res.new_token_ids == generate_recompute(handle, req, max_new_tokens=10)


def test_intervene_under_generate_follows_the_same_policy(embedded, prompts) -> None:
    p = next(p for p in prompts if p.id == "rsg_count_vowels")
    req = _request(p, Scale(factor=0.5))
    [ref] = generate(embedded, [req], max_new_tokens=N)
    inputs, offsets = pad_batch([p.input_ids], pad_id(embedded), embedded.device)
    del inputs["position_ids"]
    with (
        torch.inference_mode(),
        embedded.nn.generate(
            inputs, max_new_tokens=N, min_new_tokens=N, do_sample=False,
            pad_token_id=pad_id(embedded),
        ) as tracer,
    ):  # fmt: skip
        edited = plip_nn.intervene(
            embedded, req.condition.edits, steps=tracer.iter[:N], offsets=offsets,
            source_policy="to_call", call_name="count_vowels", language="rust",
        )  # fmt: skip
        for _step in edited:
            pass
        seqs = tracer.result.save()
    width = inputs["input_ids"].shape[1]
    assert tuple(int(t) for t in seqs[0, width:]) == ref.new_token_ids
    steps = sorted(s for s, active in edited.schedule.items() if active[0])
    assert steps == [i for i, v in enumerate(ref.step_levels) if not math.isnan(v)]
    assert len(steps) < N


def test_to_call_needs_the_function() -> None:
    handle = tiny_handle("qwen2")
    edit = AttentionEdit(layers=(0,), sources=(5,), targets=(1,), op=Knockout())
    req = GenerationRequest(
        key="k", sample_id="s1", input_ids=tuple(range(3, 10)),
        condition=Condition(name="c", edits=(edit,)), source_policy="to_call",
    )  # fmt: skip
    with pytest.raises(EditSpecError, match=r"sample 's1'.*call_name="):
        generate(handle, [req], max_new_tokens=2)
    with pytest.raises(EditSpecError, match="language"):
        GenerationRequest(
            key="k", sample_id="s1", input_ids=(1, 2), condition=Condition(name="c"),
            language="go",
        )  # fmt: skip


def test_to_call_under_remote_local_equals_local(embedded, prompts) -> None:
    p = next(p for p in prompts if p.id == "pyg_count_vowels")
    req = _request(p, Scale(factor=0.5))
    [here] = generate(embedded, [req], max_new_tokens=10)
    [local] = generate(embedded, [req], max_new_tokens=10, remote="local")
    assert here.new_token_ids == local.new_token_ids
    assert here.n_edited_steps == local.n_edited_steps < 10
