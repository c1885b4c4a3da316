"""Generation stops once the first test is complete (issue 29): the rule is exact (the score of
the text at the stop equals that of the whole generation) and the engine's early stop changes
no token before it, in no row of the batch."""

from __future__ import annotations

import pytest

from analysis.preservation import first_test_complete, score, scored_test
from experiments.generate import StopAtFirstTest
from plip_nn.corpus import load_corpus
from plip_nn.edits import AttentionEdit, Condition, EditSpecError, Knockout
from plip_nn.generate import GenerationRequest, generate, generate_recompute
from plip_nn.models import load_model

PY = 'def add(a, b):\n    """Add two numbers.\n\n    >>> '
RS = "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n"


@pytest.mark.parametrize(
    ("prompt", "text", "complete"),
    [
        (PY, "add(2, 3)", False),  # the example's line is not even complete
        (PY, "add(2, 3)\n", False),  # no expected output yet
        (PY, "add(2, 3)\n    5", False),  # the output line may go on
        (PY, "add(2, 3)\n    5\n", False),  # the output may have more lines
        (PY, "add(2, 3)\n    5\n    6\n", False),
        (PY, "add(2, 3)\n    5\n\n", True),  # a blank line ends the output
        (PY, "add(2, 3)\n    5\n    >>> add(1, 1)", False),  # that line is not complete yet
        (PY, "add(2, 3)\n    5\n    >>> add(1, 1)\n", True),  # the next example ends it
        (PY, 'add(2, 3)\n    5\n    """', True),  # the docstring closed
        (PY, "x = add(2, 3)\n    >>> x\n    5\n    >>> ", False),  # setup line, then a test
        (PY, "x = add(2, 3)\n    >>> x\n    5\n    >>> x\n", True),
        (PY, "add(2, 3)\n  5\n", False),  # does not parse (indentation): never complete here
        (RS, "fn test_add() {\n    assert_eq!(add(1, 2), 3);\n", False),
        (RS, "fn test_add() {\n    assert_eq!(add(1, 2), 3);\n}", True),
        (RS, 'fn test_add() {\n    let s = "}";\n', False),  # a brace in a string
        (RS, "fn test_add() {\n    if true { add(1, 2); }\n", False),  # an inner body
    ],
)
def test_first_test_complete_on_hand_written_continuations(prompt, text, complete) -> None:
    language = "python" if prompt is PY else "rust"
    assert first_test_complete(language, prompt, text) is complete
    if complete:  # whatever follows, the scored test is the same
        for more in ("", "    >>> add(9)\n    9\n", " ??? }}} \n  \tbroken\n", '"""\n'):
            assert scored_test(language, prompt, text + more) == scored_test(language, prompt, text)


def test_a_later_example_that_does_not_parse_no_longer_voids_the_first_test() -> None:
    # "only the first test is scored": a broken third line after the first test's output
    # used to make the whole doctest unparseable (valid False)
    kw = dict(function_name="add", arity=2, function_source="def add(a, b):\n    return a + b\n",
              execute="off")  # fmt: skip
    first = score("python", PY, "add(2, 3)\n    5\n\n", **kw)
    broken = score("python", PY, "add(2, 3)\n    5\n\n  >>> add(1\n", **kw)
    assert first.preserved and broken == first
    assert not score("python", PY, "add(2, 3\n  5\n", **kw).valid  # the first test itself


@pytest.fixture(scope="module")
def handle():
    return load_model(None)


def _requests(handle, n: int, stop: bool) -> list[GenerationRequest]:
    corpus = load_corpus(None)
    prompts = [s for lang in ("python", "rust")
               for s in list(corpus.select(language=lang, kind="generation"))[:n]]  # fmt: skip
    out = []
    for s in prompts:
        ids = tuple(handle.tokenizer(s.code, add_special_tokens=False)["input_ids"])
        knock = (AttentionEdit(layers=(0, 1, 2, 3), sources=(len(ids) - 1,),
                               targets=tuple(range(4)), op=Knockout()),)  # fmt: skip
        for name, edits in (("baseline", ()), ("knockout", knock)):
            for seed in (None, 7):
                out.append(GenerationRequest(
                    key=f"{s.id}/{name}/{seed}", sample_id=s.id, input_ids=ids,
                    condition=Condition(name=name, edits=edits), source_policy="continuation",
                    sample_seed=seed, stop=StopAtFirstTest(s.language, s.code) if stop else None,
                    stop_chars=StopAtFirstTest.CHARS if stop else None,
                ))  # fmt: skip
    return out


def test_stopped_rows_are_the_full_generation_cut_at_the_stop_and_score_the_same(handle) -> None:
    n_new = 40
    full = generate(handle, _requests(handle, 6, False), max_new_tokens=n_new, temperature=0.7,
                    batch_size=48)  # fmt: skip
    reqs = _requests(handle, 6, True)
    # rows with and without a stop rule share batches: the unstopped rows are untouched
    mixed = [r if i % 3 else GenerationRequest(**{**r.__dict__, "stop": None, "stop_chars": None})
             for i, r in enumerate(reqs)]  # fmt: skip
    got = generate(handle, mixed, max_new_tokens=n_new, temperature=0.7, batch_size=16)
    stopped = 0
    by_key = {r.key: r for r in reqs}
    for req, g, f in zip(mixed, got, full, strict=True):
        assert g.new_token_ids == f.new_token_ids[: len(g.new_token_ids)]
        assert len(g.step_levels) == len(g.new_token_ids)
        if req.stop is None:
            assert g.new_token_ids == f.new_token_ids and not g.stopped
            continue
        assert g.stopped == (len(g.new_token_ids) < n_new)
        stopped += g.stopped
        lang = "python" if "def " in handle.tokenizer.decode(req.input_ids) else "rust"
        prompt = handle.tokenizer.decode(list(by_key[req.key].input_ids))
        if g.stopped:  # the first token at which the rule holds, and the same scored test
            assert first_test_complete(lang, prompt, g.text)
            assert not first_test_complete(lang, prompt, handle.tokenizer.decode(
                list(g.new_token_ids[:-1])))  # fmt: skip
            assert scored_test(lang, prompt, g.text) == scored_test(lang, prompt, f.text)
        else:
            assert not first_test_complete(lang, prompt, handle.tokenizer.decode(
                list(f.new_token_ids[:-1])))  # fmt: skip
    assert stopped >= len([r for r in mixed if r.stop is not None]) // 3  # it does stop
    # the full recomputation, cut at the stop, for a stopped knockout row
    row = next(i for i, (r, g) in enumerate(zip(mixed, got, strict=True))
               if g.stopped and r.condition.edits and r.sample_seed is None)  # fmt: skip
    ref = generate_recompute(handle, mixed[row], max_new_tokens=n_new, source_policy="continuation")
    assert got[row].new_token_ids == ref[: len(got[row].new_token_ids)]


def test_a_stop_rule_needs_a_local_run(handle) -> None:
    [req] = _requests(handle, 1, True)[:1]
    with pytest.raises(EditSpecError, match="remote='none'"):
        generate(handle, [req], max_new_tokens=4, remote="local")
