"""Python pairs: a function or method whose docstring's first doctest example calls it.

Found with ``ast`` and ``doctest`` on the file's text (never imported). The sample is the function
from its ``def`` line through its docstring, cut after the first example (which must call the
function, by name, bare or qualified) and that example's expected output, the docstring closed
there, then the rest of the function's body; methods are dedented out of their class.
"""

from __future__ import annotations

import ast
import doctest
import textwrap
from collections.abc import Iterator

from plip_nn.corpus.mine.model import Candidate, Drop

__all__ = ["python_candidates"]

_Fn = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(node: ast.AST, in_class: bool = False) -> Iterator[tuple[_Fn, bool]]:
    """(function, is a method) for module-level functions and methods of (nested) classes,
    also under module-level ``if``/``try`` blocks; never functions nested in functions."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield child, in_class
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, True)
        elif isinstance(child, ast.stmt):
            yield from _functions(child, in_class)


def _ordered(tree: ast.Module) -> list[tuple[_Fn, bool]]:
    return sorted(_functions(tree), key=lambda f: (f[0].lineno, f[0].col_offset))


def _n_params(fn: _Fn) -> int:
    a = fn.args
    return (
        len(a.posonlyargs)
        + len(a.args)
        + len(a.kwonlyargs)
        + (a.vararg is not None)
        + (a.kwarg is not None)
    )


def calls_name(source: str, name: str, *, method: bool) -> bool:
    """Whether the example source calls ``name``: ``name(`` (not for a method), ``x.name(``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == name:
            return True
        if not method and isinstance(f, ast.Name) and f.id == name:
            return True
    return False


def _docstring(text: str, fn: _Fn) -> tuple[ast.Constant, str, str] | None:
    """(docstring node, its body between the quotes, the quote) for triple-quoted docstrings."""
    if not fn.body or not isinstance(fn.body[0], ast.Expr):
        return None
    node = fn.body[0].value
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return None
    seg = ast.get_source_segment(text, node)
    if seg is None:
        return None
    i = 0
    while i < len(seg) and seg[i] in "rRuU":
        i += 1
    quote = seg[i : i + 3]
    if quote not in ('"""', "'''") or not seg.endswith(quote) or len(seg) < i + 6:
        return None
    return node, seg[i + 3 : -3], quote


def _cut(text: str, fn: _Fn, method: bool) -> Candidate | Drop | None:
    """The sample of one function, a drop reason, or None when it has no doctest example."""
    found = _docstring(text, fn)
    if found is None:
        return None
    node, body, quote = found
    try:
        examples = [
            e for e in doctest.DocTestParser().parse(body) if isinstance(e, doctest.Example)
        ]
    except ValueError:
        return Drop("doctest_malformed", fn.lineno, fn.name)
    if not examples:
        return None
    first = examples[0]
    if not calls_name(first.source, fn.name, method=method):
        calls = any(calls_name(e.source, fn.name, method=method) for e in examples)
        return Drop("first_example_not_a_call" if calls else "no_call", fn.lineno, fn.name)
    lines = text.splitlines()
    start = fn.lineno - 1
    ex_line = node.lineno - 1 + first.lineno  # 0-based file line of the '>>>'
    last = ex_line + first.source.count("\n") + first.want.count("\n")  # exclusive
    assert node.end_lineno is not None and fn.end_lineno is not None
    if last >= node.end_lineno:  # the docstring closes on the example's last line
        return Drop("docstring_closes_on_example", fn.lineno, fn.name)
    indent = lines[ex_line][: len(lines[ex_line]) - len(lines[ex_line].lstrip())]
    head = [*lines[start:last], indent + quote]
    rest = lines[fn.body[1].lineno - 1 : fn.end_lineno] if len(fn.body) > 1 else []
    if len(fn.body) > 1 and fn.body[1].lineno <= node.end_lineno:
        return Drop("code_after_docstring_line", fn.lineno, fn.name)
    raw = "\n".join(head + rest) + "\n"
    code = textwrap.dedent(raw)
    shift = len(raw.splitlines()[0]) - len(code.splitlines()[0])
    try:
        ast.parse(code)
    except SyntaxError:
        return Drop("unparsable", fn.lineno, fn.name)
    code_lines = code.splitlines(keepends=True)
    marker = sum(len(ln) for ln in code_lines[: ex_line - start]) + len(indent) - shift
    return Candidate(
        name=fn.name,
        code=code,
        line=fn.lineno,
        n_params=_n_params(fn),
        marker_char_pos=marker,
        call_line=first.source.splitlines()[0],
    )


def python_candidates(text: str) -> Iterator[Candidate | Drop]:
    """Every function with a doctest example in ``text``: its sample or why it is dropped.

    Functions nested in functions are not mined (their tests cannot call them by name).
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        yield Drop("file_does_not_parse", 0, "-")
        return
    for fn, method in _ordered(tree):
        got = _cut(text, fn, method)
        if got is not None:
            yield got
