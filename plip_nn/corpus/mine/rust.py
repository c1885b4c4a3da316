"""Rust pairs: a function or ``impl`` method and the first ``#[test]`` that calls it.

Parsed with tree-sitter-rust (never compiled or run). Definitions are the file's top-level
``fn`` items and the methods of its top-level ``impl`` blocks; tests are ``#[test]`` functions at
the top level or in a ``#[cfg(test)]``/``tests`` module. A call matches a definition by its name
and its form: a top-level ``fn`` is called bare or by a path (``f(..)``, ``super::f(..)``), a
method with a receiver as ``x.f(..)`` or ``Type::f(..)``, an associated function as
``Type::f(..)``. The sample is the function (a method inside its ``impl`` header), a blank line,
and the test dedented out of its module: ``use super::*`` and the module wrapper are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from plip_nn.codesrc import RUST_GENERATION_SUFFIX, has_error, rust_calls, rust_parser, walk
from plip_nn.corpus.mine.model import Candidate, Drop
from plip_nn.corpus.rust import outer_attributes as _attrs

__all__ = ["rust_candidates"]


@dataclass(frozen=True)
class _Def:
    name: str
    node: Any
    impl: Any | None  # the impl_item of a method
    impl_type: str | None
    has_self: bool


def _text(data: bytes, node: Any) -> str:
    return data[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _attr_names(data: bytes, node: Any) -> list[str]:
    return ["".join(_text(data, a)[2:-1].split()) for a in _attrs(node)]


def _is_test(data: bytes, fn: Any) -> bool:
    return "test" in _attr_names(data, fn)


def _is_test_mod(data: bytes, mod: Any) -> bool:
    name = mod.child_by_field_name("name")
    return "cfg(test)" in _attr_names(data, mod) or (
        name is not None and _text(data, name) == "tests"
    )


def _items(root: Any, data: bytes) -> tuple[list[_Def], list[Any]]:
    """(definitions, tests) of a file, in source order."""
    defs: list[_Def] = []
    tests: list[Any] = []
    for node in root.children:
        if node.type == "function_item":
            if _is_test(data, node):
                tests.append(node)
            else:
                name = _text(data, node.child_by_field_name("name"))
                defs.append(_Def(name, node, None, None, False))
        elif node.type == "impl_item" and node.child_by_field_name("trait") is None:
            ty = node.child_by_field_name("type")
            body = node.child_by_field_name("body")
            if ty is None or body is None:
                continue
            base = ty.child_by_field_name("type") if ty.type == "generic_type" else ty
            for m in body.named_children:
                if m.type != "function_item":
                    continue
                params = m.child_by_field_name("parameters")
                has_self = params is not None and any(
                    p.type == "self_parameter" for p in params.named_children
                )
                name = _text(data, m.child_by_field_name("name"))
                defs.append(_Def(name, m, node, _text(data, base or ty), has_self))
        elif node.type == "mod_item" and _is_test_mod(data, node):
            body = node.child_by_field_name("body")
            for m in body.named_children if body is not None else []:
                if m.type == "function_item" and _is_test(data, m):
                    tests.append(m)
    return defs, tests


def _path_before(data: bytes, start: int) -> str:
    """The ``a::b::`` path written right before the byte ``start`` (empty when none)."""
    i = start
    while i > 0 and (chr(data[i - 1]).isalnum() or chr(data[i - 1]) in "_:<>"):
        i -= 1
    return data[i:start].decode("utf-8", "replace")


#: Method names that std types share: a ``x.len()`` in a test is not evidence that it calls the
#: file's own ``len`` (the receiver's type is unknown without compiling); such names match a
#: receiver call only when the test is named after them (``len``, ``test_len``, ``len_works``).
_STD_METHODS = frozenset(
    [
        "len",
        "is_empty",
        "new",
        "default",
        "get",
        "get_mut",
        "insert",
        "remove",
        "push",
        "pop",
        "iter",
        "iter_mut",
        "into_iter",
        "next",
        "clone",
        "to_string",
        "to_owned",
        "into",
        "from",
        "as_ref",
        "as_mut",
        "as_str",
        "as_slice",
        "unwrap",
        "expect",
        "map",
        "contains",
        "clear",
        "extend",
        "append",
        "first",
        "last",
        "sort",
        "keys",
        "values",
        "entry",
        "parse",
        "fmt",
        "eq",
        "cmp",
        "partial_cmp",
        "hash",
        "write",
        "read",
        "flush",
        "split",
        "join",
        "trim",
        "chars",
        "bytes",
        "lines",
        "find",
        "replace",
        "take",
        "skip",
        "collect",
        "count",
        "min",
        "max",
        "sum",
        "rev",
        "zip",
        "chain",
        "filter",
        "fold",
        "any",
        "all",
        "position",
        "with_capacity",
        "capacity",
        "reserve",
        "truncate",
        "drain",
        "retain",
        "dedup",
        "swap",
        "set",
        "reset",
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "abs",
        "is_some",
        "is_none",
        "ok",
        "err",
        "and_then",
        "or_else",
        "unwrap_or",
        "len_utf8",
        "to_vec",
        "finish",
        "build",
        "run",
        "start",
        "stop",
    ]
)


def _matches(d: _Def, call: Any, data: bytes) -> bool:
    path = _path_before(data, call.start_byte)
    owner = path.removesuffix("::").rsplit("::", 1)[-1].split("<")[0] if path else ""
    if d.impl is None:
        return not call.method and (
            not path or owner in ("super", "crate", "self") or owner.islower()
        )
    if call.method:
        return d.has_self and d.name not in _STD_METHODS
    return owner == d.impl_type


def _named(d: _Def, call: Any, test_name: str) -> bool:
    """A receiver call of a common method name counts when the test is named after it."""
    bare = test_name.removeprefix("test_").removesuffix("_test").removesuffix("_works")
    return bool(call.method and d.has_self and bare == d.name)


def _block(data: bytes, node: Any, first: Any | None = None) -> str:
    """The node's text from its first line (with ``first`` attributes), dedented by the first
    line's indent; lines that start inside a string literal keep every character."""
    start = (first or node).start_byte
    line_start = data.rfind(b"\n", 0, start) + 1
    indent = data[line_start:start]
    if indent.strip():
        indent = b""
    strings = [
        (n.start_byte, n.end_byte)
        for n in walk(node)
        if n.type in ("string_literal", "raw_string_literal")
    ]
    out, pos = [], line_start
    for line in data[line_start : node.end_byte].split(b"\n"):
        inside = any(a < pos < b for a, b in strings)
        out.append(line if inside or not line.startswith(indent) else line[len(indent) :])
        pos += len(line) + 1
    return b"\n".join(out).decode("utf-8", "replace")


def _function_text(d: _Def, data: bytes) -> str:
    if d.impl is None:
        return _block(data, d.node)
    body = d.impl.child_by_field_name("body")
    header = data[d.impl.start_byte : body.start_byte].decode("utf-8", "replace").rstrip()
    line_start = data.rfind(b"\n", 0, d.node.start_byte) + 1
    method = data[line_start : d.node.end_byte].decode("utf-8", "replace")  # as indented there
    return f"{header} {{\n{method}\n}}"


def _n_params(node: Any) -> int:
    params = node.child_by_field_name("parameters")
    if params is None:
        return 0
    skip = ("line_comment", "block_comment", "attribute_item")
    return sum(1 for p in params.named_children if p.type not in skip)


def _pair(d: _Def, test: Any, data: bytes) -> Candidate | Drop:
    line = d.node.start_point[0] + 1
    if has_error(d.node) or has_error(test):
        return Drop("parse_error", line, d.name)
    attrs = _attrs(test)
    test_text = _block(data, test, attrs[0] if attrs else None)
    fn_text = _function_text(d, data)
    code = f"{fn_text}\n\n{test_text}\n"
    if has_error(rust_parser().parse(code.encode("utf-8")).root_node):
        return Drop("unparsable", line, d.name)
    marker = len(fn_text) + 2 + test_text.index("#[test]")
    call = next((ln.strip() for ln in test_text.splitlines() if d.name in ln), "")
    return Candidate(
        name=d.name,
        code=code,
        line=line,
        n_params=_n_params(d.node),
        marker_char_pos=marker,
        call_line=call,
        prompt=fn_text.rstrip() + "\n\n" + RUST_GENERATION_SUFFIX,
    )


def rust_candidates(text: str) -> Iterator[Candidate | Drop]:
    """One candidate per ``#[test]`` function: its pair, or why it is dropped.

    A test pairs with the first definition it calls (one whose name is part of the test's name
    first); a definition already paired with an earlier test is not paired again.
    """
    data = text.encode("utf-8")
    root = rust_parser().parse(data).root_node
    defs, tests = _items(root, data)
    paired: set[int] = set()
    for test in tests:
        tname = _text(data, test.child_by_field_name("name"))
        body = test.child_by_field_name("body")
        calls = rust_calls(body, data) if body is not None else []
        found: list[_Def] = []
        for call in calls:
            hits = [
                d
                for d in defs
                if d.name == call.name and (_matches(d, call, data) or _named(d, call, tname))
            ]
            if len(hits) > 1:
                hits = [h for h in hits if h.impl is None] or hits
            if len(hits) == 1 and hits[0] not in found:
                found.append(hits[0])
        line = test.start_point[0] + 1
        if not found:
            yield Drop("no_call", line, tname)
            continue
        named = [d for d in found if d.name in tname]
        d = max(named, key=lambda x: len(x.name)) if named else found[0]
        if d.node.start_byte in paired:
            yield Drop("function_already_paired", line, d.name)
            continue
        paired.add(d.node.start_byte)
        yield _pair(d, test, data)
