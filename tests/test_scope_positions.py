"""Scope positions on real corpora: marker spans, identifier targets, signatures, control pools.

References are independent of ``plip_nn.positions``/``plip_nn.codesrc``: identifiers by regex,
signatures from Python's ``ast`` (the body's first statement) and tree-sitter-rust (the
function's ``body`` field), tokens from the tokenizer's own offsets.
"""

from __future__ import annotations

import ast
import json
import re

import pytest
from sandbox_marks import PLIP_RS, needs_plip_rs

from plip_nn.codesrc import rust_parser, walk
from plip_nn.corpus import load_corpus
from plip_nn.embedded import EMBEDDED_MODEL_DIR
from plip_nn.positions import locate
from plip_nn.scope import (
    Scope,
    ScopeError,
    condition_name,
    function_half,
    parse_condition,
    window_layers,
    windows,
)

UNIVERSAL = PLIP_RS / "attention_samples_universal.json"
needs_plip = needs_plip_rs


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)


def _offsets(tok, code):
    return tok(code, return_offsets_mapping=True)["offset_mapping"]


def _over(offs, a, b):
    return {i for i, (x, y) in enumerate(offs) if y > x and x < b and y > a}


def _signature_end(code: str, language: str, def_char: int) -> int:
    """Char where the function's body starts (independent of codesrc.signature_span)."""
    if language == "python":
        line_starts = [0] + [i + 1 for i, c in enumerate(code) if c == "\n"]
        try:
            tree = ast.parse(code)
        except SyntaxError:  # a generation prompt stops inside its docstring: close it
            tree = ast.parse(code + '"""\n')
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = line_starts[node.lineno - 1] + node.col_offset
                if start <= def_char < start + 6 or code[start:].startswith(
                    "def", def_char - start
                ):
                    body = node.body[0]
                    # the signature ends at its ':' (the line break and indent are not in it)
                    return len(code[: line_starts[body.lineno - 1] + body.col_offset].rstrip())
        raise AssertionError("no function found")
    data = code.encode()
    byte = len(code[:def_char].encode())  # tree-sitter counts bytes, Python strings chars
    tree = rust_parser().parse(data)
    for node in walk(tree.root_node):
        if node.type == "function_item" and node.start_byte <= byte < node.end_byte:
            body = node.child_by_field_name("body")
            return len(data[: body.start_byte + 1].decode())  # the `{` is in the signature
    raise AssertionError("no function found")


def _samples(kinds=("test", "generation")):
    corpus = load_corpus()
    return [
        s
        for k in kinds
        for lang in ("python", "rust")
        for s in corpus.select(language=lang, kind=k)
    ]


def test_marker_span_and_identifiers_on_the_shipped_corpus(tok) -> None:
    multi = 0
    for s in _samples():
        tp = locate(tok, s.code, s.marker_char_pos, s.target_char_positions, sample_id=s.id,
                    marker_pattern=s.marker_pattern, language=s.language)  # fmt: skip
        offs = _offsets(tok, s.code)
        end = s.marker_char_pos + len(s.marker_pattern)
        if s.marker_pattern == "#[test]" and s.code[end : end + 1] == "\n":
            end += 1
        assert tp.marker_span == tuple(sorted(_over(offs, s.marker_char_pos, end))), s.id
        assert tp.source == tp.marker_span[0] and tp.predict_at == tp.marker_span[-1]
        if s.kind == "generation":  # the prompt ends with the marker: it is the prediction row
            assert tp.predict_at == len(tp.input_ids) - 1, s.id
        want = set()
        for c in s.target_char_positions:
            word = re.match(r"\w+", s.code[c:]).group()
            toks = _over(offs, c, c + len(word))
            want |= toks
            # the tokens spell the identifier (with at most surrounding punctuation/space)
            spelled = tok.decode([tp.input_ids[i] for i in sorted(toks)])
            assert word in spelled, (s.id, word, spelled)
            multi += len(toks) > 1 and s.code[c:].startswith(s.function.name)
        assert set(tp.identifier_targets) == want - set(tp.marker_span), s.id
        assert set(tp.targets) <= set(tp.identifier_targets)
    assert multi > 10  # many names are several tokens on the small vocabulary


def test_control_pool_has_no_signature_token(tok) -> None:
    for s in _samples():
        tp = locate(tok, s.code, s.marker_char_pos, s.target_char_positions, sample_id=s.id,
                    marker_pattern=s.marker_pattern, language=s.language)  # fmt: skip
        offs = _offsets(tok, s.code)
        start = min(s.target_char_positions)
        sig = _over(offs, start, _signature_end(s.code, s.language, start))
        for rows in ("marker", "marker_span", "continuation"):
            pool = tp.control_pool(rows)
            assert pool, s.id
            assert not set(pool) & sig, (s.id, rows, sorted(set(pool) & sig))
            assert not set(pool) & set(tp.identifier_targets)
            assert max(pool) < tp.rows(rows)[0]
        assert set(tp.signature) >= sig - set(tp.marker_span), s.id


@needs_plip
def test_identifier_targets_on_plip_rs_samples(tok) -> None:
    data = json.loads(UNIVERSAL.read_text())
    checked = 0
    for key, language in (("python_doctest", "python"), ("rust_test", "rust")):
        for s in data[key]:
            tp = locate(tok, s["code"], s["marker_char_pos"], s["target_char_positions"],
                        sample_id=s["id"], marker_pattern=s["marker_pattern"], language=language)  # fmt: skip
            offs = _offsets(tok, s["code"])
            want = set()
            for c in s["target_char_positions"]:
                word = re.match(r"\w+", s["code"][c:])  # a non-word target char spans itself
                want |= _over(offs, c, c + (len(word.group()) if word else 1))
            assert set(tp.identifier_targets) == want - set(tp.marker_span), s["id"]
            assert len(tp.identifier_targets) >= len(tp.targets)
            checked += 1
    assert checked == 20


def test_scope_names_round_trip() -> None:
    s = Scope("continuation", "identifiers", "w1-3")
    assert s.layer_indices(chosen=2, n_layers=4) == (1, 2, 3) and s.record_layer(2) == 1
    assert Scope("marker", "plip", "L").layer_indices(2, 4) == (2,)
    assert (
        Scope("marker", "plip", "all").record_layer(2) == -1
        and Scope("marker", "plip", "L").is_plip
    )
    name = condition_name("random_control", s, 2)
    assert name == "random_control@continuation/identifiers/w1-3#2"
    assert parse_condition(name).name == name and parse_condition(name).scope == s
    assert parse_condition("baseline").scope is None
    for bad in ("knockout", "knockout@rows/identifiers/L", "x@marker/plip/w3-1"):
        with pytest.raises(ScopeError):
            parse_condition(bad)
    with pytest.raises(ScopeError):
        condition_name("a@b", s)
    assert window_layers("w0-1") == (0, 1)
    assert windows(4, 2, 1) == [(0, 1), (1, 2), (2, 3)]
    assert windows(28, 7, 3)[-1] == tuple(range(21, 28))  # the last window ends at the top


def test_function_halves_are_seeded_and_follow_the_function() -> None:
    ids = [f"py_f{i}" for i in range(40)]
    halves = [function_half(s, 0) for s in ids]
    assert 10 < sum(halves) < 30  # both halves are used
    assert halves == [function_half(s, 0) for s in ids]  # seeded
    assert halves != [function_half(s, 1) for s in ids]
    assert all(function_half(f"pyg_f{i}", 0) == h for i, h in enumerate(halves))
