"""The readout at the call: where a test first calls its function, its token positions, the
``to_call`` rows and ``mentions`` targets, and the gold token's log p read inside the trace.

References, independent of the code under test: hand-found character positions
(``str.index`` on the literal code), the tokenizer's own offset mapping, and a plain HF
forward (``log_softmax`` at the call row), with the knockout done by the hand-written
reference attention of ``tests/reference_attention.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from archs import tiny_handle, tiny_model
from reference_attention import reference_attention

from plip_nn.codesrc import CallNotFoundError, call_char_pos, function_name_at
from plip_nn.corpus import annotate_python, annotate_rust, load_corpus
from plip_nn.edits import AttentionEdit, Condition, Knockout
from plip_nn.embedded import EMBEDDED_MODEL_DIR
from plip_nn.positions import locate
from plip_nn.scope import ROWS, TARGETS, Scope
from plip_nn.trace import Item, run

SHARED = Path(__file__).resolve().parents[2] / "shared" / "plip_rs"
UNIVERSAL = SHARED / "attention_samples_universal.json"
needs_plip = pytest.mark.skipif(
    not UNIVERSAL.exists(), reason=f"PLIP-rs fixture not present at {SHARED}"
)

RUST_HEADER = (
    "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\n#[test]\nfn test_add() {\n"
    "    let x = 2;\n    assert_eq!(add(x, 3), 5);\n}\n"
)
PY_QUALIFIED = (
    "def add(a, b):\n"
    '    """Add a and b; add is pure (not address).\n\n'
    "    >>> x = 2\n"
    "    >>> ops.add(x, 3)\n"
    "    5\n"
    '    """\n'
    "    return a + b\n"
)


def _nth(code: str, needle: str, n: int = 0) -> int:
    pos = -1
    for _ in range(n + 1):
        pos = code.index(needle, pos + 1)
    return pos


# ------------------------------------------------------------------ call position (codesrc)


def test_rust_call_is_in_the_body_not_the_header() -> None:
    marker = RUST_HEADER.index("#[test]")
    pos = call_char_pos(RUST_HEADER, "rust", "add", marker)
    assert pos == RUST_HEADER.index("add(x, 3)")
    assert pos > RUST_HEADER.index("fn test_add") + len("fn test_add")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("    let c = Calc::new();\n    assert_eq!(c.add(1, 2), 3);\n", "add(1, 2)"),
        ("    assert_eq!(Calc::add(1, 2), 3);\n", "add(1, 2)"),
        ("    let v = add::<i32>(1, 2);\n    assert_eq!(v, 3);\n", "add::<i32>"),
        ("    let f = add;\n    assert_eq!(f(1, 2), 3);\n    add(4, 5);\n", "add(4, 5)"),
    ],
    ids=["method", "path", "turbofish", "not-a-call-first"],
)
def test_rust_method_path_and_generic_calls(body: str, needle: str) -> None:
    code = "fn add(a: i32, b: i32) -> i32 { a + b }\n\n#[test]\nfn test_add() {\n" + body + "}\n"
    pos = call_char_pos(code, "rust", "add", code.index("#[test]"))
    assert pos == code.index(needle)


def test_rust_only_the_first_test_counts() -> None:
    code = (
        "fn add(a: i32) -> i32 { a }\n\n#[test]\nfn test_other() {\n    assert!(true);\n}\n\n"
        "#[test]\nfn test_add() {\n    add(1);\n}\n"
    )
    with pytest.raises(CallNotFoundError, match=r"sample rs_x: .*never calls 'add'"):
        call_char_pos(code, "rust", "add", code.index("#[test]"), sample_id="rs_x")


def test_python_qualified_call_in_a_later_example() -> None:
    marker = PY_QUALIFIED.index(">>>")
    pos = call_char_pos(PY_QUALIFIED, "python", "add", marker)
    assert pos == PY_QUALIFIED.index("add(x, 3)")


@pytest.mark.parametrize(
    ("examples", "needle"),
    [
        ('>>> print("add(1)")\n    >>> obj.add(1, 2)\n', "add(1, 2)"),
        (">>> total = (1 +\n    ...          add(1, 2))\n", "add(1, 2)"),
        ('>>> s = "é∂"; add(1, 2)\n', "add(1, 2)"),
        (">>> add(add(1, 2), 3)\n", "add(add"),
    ],
    ids=["string-is-no-call", "continuation-line", "non-ascii-before", "outer-first"],
)
def test_python_call_forms(examples: str, needle: str) -> None:
    code = f'def add(a, b):\n    """Add.\n\n    {examples}    3\n    """\n    return a + b\n'
    pos = call_char_pos(code, "python", "add", code.index(">>>"))
    assert pos == code.index(needle)


def test_no_call_is_a_clear_error() -> None:
    code = 'def add(a, b):\n    """Add.\n\n    >>> x = 1\n    >>> x\n    1\n    """\n'
    with pytest.raises(CallNotFoundError, match=r"sample py_x: its doctest example .*'add'"):
        call_char_pos(code, "python", "add", code.index(">>>"), sample_id="py_x")
    with pytest.raises(ValueError, match="language"):
        call_char_pos(code, "go", "add", 0)


def test_every_corpus_test_sample_has_a_call() -> None:
    counts = {"python": 0, "rust": 0}
    for s in load_corpus().select(kind="test"):
        name = s.function.name
        assert function_name_at(s.code, s.target_char_positions) == name
        pos = call_char_pos(s.code, s.language, name, s.marker_char_pos, sample_id=s.id)
        assert s.code[pos : pos + len(name)] == name, s.id
        assert pos > s.marker_char_pos, s.id
        line = s.code[s.code.rfind("\n", 0, pos) + 1 : pos]
        if s.language == "python":  # inside a doctest example line
            assert line.lstrip().startswith((">>>", "...")), s.id
        else:  # inside the first test's body, past its header
            header = s.code.index("fn ", s.marker_char_pos)
            assert pos > s.code.index("{", header), s.id
        counts[s.language] += 1
    assert counts == {"python": 163, "rust": 160}


@needs_plip
def test_plip_rs_samples_have_calls() -> None:
    data = json.loads(UNIVERSAL.read_text())
    found = {}
    for key, language in (("python_doctest", "python"), ("rust_test", "rust")):
        for s in data[key]:
            code = s["code"]
            name = function_name_at(code, s["target_char_positions"])
            pos = call_char_pos(code, language, name, s["marker_char_pos"], sample_id=s["id"])
            assert code[pos : pos + len(name)] == name
            found[s["id"]] = pos
    assert len(found) == 20
    code = {s["id"]: s["code"] for s in data["rust_test"]}
    # Hand-checked: a bare call statement in a #[should_panic] test, and a `let` binding in a
    # test whose header `fn test_map_values()` spells "map_values(" first (no call).
    assert found["rust_should_panic"] == code["rust_should_panic"].index("divide(10")
    generic = code["rust_generic_complex"]
    assert generic.index("map_values(") == generic.index("test_map_values(") + len("test_")
    assert found["rust_generic_complex"] == generic.index("map_values(vec!")
    assert found["rust_simple_add"] == code["rust_simple_add"].index("add(2, 3)")


# ------------------------------------------------------------------ token positions


def _embedded_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)


def _locate(tok, code: str, language: str, *, call: bool = True):
    annotate = annotate_rust if language == "rust" else annotate_python
    ann = annotate(code, kind="test" if call else "generation")
    pos = None
    if call:
        pos = call_char_pos(code, language, ann.function.name, ann.marker_char_pos)
    return locate(
        tok, code, ann.marker_char_pos, ann.target_char_positions,
        marker_pattern=ann.marker_pattern, language=language, call_char_pos=pos,
    )  # fmt: skip


def _tokens_over(tok, code: str, start: int, end: int) -> set[int]:
    enc = tok(code, return_offsets_mapping=True)
    return {i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start}


def test_rust_call_row_gold_token_to_call_rows_and_mentions() -> None:
    tok = _embedded_tokenizer()
    tp = _locate(tok, RUST_HEADER, "rust")
    enc = tok(RUST_HEADER, return_offsets_mapping=True)
    call = RUST_HEADER.index("add(x, 3)")
    gold = next(i for i, (a, b) in enumerate(enc["offset_mapping"]) if a <= call < b)
    assert tp.call_at == gold - 1 and tp.gold_token == enc["input_ids"][gold]
    assert tp.readout == "call" and tp.readout_at == tp.call_at
    assert tp.predict_at == tp.marker_span[-1] < tp.call_at  # Rust: the call is rows later
    assert tp.rows("to_call") == tuple(range(tp.source, tp.call_at + 1))
    header = RUST_HEADER.index("test_add") + len("test_")
    header_tokens = _tokens_over(tok, RUST_HEADER, header, header + 3)
    assert header_tokens and max(header_tokens) < tp.call_at
    assert set(tp.target_set("mentions")) == set(tp.identifier_targets) | header_tokens
    assert not set(tp.target_set("mentions")) & {gold}  # the call itself is no earlier mention
    # Causally valid groups: the header mention only from the rows after it.
    groups = tp.edges("to_call", "mentions")
    assert groups[0] == (
        tuple(r for r in tp.rows("to_call") if r <= min(header_tokens)),
        tp.identifier_targets,
    )
    for rows, targets in groups:
        assert all(t < r for r in rows for t in targets)
    assert sorted(r for rows, _ in groups for r in rows) == list(tp.rows("to_call"))
    assert tp.edges("marker_span", "identifiers") == ((tp.marker_span, tp.identifier_targets),)
    # A random control never draws a mention.
    assert not set(tp.control_pool("to_call")) & set(tp.mention_targets)


def test_python_mentions_in_the_docstring_and_qualified_call() -> None:
    tok = _embedded_tokenizer()
    tp = _locate(tok, PY_QUALIFIED, "python")
    call = PY_QUALIFIED.index("add(x, 3)")
    enc = tok(PY_QUALIFIED, return_offsets_mapping=True)
    gold = next(i for i, (a, b) in enumerate(enc["offset_mapping"]) if a <= call < b)
    assert tp.call_at == gold - 1
    assert tp.rows("to_call")[-1] == tp.call_at and tp.rows("to_call")[0] == tp.source
    doc = _nth(PY_QUALIFIED, "add", 1)  # "Add a and b; add is pure": the second 'add'
    assert PY_QUALIFIED[doc - 2 : doc] == "; "
    expect = set(tp.identifier_targets) | _tokens_over(tok, PY_QUALIFIED, doc, doc + 3)
    assert set(tp.target_set("mentions")) == expect  # "Add" and "address" are no mentions
    assert max(expect) < tp.source  # all before the marker: one edge group
    assert tp.edges("to_call", "mentions") == ((tp.rows("to_call"), tp.mention_targets),)


def test_generation_prompt_has_no_call_and_to_call_runs_to_the_end() -> None:
    tok = _embedded_tokenizer()
    code = RUST_HEADER[: RUST_HEADER.index("#[test]") + len("#[test]\n")]
    tp = _locate(tok, code, "rust", call=False)
    assert tp.call_at is None and tp.gold_token is None and tp.readout == "after_marker"
    assert tp.rows("to_call") == tuple(range(tp.source, tp.n_tokens)) == tp.rows("continuation")
    assert tp.readout_at == tp.predict_at == tp.n_tokens - 1


def test_scope_names() -> None:
    assert ROWS == ("marker", "marker_span", "to_call", "continuation")
    assert TARGETS == ("plip", "identifiers", "mentions")
    assert Scope.parse("to_call/mentions/L").label == "to_call/mentions/L"
    assert Scope.parse("marker_span/identifiers/all").rows == "marker_span"


def test_corpus_call_rows_on_the_embedded_tokenizer() -> None:
    from experiments.study import prepare

    class _Handle:  # prepare() needs only a tokenizer and a config
        tokenizer = _embedded_tokenizer()
        config = type("C", (), {"max_position_embeddings": 1024})()

    preps = prepare(_Handle(), load_corpus().select(kind="test"))  # type: ignore[arg-type]
    assert len(preps) == 323
    for p in preps:
        tp = p.positions
        assert tp.call_at is not None, p.id
        enc = _Handle.tokenizer(p.text, return_offsets_mapping=True)
        a, b = enc["offset_mapping"][tp.call_at + 1]
        name = p.sample.function.name
        call = call_char_pos(p.text, p.language, name, p.sample.marker_char_pos)
        assert a <= call < b, p.id
        if p.language == "rust":  # `fn test_...() {` and more come first
            assert tp.call_at > tp.predict_at + 3, p.id
        else:  # the marker's last token, or a later example's
            assert tp.call_at >= tp.predict_at, p.id


# ------------------------------------------------------------------ the readout in the trace


def _reference_logp(model, ids, row, knock=None):
    with torch.no_grad(), reference_attention(model, knock=knock):
        logits = model(torch.tensor([ids])).logits[0, row].double()
    return torch.log_softmax(logits, -1)


def _check_readout(handle, reference_model, tp, *, layers, tol) -> None:
    """The trace's gold readout against ``reference_model`` (the same weights as a plain HF
    model: the reference attention is swapped into its own modeling module)."""
    ids = tp.input_ids
    edit = AttentionEdit(
        layers=layers, sources=tp.rows("to_call"), targets=tp.identifier_targets, op=Knockout()
    )
    other = tuple(ids[:-3])  # another prompt in the batch: padding shifts the rows
    items = [
        Item(key="b", sample_id="s", input_ids=ids, condition=Condition(name="baseline"),
             predict_at=tp.call_at, gold_token=tp.gold_token),
        Item(key="k", sample_id="s", input_ids=ids, condition=Condition(name="ko", edits=(edit,)),
             predict_at=tp.call_at, gold_token=tp.gold_token),
        Item(key="o", sample_id="o", input_ids=other, condition=Condition(name="ko", edits=(edit,)),
             predict_at=tp.call_at, gold_token=tp.gold_token),
        Item(key="n", sample_id="s", input_ids=ids, condition=Condition(name="baseline")),
    ]  # fmt: skip
    base, ko, _, plain = run(handle, items, batch_size=4)
    ref_b = _reference_logp(reference_model, ids, tp.call_at)
    knock = {lay: [(0, s, t) for s in edit.sources for t in edit.targets] for lay in layers}
    ref_k = _reference_logp(reference_model, ids, tp.call_at, knock)
    g = tp.gold_token
    for res in (base, ko):
        assert res.gold_token == g
        assert res.logp_gold_baseline == pytest.approx(float(ref_b[g]), abs=tol)
        assert res.rank_gold_baseline == int((ref_b > ref_b[g]).sum())
        assert res.p_top1_baseline == pytest.approx(float(ref_b.max().exp()), abs=tol)
    assert base.logp_gold_condition == base.logp_gold_baseline and base.dlogp_gold == 0.0
    assert ko.logp_gold_condition == pytest.approx(float(ref_k[g]), abs=tol)
    assert ko.rank_gold_condition == int((ref_k > ref_k[g]).sum())
    assert ko.dlogp_gold == pytest.approx(float(ref_k[g] - ref_b[g]), abs=2 * tol)
    assert abs(ko.dlogp_gold) > 10 * tol  # the knockout moves the call's prediction
    # Without a gold token: NaN / -1, and the readout is at the last token.
    assert math.isnan(plain.logp_gold_baseline) and plain.rank_gold_condition == -1
    assert plain.gold_token == -1


def test_gold_logp_equals_a_plain_forward_on_a_tiny_random_model() -> None:
    handle = tiny_handle("qwen2")
    tp = _locate(handle.tokenizer, RUST_HEADER, "rust")
    _check_readout(handle, tiny_model("qwen2"), tp, layers=(0, 1), tol=1e-5)


@pytest.fixture(scope="module")
def embedded():
    from plip_nn.models import load_model

    return load_model("embedded", device="cpu", dtype="float32", attn="eager")


def test_gold_logp_equals_a_plain_forward_on_the_embedded_model(embedded) -> None:
    from transformers import AutoModelForCausalLM

    from experiments.study import prepare

    plain = AutoModelForCausalLM.from_pretrained(
        EMBEDDED_MODEL_DIR, attn_implementation="eager", dtype=torch.float32
    ).eval()
    [p] = prepare(embedded, [s for s in load_corpus().select(kind="test") if s.id == "rs_clamp"])
    _check_readout(embedded, plain, p.positions, layers=(0, 1, 2, 3), tol=1e-4)


def test_gold_token_is_checked() -> None:
    handle = tiny_handle("qwen2")
    with pytest.raises(Exception, match="gold_token=-2"):
        Item(key="x", sample_id="x", input_ids=(1, 2, 3), condition=Condition(name="baseline"),
             gold_token=-2)  # fmt: skip
    item = Item(key="x", sample_id="x", input_ids=(1, 2, 3), condition=Condition(name="b"),
                gold_token=10_000)  # fmt: skip
    with pytest.raises(Exception, match="outside the model's vocabulary"):
        run(handle, [item])


def test_gold_readout_under_remote_local_equals_local() -> None:
    handle = tiny_handle("qwen2")
    tp = _locate(handle.tokenizer, RUST_HEADER, "rust")
    edit = AttentionEdit(
        layers=(0, 1), sources=tp.rows("to_call"), targets=tp.identifier_targets, op=Knockout()
    )
    items = [
        Item(key=k, sample_id="s", input_ids=tp.input_ids, condition=c, predict_at=tp.call_at,
             gold_token=tp.gold_token)
        for k, c in (("b", Condition(name="baseline")), ("k", Condition(name="ko", edits=(edit,))))
    ]  # fmt: skip
    here = run(handle, items, batch_size=2)
    local = run(handle, items, batch_size=2, remote="local")
    for a, b in zip(here, local, strict=True):
        assert (a.logp_gold_baseline, a.logp_gold_condition, a.rank_gold_condition) == (
            b.logp_gold_baseline, b.logp_gold_condition, b.rank_gold_condition,
        )  # fmt: skip
        assert a.p_top1_baseline == b.p_top1_baseline
    assert here[1].dlogp_gold != 0.0


def test_a_test_sample_without_a_call_is_a_config_error() -> None:
    from dataclasses import replace

    from experiments.study import ConfigError, prepare

    class _Handle:
        tokenizer = _embedded_tokenizer()
        config = type("C", (), {"max_position_embeddings": 1024})()

    [s] = [s for s in load_corpus().select(kind="test") if s.id == "py_clamp"]
    code = s.code.replace("clamp_between(15, 0, 10)", "print_between(15, 0, 10)").replace(
        "clamp_between(-3, 0, 10)", "print_between(-3, 0, 10)"
    )
    assert len(code) == len(s.code)
    with pytest.raises(ConfigError, match=r"sample py_clamp: .*never calls 'clamp_between'"):
        prepare(_Handle(), [replace(s, code=code)])  # type: ignore[arg-type]
