"""Rust annotation with tree-sitter-rust (conventions in the package doc)."""

from __future__ import annotations

from typing import Any

from plip_nn.codesrc import (
    RUST_BASELINE_MARKER,
    RUST_GENERATION_SUFFIX,
    RUST_TEST_MARKER,
    generation_suffix,
    has_error,
    rust_calls,
    rust_parser,
    walk,
)
from plip_nn.corpus.model import Annotation, AnnotationFailure, CorpusError, FunctionInfo, Kind

__all__ = ["annotate_rust"]


class _RustSource:
    """Rust text parsed with tree-sitter, with byte -> char mapping."""

    def __init__(self, code: str, *, complete: bool = False) -> None:
        self.code = code
        self.data = code.encode("utf-8")
        self.char_of = [0] * (len(self.data) + 1)
        b = 0
        for i, ch in enumerate(code):
            for k in range(len(ch.encode("utf-8"))):
                self.char_of[b + k] = i
            b += len(ch.encode("utf-8"))
        self.char_of[b] = len(code)
        parser = rust_parser()
        self.tree = parser.parse(self.data)
        if complete and has_error(self.tree.root_node):
            # An incomplete program (a prompt that stops inside a function): close open braces
            # at the end, where it changes no position, and keep the first that parses cleanly.
            for k in range(1, 4):
                tree = parser.parse(self.data + b"\n" + b"}" * k)
                if not has_error(tree.root_node):
                    self.tree = tree
                    break

    def text(self, node: Any) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8")

    def char(self, node: Any) -> int:
        return self.char_of[node.start_byte]


def _attr_name(src: _RustSource, attr_item: Any) -> str:
    attr = next((c for c in attr_item.children if c.type == "attribute"), None)
    if attr is None or not attr.children:
        return ""
    return src.text(attr).replace(" ", "")


def outer_attributes(fn: Any) -> list[Any]:
    """Outer attribute items directly before an item (comments in between allowed)."""
    out = []
    prev = fn.prev_sibling
    while prev is not None and prev.type in ("attribute_item", "line_comment", "block_comment"):
        if prev.type == "attribute_item":
            out.append(prev)
        prev = prev.prev_sibling
    return out[::-1]


def _calls(src: _RustSource, node: Any) -> list[str]:
    """Names of the functions/methods called under ``node``, in source order (macros included)."""
    return [c.name for c in rust_calls(node, src.data)]


def _is_test_fn(src: _RustSource, fn: Any) -> Any | None:
    """The ``#[test]`` attribute item of ``fn``, or None."""
    for a in outer_attributes(fn):
        if _attr_name(src, a) == "test":
            return a
    return None


def _functions(src: _RustSource, root: Any) -> list[Any]:
    return [n for n in walk(root) if n.type == "function_item"]


def _bindings(pattern: Any) -> list[Any]:
    """Every name a pattern binds, in source order (struct/enum paths and field names bind none)."""
    if pattern.type in ("identifier", "shorthand_field_identifier"):
        return [pattern]
    found = []
    for i, child in enumerate(pattern.children):
        if pattern.field_name_for_child(i) == "type" or child.type == "field_identifier":
            continue  # `P { .. }` / `Some(..)` paths and `x:` field names bind nothing
        found += _bindings(child)
    return found


def _rust_targets(src: _RustSource, fn: Any) -> tuple[list[int], list[str]]:
    """Target chars (fn, name, params) and parameter spellings of a function_item."""
    kw = next((c for c in fn.children if c.type == "fn"), None)
    name = fn.child_by_field_name("name")
    params = fn.child_by_field_name("parameters")
    if kw is None or name is None or params is None:
        raise AnnotationFailure(f"incomplete function at char {src.char(fn)}")
    positions = [src.char(kw), src.char(name)]
    spellings: list[str] = []
    for p in params.named_children:
        if p.type == "self_parameter":
            nodes = [next(c for c in p.children if c.type == "self")]
            spellings.append("self")
        elif p.type == "parameter":
            pattern = p.child_by_field_name("pattern")
            if pattern is None:
                raise AnnotationFailure(f"parameter without a pattern at char {src.char(p)}")
            # Every bound name is a target; a pattern that binds none (``_``) is one by itself.
            nodes = _bindings(pattern) or [pattern]
            spellings.append(src.text(pattern))
        elif p.type == "variadic_parameter":
            nodes = [p]
            spellings.append(src.text(p))
        else:
            continue  # attributes on parameters, comments
        positions.extend(src.char(n) for n in nodes)
    return positions, spellings


def _doc_blocks(src: _RustSource) -> list[tuple[str, list[int]]]:
    """Consecutive outer ``///`` doc comments: (inner text, char position of each inner char)."""
    blocks: list[tuple[str, list[int]]] = []
    text: list[str] = []
    where: list[int] = []
    last_end = -1
    for n in walk(src.tree.root_node):
        if n.type != "line_comment":
            continue
        doc = next((c for c in n.children if c.type == "doc_comment"), None)
        outer = any(c.type == "outer_doc_comment_marker" for c in n.children)
        if doc is None or not outer:
            continue
        if text and src.data[last_end : n.start_byte].strip():
            blocks.append(("".join(text), where))
            text, where = [], []
        start = src.char(doc)
        piece = src.text(doc)
        text.append(piece)
        where.extend(range(start, start + len(piece)))
        last_end = n.end_byte
    if text:
        blocks.append(("".join(text), where))
    return blocks


def annotate_rust(
    code: str,
    *,
    kind: Kind | None = None,
    function: str | None = None,
    sample_id: str = "?",
) -> Annotation:
    """Find the marker and targets in Rust code.

    Args:
        code: The sample's code.
        kind: ``"test"``, ``"baseline"`` or ``"generation"``; ``None`` infers generation when
            the code ends with a generation ending (``#[test]`` and its line break, or the older
            ``#[test]\\nfn ``; :func:`plip_nn.codesrc.generation_suffix`) and test otherwise.
        function: Name of the function under test, when the default choice is not wanted.
        sample_id: Named in errors.

    Returns:
        The annotation.

    Raises:
        CorpusError: The code cannot be annotated; the message names the sample and why.
    """
    try:
        return _annotate_rust(code, kind, function)
    except AnnotationFailure as exc:
        raise CorpusError(f"sample {sample_id}: cannot annotate Rust {kind or ''}: {exc}") from None


def _annotate_rust(code: str, kind: Kind | None, function: str | None) -> Annotation:
    if kind is None:
        kind = "generation" if generation_suffix(code, "rust") else "test"
    if kind == "generation" and generation_suffix(code, "rust"):
        return _annotate_rust_generation(code, function)
    src = _RustSource(code, complete=True)
    fns = _functions(src, src.tree.root_node)
    defined = [f for f in fns if _is_test_fn(src, f) is None]
    if not defined:
        raise AnnotationFailure("no (non-test) function definition")
    by_name: dict[str, Any] = {}
    for f in defined:
        by_name.setdefault(src.text(f.child_by_field_name("name")), f)
    if kind in ("test", "generation"):
        marker, fn = _rust_test_marker(src, fns, by_name, function)
        pattern = RUST_TEST_MARKER
    elif kind == "baseline":
        fn = _pick_rust(src, defined, function)
        attrs = [
            n
            for n in walk(src.tree.root_node)
            if n.type == "attribute_item" and _attr_name(src, n) not in ("test", "cfg(test)")
        ]
        if not attrs:
            raise AnnotationFailure(
                "no attribute '#[...]' other than #[test]/#[cfg(test)] (a false marker)"
            )
        marker, pattern = src.char(attrs[0]), RUST_BASELINE_MARKER
    else:
        raise AnnotationFailure(f"kind={kind!r} must be 'test', 'baseline' or 'generation'")
    targets, params = _rust_targets(src, fn)
    return Annotation(
        marker_char_pos=marker,
        marker_pattern=pattern,
        target_char_positions=tuple(targets),
        function=FunctionInfo(
            name=src.text(fn.child_by_field_name("name")),
            params=tuple(params),
            arity=len(params),
            source=code,
        ),
    )


def _pick_rust(src: _RustSource, fns: list[Any], name: str | None) -> Any:
    if name is None:
        return fns[0]
    for f in fns:
        if src.text(f.child_by_field_name("name")) == name:
            return f
    names = [src.text(f.child_by_field_name("name")) for f in fns]
    raise AnnotationFailure(f"function {name!r} not found among functions {names}")


def _choose_call(test_name: str, called: list[str], function: str | None) -> str | None:
    if function is not None:
        return function if function in called else None
    if not called:
        return None
    named = [c for c in called if c in test_name]
    return max(named, key=len) if named else called[0]


def _rust_test_marker(
    src: _RustSource, fns: list[Any], by_name: dict[str, Any], function: str | None
) -> tuple[int, Any]:
    """(marker char, tested function) from real tests, else from tests in doc comments."""
    for fn in fns:
        attr = _is_test_fn(src, fn)
        if attr is None:
            continue
        called = [c for c in _calls(src, fn.child_by_field_name("body") or fn) if c in by_name]
        chosen = _choose_call(src.text(fn.child_by_field_name("name")), called, function)
        if chosen is not None:
            return src.char(attr), by_name[chosen]
    for text, where in _doc_blocks(src):
        # Parse from each `#[test]` in the block: the prose around a doc test is not Rust, and a
        # brace or an `fn` in it would otherwise swallow the test into an error node.
        start = text.find(RUST_TEST_MARKER)
        while start >= 0:
            inner = _RustSource(text[start:])
            fn = next((f for f in _functions(inner, inner.tree.root_node)), None)
            attr = _is_test_fn(inner, fn) if fn is not None else None
            if fn is not None and attr is not None and inner.char(attr) == 0:
                body = fn.child_by_field_name("body") or fn
                called = [c for c in _calls(inner, body) if c in by_name]
                test_name = inner.text(fn.child_by_field_name("name"))
                chosen = _choose_call(test_name, called, function)
                if chosen is not None:
                    return where[start], by_name[chosen]
            start = text.find(RUST_TEST_MARKER, start + 1)
    wanted = f"function {function!r}" if function else "a function defined in the sample"
    raise AnnotationFailure(f"no #[test] function calls {wanted}")


def _annotate_rust_generation(code: str, function: str | None) -> Annotation:
    marker = len(code) - len(generation_suffix(code, "rust") or RUST_GENERATION_SUFFIX)
    src = _RustSource(code)
    attr = next(
        (
            n
            for n in src.tree.root_node.children
            if n.type == "attribute_item" and src.char(n) == marker
        ),
        None,
    )
    if attr is None or _attr_name(src, attr) != "test":
        raise AnnotationFailure(
            "the trailing '#[test]' is not a top-level attribute after the function"
        )
    prefix = _RustSource(code[:marker])
    if has_error(prefix.tree.root_node):
        raise AnnotationFailure(
            "the code before the trailing '#[test]' does not parse as complete Rust"
        )
    fns = [f for f in _functions(prefix, prefix.tree.root_node) if _is_test_fn(prefix, f) is None]
    if not fns:
        raise AnnotationFailure("no function before the trailing '#[test]'")
    fn = _pick_rust(prefix, fns, function) if function else max(fns, key=lambda f: f.start_byte)
    targets, params = _rust_targets(prefix, fn)
    return Annotation(
        marker_char_pos=marker,
        marker_pattern=RUST_TEST_MARKER,
        target_char_positions=tuple(targets),
        function=FunctionInfo(
            name=prefix.text(fn.child_by_field_name("name")),
            params=tuple(params),
            arity=len(params),
            source=code[:marker].rstrip() + "\n",
        ),
    )
