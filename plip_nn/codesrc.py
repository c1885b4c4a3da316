"""Code-source knowledge shared by the corpus, generation and preservation scoring.

One home for: the marker strings, the generation-prompt endings, the tree-sitter-rust parser
and its helpers, the Rust call finder, and where a generated Rust test ends. Importing this
module loads neither torch nor a model, so :mod:`analysis` uses it too.

Prompt convention (docs/CONTRACT.md, "Prompts"): a generation prompt ends right after the
marker, ``>>>`` for Python and ``#[test]`` plus its line break for Rust. The older endings
(``>>> `` and ``#[test]\\nfn ``) still load and are cut back by :func:`generation_prompt`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = [
    "LEGACY_GENERATION_SUFFIX",
    "MARKERS",
    "PY_GENERATION_SUFFIX",
    "PY_MARKER",
    "RUST_BASELINE_MARKER",
    "RUST_GENERATION_SUFFIX",
    "RUST_TEST_MARKER",
    "CallNotFoundError",
    "RustCall",
    "call_char_pos",
    "function_name_at",
    "generation_prompt",
    "generation_suffix",
    "has_error",
    "identifier_span",
    "leaves",
    "marker_span_chars",
    "rust_calls",
    "rust_parser",
    "rust_test_end",
    "signature_span",
    "walk",
]

PY_MARKER = ">>>"
RUST_TEST_MARKER = "#[test]"
RUST_BASELINE_MARKER = "#["
#: Language -> its test marker (the source of every edit).
MARKERS: dict[str, str] = {"python": PY_MARKER, "rust": RUST_TEST_MARKER}
# The marker token stays the prompt's last token; the model writes the space-prefixed name
# (``>>> name(``) or ``fn`` itself, with the tokens it saw after ``def``/``fn``.
PY_GENERATION_SUFFIX = PY_MARKER
RUST_GENERATION_SUFFIX = RUST_TEST_MARKER + "\n"
#: The older prompt endings (a trailing space / ``fn ``): still accepted, cut back to the rule.
LEGACY_GENERATION_SUFFIX: dict[str, str] = {"python": ">>> ", "rust": "#[test]\nfn "}
_SUFFIX = {"python": PY_GENERATION_SUFFIX, "rust": RUST_GENERATION_SUFFIX}


def generation_suffix(code: str, language: str) -> str | None:
    """The generation-prompt ending that ``code`` has (the rule's or the legacy one), or None."""
    for suffix in (LEGACY_GENERATION_SUFFIX[language], _SUFFIX[language]):
        if code.endswith(suffix):
            return suffix
    return None


def generation_prompt(code: str, language: str) -> str:
    """``code`` cut back to the prompt rule: it ends right after the marker.

    Raises:
        ValueError: ``code`` does not end with a generation marker of ``language``.
    """
    suffix = generation_suffix(code, language)
    if suffix is None:
        raise ValueError(
            f"a {language} generation prompt must end with {_SUFFIX[language]!r}; "
            f"it ends with {code[-16:]!r}"
        )
    return code[: len(code) - len(suffix)] + _SUFFIX[language]


# --------------------------------------------------------------------------------------------
# Character spans of the marker, the identifiers and the signature (what the scopes edit)
# --------------------------------------------------------------------------------------------


def _ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def identifier_span(code: str, start: int) -> tuple[int, int]:
    """``[start, end)`` of the identifier that begins at ``start`` (``def``, a name, a param).

    Target characters are the first characters of identifiers (docs/CONTRACT.md, "Corpus
    annotation"); the identifier runs while characters are letters, digits or ``_``. A
    character that is not one (an odd PLIP-rs target) spans itself.
    """
    if not 0 <= start < len(code):
        raise ValueError(f"identifier start {start} is outside the code (length {len(code)})")
    end = start
    while end < len(code) and _ident_char(code[end]):
        end += 1
    return start, max(end, start + 1)


def marker_span_chars(code: str, start: int, pattern: str) -> tuple[int, int]:
    """``[start, end)`` of the marker text: the pattern, and for ``#[test]`` its line break."""
    end = start + len(pattern)
    if code[start:end] != pattern:
        raise ValueError(f"marker {pattern!r} is not at char {start} (found {code[start:end]!r})")
    if pattern == RUST_TEST_MARKER and code[end : end + 1] == "\n":
        end += 1
    return start, end


_OPEN, _CLOSE = "([{", ")]}"


def signature_span(code: str, start: int, language: str) -> tuple[int, int]:
    """``[start, end)`` of a function signature that begins at ``start`` (``def``/``fn``).

    The signature runs over the parameter list to the ``:`` (Python) or the ``{``/``;``
    (Rust) that follows it outside brackets and strings, both included. Without a parameter
    list (not a function), it is the identifier at ``start``.
    """
    if language not in ("python", "rust"):
        raise ValueError(f"language must be 'python' or 'rust'; got {language!r}")
    paren = code.find("(", start)
    if paren < 0:
        return identifier_span(code, start)
    ends = ":" if language == "python" else "{;"
    depth, i, quote = 0, paren, ""
    while i < len(code):
        c = code[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'" and (language == "python" or c == '"'):
            quote = c
        elif depth == 0 and c in ends:
            return start, i + 1
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        i += 1
    return start, len(code)


# --------------------------------------------------------------------------------------------
# tree-sitter-rust
# --------------------------------------------------------------------------------------------


def rust_parser() -> Any:
    """The tree-sitter parser for Rust (one per thread: a parser is not shared across
    threads; tree-sitter is imported on first use)."""
    return _rust_parser(threading.get_ident())


@cache
def _rust_parser(thread: int) -> Any:
    import tree_sitter
    import tree_sitter_rust

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_rust.language()))


def walk(node: Any) -> Iterator[Any]:
    """Every node under ``node`` (itself included) in pre-order, which is source order."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def leaves(node: Any) -> Iterator[Any]:
    """The tokens (childless nodes) under ``node`` in source order."""
    return (n for n in walk(node) if n.child_count == 0)


def has_error(node: Any) -> bool:
    """Whether ``node``'s subtree holds a parse error: an ERROR node or a MISSING token.

    tree-sitter's ``has_error`` counts both for every node above them; ``is_missing`` covers a
    MISSING token asked about directly.
    """
    return bool(node.has_error or node.is_missing)


@dataclass(frozen=True, kw_only=True)
class RustCall:
    """One call found in Rust code.

    Attributes:
        name: The called name: ``f`` in ``f(..)``, ``T::f(..)``, ``f::<T>(..)`` and ``x.f(..)``.
        start_byte: Byte offset of ``name`` in the parsed text.
        method: Called on a receiver (``x.f(..)``).
        n_args: Arguments passed (comments not counted); None when the call was found in macro
            tokens that do not parse as expressions (its arguments cannot be counted).
        clean: The call's own subtree parses without error.
    """

    name: str
    start_byte: int
    method: bool
    n_args: int | None
    clean: bool


def _callee(func: Any) -> tuple[Any | None, bool]:
    """(name node, is a method call with a receiver) of a call_expression's function node."""
    while func is not None and func.type == "generic_function":
        func = func.child_by_field_name("function")
    if func is None:
        return None, False
    if func.type == "identifier":
        return func, False
    if func.type == "scoped_identifier":
        return func.child_by_field_name("name"), False
    if func.type == "field_expression":
        return func.child_by_field_name("field"), True
    return None, False


def _n_args(args: Any) -> int:
    comments = sum(1 for c in args.named_children if c.type in ("line_comment", "block_comment"))
    return args.named_child_count - comments


def _skip_turbofish(kids: list[Any], j: int) -> int:
    """Index after a ``::<...>`` that starts at ``kids[j]`` (``j`` itself if there is none)."""
    if j + 1 < len(kids) and kids[j].type == "::" and kids[j + 1].type == "<":
        depth = 0
        for k in range(j + 1, len(kids)):
            depth += {"<": 1, ">": -1}.get(kids[k].type, 0)
            if depth == 0:
                return k + 1
    return j


def _token_calls(tt: Any, source: bytes, offset: int) -> Iterator[RustCall]:
    """Calls in macro tokens that are not expressions: ``name`` then a ``(...)`` token tree."""
    for n in walk(tt):
        if n.type != "token_tree":
            continue
        kids = n.children
        for k, a in enumerate(kids):
            if a.type != "identifier":
                continue
            j = _skip_turbofish(kids, k + 1)
            b = kids[j] if j < len(kids) else None
            if b is not None and b.type == "token_tree" and b.children[0].type == "(":
                name = source[a.start_byte : a.end_byte].decode("utf-8", "replace")
                yield RustCall(
                    name=name,
                    start_byte=a.start_byte + offset,
                    method=False,
                    n_args=None,
                    clean=False,
                )


_WRAP = b"fn __plip() { let _ = ("


def _calls_in(root: Any, source: bytes, offset: int) -> Iterator[RustCall]:
    for node in walk(root):
        if node.type == "call_expression":
            name, method = _callee(node.child_by_field_name("function"))
            args = node.child_by_field_name("arguments")
            if name is None or args is None:
                continue
            yield RustCall(
                name=source[name.start_byte : name.end_byte].decode("utf-8", "replace"),
                start_byte=name.start_byte + offset,
                method=method,
                n_args=_n_args(args),
                clean=not has_error(node),
            )
        elif node.type == "macro_invocation":
            tt = next((c for c in node.children if c.type == "token_tree"), None)
            if tt is None or tt.end_byte - tt.start_byte < 2:
                continue
            # Macro arguments are token trees to tree-sitter: re-parse the comma-separated
            # arguments as a tuple of expressions to find calls and count their arguments.
            wrapped = _WRAP + source[tt.start_byte + 1 : tt.end_byte - 1] + b",); }"
            sub = rust_parser().parse(wrapped)
            if not has_error(sub.root_node):
                shift = offset + tt.start_byte + 1 - len(_WRAP)
                yield from _calls_in(sub.root_node, wrapped, shift)
            else:
                yield from _token_calls(tt, source, offset)


def rust_calls(root: Any, source: bytes) -> list[RustCall]:
    """Every call under ``root`` in source order, macro arguments included.

    Args:
        root: A node of the tree that tree-sitter parsed from ``source``.
        source: The parsed bytes.

    Returns:
        The calls ordered by the position of the called name. Calls inside a macro whose
        arguments are not expressions (``matches!(f(x), Some(_))``) come from its tokens with
        ``n_args=None``.
    """
    return sorted(_calls_in(root, source, 0), key=lambda c: c.start_byte)


def rust_test_end(text: str) -> int | None:
    """Char index just after the ``}`` that closes the first body in ``text``, or None.

    Braces are matched on tree-sitter tokens, so braces inside strings, chars and comments do
    not count; a MISSING brace (an unclosed body) is not a closing one.
    """
    data = text.encode("utf-8")
    depth, opened = 0, False
    for leaf in leaves(rust_parser().parse(data).root_node):
        if leaf.is_missing:
            continue
        if leaf.type == "{":
            depth, opened = depth + 1, True
        elif leaf.type == "}" and opened:
            depth -= 1
            if depth == 0:
                return len(data[: leaf.end_byte].decode("utf-8", "replace"))
    return None


# --------------------------------------------------------------------------------------------
# The test's first call of the function (the readout at the call)
# --------------------------------------------------------------------------------------------


class CallNotFoundError(ValueError):
    """A test sample whose test never calls the function under test."""


def function_name_at(code: str, target_char_positions: tuple[int, ...] | list[int]) -> str:
    """The function's name from a sample's annotation: the identifier at its second target
    character (targets are ``def``/``fn``, the name, then each parameter). PLIP-rs files carry
    no function record, so this is how their name is read.

    Raises:
        ValueError: fewer than two targets, or no identifier at the second one.
    """
    if len(target_char_positions) < 2:
        raise ValueError(
            f"target_char_positions={list(target_char_positions)}: need the keyword and the "
            "name (at least two targets) to read the function's name"
        )
    start, end = identifier_span(code, target_char_positions[1])
    name = code[start:end]
    if not name or not _ident_char(name[0]):
        raise ValueError(f"no identifier at target char {start} (found {code[start:end]!r})")
    return name


def _line_spans(code: str, start: int) -> Iterator[tuple[int, str]]:
    """``(char offset, text)`` of each line from the one holding ``start`` on; the first
    line starts at ``start``."""
    pos = start
    while pos <= len(code):
        nl = code.find("\n", pos)
        end = len(code) if nl < 0 else nl
        yield pos, code[pos:end]
        if nl < 0:
            return
        pos = nl + 1


def _doctest_examples(code: str, marker: int) -> Iterator[list[tuple[int, str]]]:
    """The doctest examples from the marker on: per example, its source lines as ``(char
    offset of the source text, text)``; the first example starts at the marker itself."""
    example: list[tuple[int, str]] = []
    for off, line in _line_spans(code, marker):
        stripped = line.lstrip()
        lead = len(line) - len(stripped)
        for prompt, is_new in ((PY_MARKER, True), ("...", False)):
            if stripped.startswith(prompt) and (is_new or example):
                skip = (
                    lead
                    + len(prompt)
                    + (1 if stripped[len(prompt) : len(prompt) + 1] == " " else 0)
                )
                if is_new and example:
                    yield example
                    example = []
                example.append((off + skip, line[skip:]))
                break
        else:
            if example:
                yield example
                example = []
    if example:
        yield example


def _python_call_char(code: str, name: str, marker: int) -> int | None:
    import ast

    for example in _doctest_examples(code, marker):
        try:
            tree = ast.parse("\n".join(text for _, text in example))
        except SyntaxError:
            continue  # an example that does not parse calls nothing (preservation's rule)
        found: list[tuple[int, int]] = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == name:
                found.append((func.lineno, func.col_offset))
            elif (
                isinstance(func, ast.Attribute)
                and func.attr == name
                and func.end_lineno is not None
                and func.end_col_offset is not None
            ):
                found.append((func.end_lineno, func.end_col_offset - len(name.encode("utf-8"))))
        if found:
            line, col = min(found)
            off, text = example[line - 1]
            return off + len(text.encode("utf-8")[:col].decode("utf-8", "replace"))
    return None


def _rust_call_char(code: str, name: str, marker: int) -> int | None:
    data = code.encode("utf-8")
    marker_byte = len(code[:marker].encode("utf-8"))
    root = rust_parser().parse(data).root_node
    fn = next(
        (n for n in walk(root) if n.type == "function_item" and n.start_byte >= marker_byte),
        None,
    )
    body = None if fn is None else fn.child_by_field_name("body")
    if body is None:
        return None
    call = next((c for c in rust_calls(body, data) if c.name == name), None)
    if call is None:
        return None
    return len(data[: call.start_byte].decode("utf-8", "replace"))


def call_char_pos(
    code: str, language: str, name: str, marker_char_pos: int, *, sample_id: str = "?"
) -> int:
    """Char position of the first character of ``name`` where the test first *calls* it.

    Python: the first doctest example from the marker on that calls ``name`` (``name(..)``,
    ``mod.name(..)``, ``obj.name(..)``; found with ``ast``), its first such call in source
    order. Rust: the first call of ``name`` in the body of the first function after the marker
    (the ``#[test]`` function; ``name(..)``, ``T::name(..)``, ``name::<T>(..)``, ``x.name(..)``,
    macro arguments included; found with tree-sitter-rust) -- never the ``fn test_<name>``
    header, which is no call.

    Raises:
        CallNotFoundError: the test never calls ``name`` (the message names the sample).
        ValueError: an unknown language or a marker outside the code.
    """
    if language not in ("python", "rust"):
        raise ValueError(f"language must be 'python' or 'rust'; got {language!r}")
    if not 0 <= marker_char_pos < len(code):
        raise ValueError(
            f"sample {sample_id}: marker_char_pos={marker_char_pos} is outside the code "
            f"(length {len(code)})"
        )
    find = _python_call_char if language == "python" else _rust_call_char
    pos = find(code, name, marker_char_pos)
    if pos is None:
        where = "doctest example" if language == "python" else "first test body"
        raise CallNotFoundError(
            f"sample {sample_id}: its {where} after the marker (char {marker_char_pos}) never "
            f"calls {name!r}; a test sample must call the function it tests (fix the sample or "
            "drop it from the corpus)"
        )
    return pos
