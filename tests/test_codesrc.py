"""plip_nn.codesrc: markers, prompt endings, tree-sitter helpers, the Rust call finder, trimming.

Expected values are written by hand (positions, names, argument counts) or computed by an
independent reference (a full walk of the tree for ``has_error``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from plip_nn import codesrc
from plip_nn.codesrc import (
    generation_prompt,
    generation_suffix,
    has_error,
    rust_calls,
    rust_parser,
    rust_test_end,
    walk,
)


def _parse(code: str):
    data = code.encode("utf-8")
    return rust_parser().parse(data).root_node, data


@pytest.mark.parametrize(
    "code",
    [
        "fn f(x: i32) -> i32 { x + 1 }\n",
        "fn f(x: i32) -> i32 { x + 1\n",  # MISSING `}`
        "fn f(x: i32) -> i32 { let y = 1 x }\n",  # ERROR
        "fn f( { }\n#[test]\nfn t() { f(1); }\n",
        "fn t() { assert_eq!(add(1, 2), 3) }\nfn g() -> { }\n",
        '#[test]\nfn t() { let s = "unterminated; }\n',
    ],
)
def test_has_error_equals_a_full_walk_for_every_node(code: str) -> None:
    """tree-sitter's own error flag agrees with looking at every node below (the old helper)."""
    root, _ = _parse(code)
    for node in walk(root):
        by_walk = any(n.is_error or n.is_missing for n in walk(node))
        assert has_error(node) == by_walk, (code, node.type, node.start_byte)


def test_walk_is_source_order() -> None:
    root, _ = _parse("fn a() {}\nfn b() { c(); }\n")
    starts = [n.start_byte for n in walk(root)]
    assert starts == sorted(starts)
    assert [n.type for n in walk(root)][:3] == ["source_file", "function_item", "fn"]


def test_rust_calls_by_hand() -> None:
    code = (
        "fn t() {\n"
        "    let v = Vec::<i32>::new();\n"
        "    add(1, /* c */ 2);\n"
        "    x.push(3);\n"
        "    parse::<u8>(s);\n"
        "    assert_eq!(add(mul(2, 3), 4), 10);\n"
        "    let w = vec![get(1); 3];\n"
        '    assert!(w.is_empty(), "{}", fmt(0));\n'
        "}\n"
    )
    root, data = _parse(code)
    calls = rust_calls(root, data)
    got = [(c.name, c.method, c.n_args, c.clean) for c in calls]
    assert got == [
        ("new", False, 0, True),
        ("add", False, 2, True),  # the comment is not an argument
        ("push", True, 1, True),
        ("parse", False, 1, True),
        ("add", False, 2, True),
        ("mul", False, 2, True),
        # `get(1); 3` is no expression list: vec!'s calls come from its tokens, uncounted
        ("get", False, None, False),
        ("is_empty", True, 0, True),
        ("fmt", False, 1, True),
    ]
    for c in calls:  # positions point at the name in the original text, macros included
        assert code[c.start_byte : c.start_byte + len(c.name)] == c.name


def test_rust_calls_in_an_error_subtree_are_not_clean() -> None:
    root, data = _parse("fn t() { add(1, 2 3); add(4, 5); }\n")
    calls = rust_calls(root, data)
    assert [c.name for c in calls] == ["add", "add"]
    assert [c.clean for c in calls] == [False, True]


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("#[test]\nfn t() { a(); }\nfn u() {}", len("#[test]\nfn t() { a(); }")),
        ('#[test]\nfn t() { let s = "}"; }\n', len('#[test]\nfn t() { let s = "}"; }')),
        ("fn t() { let c = '}'; // }\n}\nx", len("fn t() { let c = '}'; // }\n}")),
        ("fn t() { if x { y() } else { z() } } }", len("fn t() { if x { y() } else { z() } }")),
        ("fn t() { let x = {1};", None),  # unclosed: tree-sitter's MISSING `}` does not count
        ("fn t() -> é { 'é' }", len("fn t() -> é { 'é' }")),  # chars, not bytes
        ("no braces here", None),
    ],
)
def test_rust_test_end(text: str, end: int | None) -> None:
    assert rust_test_end(text) == end


def test_generation_prompt_endings() -> None:
    assert generation_suffix("x\n    >>>", "python") == ">>>"
    assert generation_suffix("x\n    >>> ", "python") == ">>> "
    assert generation_suffix("fn f() {}\n#[test]\n", "rust") == "#[test]\n"
    assert generation_suffix("fn f() {}\n#[test]\nfn ", "rust") == "#[test]\nfn "
    assert generation_suffix("fn f() {}\n", "rust") is None
    assert generation_prompt("fn f() {}\n#[test]\nfn ", "rust") == "fn f() {}\n#[test]\n"
    assert generation_prompt("d\n    >>> ", "python") == "d\n    >>>"
    with pytest.raises(ValueError, match=r"must end with '#\[test\]\\n'"):
        generation_prompt("fn f() {}\n", "rust")
    assert codesrc.MARKERS == {"python": ">>>", "rust": "#[test]"}


def test_importing_codesrc_and_plip_nn_loads_no_model_stack() -> None:
    code = (
        "import sys, plip_nn, plip_nn.codesrc\n"
        "assert plip_nn.codesrc.rust_test_end('fn t() {}') == 9\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'nnsight')]\n"
        "assert not bad, bad\n"
        "assert plip_nn.Sample.__module__ == 'plip_nn.corpus.model'\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_of_plip_nn_resolves() -> None:
    import plip_nn

    for name in plip_nn.__all__:
        assert getattr(plip_nn, name).__name__ == name
    assert set(plip_nn.__all__) <= set(dir(plip_nn))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = plip_nn.nope
