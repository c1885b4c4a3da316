"""Preservation scoring of generated tests: does the generated test still test the function?

Flags (docs/CONTRACT.md, "Metrics"): ``calls_function`` (a syntactic call of the function by name,
found with ``ast`` / tree-sitter-rust, never by substring), ``arity_ok`` (some such call passes
the declared number of arguments), ``valid`` (the generated test parses), ``preserved`` = all
three, and ``executes`` (the test runs and passes, in a sandbox by default).

Prompt conventions and trimming (what part of a continuation is scored):

* **Python**: the prompt is a function whose docstring ends with ``>>>`` (the older ``>>> ``
  ending is accepted). The scored doctest is the prompt's last line (its indentation and
  ``>>>``) followed by the continuation cut at the first closing docstring delimiter (the
  ``\"\"\"`` or ``'''`` that opened the docstring) and after its first *checked* example (the
  first with an expected output, with the setup examples before it): **only the first test**
  is scored, as only the first Rust test function is -- one rule for both languages.
* **Rust**: the prompt ends with ``#[test]\\n`` (or the older ``#[test]\\nfn ``). The scored
  test is that ending + the continuation cut after the ``}`` that closes the test function's
  body (:func:`plip_nn.codesrc.rust_test_end`); braces are matched on tree-sitter tokens, so
  braces inside strings, chars and comments do not count. Only the first test function is
  scored; an unclosed body is scored whole (and is invalid).

Calls and arity:

* Python: ``name(...)`` and attribute calls ``obj.name(...)`` count as calls. ``arity`` is the
  declared parameter count and includes ``self``/``cls`` for methods (a function whose first
  parameter is ``self`` or ``cls`` inside a class in ``function_source``). A plain call passes
  its argument count; an attribute call of a method also counts the receiver, so ``obj.m(a)``
  passes 2 for ``def m(self, a)``; ``Class.m(obj, a)`` on the enclosing class's name passes the
  receiver explicitly (2 as well). Attribute calls of a non-method (``module.f(a, b)``) pass
  their argument count. Positional and keyword arguments both count; a ``*args``/``**kw`` call never
  matches. Defaults are not special: the declared count must be passed.
* Rust: ``name(...)``, ``Type::name(...)``, ``name::<T>(...)`` and method calls ``x.name(...)``
  count, also inside macros (``assert_eq!(name(1), 2)``: macro bodies are token trees to
  tree-sitter, so comma-separated macro arguments are re-parsed as expressions). ``arity``
  includes ``self`` for methods (``self`` parameter in ``function_source``); ``x.name(a)`` passes
  2 for a method, ``Type::name(x, a)`` and ``name(a, b)`` pass their argument count. A call
  whose own subtree holds a parse error does not count (Python: an example that does not parse
  contributes no calls).

An invalid test, or one that never calls the function (it cannot test it), is never run:
``executes`` is False for it unless ``execute="off"``.

Execution never happens in this process; :mod:`analysis.execution` runs the test (Python: the
function's module with the generated doctest; Rust: ``rustc --test`` and the binary) where
``execute`` says: ``"sandbox"`` (default; bubblewrap, or
:class:`~analysis.sandbox.SandboxUnavailable` when there is none), ``"unsafe"`` (a plain
subprocess, an explicit opt-in) or ``"off"`` (not run).

A timeout, a killed sandbox or a failure counts as ``executes=False`` (with the reason);
``executes=None`` means not attempted (``"off"``, or no rustc).
"""

from __future__ import annotations

import ast
import doctest
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from plip_nn.codesrc import (
    LEGACY_GENERATION_SUFFIX,
    PY_MARKER,
    RUST_GENERATION_SUFFIX,
    generation_suffix,
    has_error,
    rust_calls,
    rust_parser,
    rust_test_end,
    walk,
)

if TYPE_CHECKING:
    from tree_sitter import Node

from analysis.execution import (
    EXECUTE_MODES,
    EXECUTE_REQUESTS,
    ExecuteMode,
    check_execute,
    execute_python,
    execute_rust,
    parse_python,
    resolve_execute,
)

__all__ = [
    "EXECUTE_MODES",
    "EXECUTE_REQUESTS",
    "ExecuteMode",
    "Preservation",
    "first_test_complete",
    "resolve_execute",
    "score",
    "score_python",
    "score_rust",
    "scored_test",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Preservation:
    """Preservation flags of one generated test.

    Attributes:
        calls_function: some call's callee is the function's name (syntactic, not substring).
        arity_ok: some such call passes the declared number of arguments.
        valid: the generated test parses (doctest examples / Rust test fn without error nodes).
        preserved: calls_function and arity_ok and valid.
        executes: the test ran and passed; None when not attempted.
        reason: why a flag is False (empty when all are True), for people reading records.
    """

    calls_function: bool
    arity_ok: bool
    valid: bool
    preserved: bool
    executes: bool | None
    reason: str = ""


def _check_args(function_name: str, arity: int, timeout: float) -> None:
    if not function_name.isidentifier():
        raise ValueError(f"function_name must be an identifier; got {function_name!r}")
    if isinstance(arity, bool) or not isinstance(arity, int) or arity < 0:
        raise ValueError(f"arity must be a non-negative int (declared parameters); got {arity!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive seconds; got {timeout!r}")


def _make(
    calls: bool, arity_ok: bool, valid: bool, executes: bool | None, reasons: list[str]
) -> Preservation:
    return Preservation(
        calls_function=calls,
        arity_ok=arity_ok,
        valid=valid,
        preserved=calls and arity_ok and valid,
        executes=executes,
        reason="; ".join(reasons),
    )


# --------------------------------------------------------------------------- Python


def _docstring_delimiter(prompt: str) -> str:
    """The quote that opened the docstring holding the prompt's final ``>>>``."""
    head = prompt[: prompt.rfind(PY_MARKER)] if PY_MARKER in prompt else prompt
    positions = {q: head.rfind(q) for q in ('"""', "'''")}
    quote = max(positions, key=lambda q: positions[q])
    return quote if positions[quote] >= 0 else '"""'


def _python_doctest_text(prompt: str, continuation: str) -> str:
    last_line = prompt[prompt.rfind("\n") + 1 :]
    if PY_MARKER not in last_line:
        raise ValueError(
            "Python prompt must end with a docstring line containing '>>> '; "
            f"its last line is {last_line!r}"
        )
    delim = _docstring_delimiter(prompt)
    cut = continuation.find(delim)
    body = continuation if cut < 0 else continuation[:cut]
    text = last_line + body
    text = text if text.endswith("\n") else text + "\n"
    return _first_test(text)


def _want_end(ex: doctest.Example) -> int:
    """The line just after a doctest example's expected output."""
    return ex.lineno + len(ex.source.splitlines()) + len(ex.want.splitlines())


def _first_test_end(text: str) -> int | None:
    """Lines of ``text`` that hold its first *checked* example (one with an expected output),
    once a complete line after its expected output ends that output (a blank line or the next
    ``>>>``, as doctest reads it), found on the shortest prefix of complete lines that parses.
    None while no such line exists or the text fails to parse before it: then more text could
    still change the first test."""
    lines = text.split("\n")[:-1]  # complete lines only (the last piece has no newline yet)
    parser = doctest.DocTestParser()
    for k in range(1, len(lines) + 1):
        try:
            examples = parser.get_examples("\n".join(lines[:k]) + "\n")
        except ValueError:  # a longer prefix holds the same bad line
            return None
        for ex in examples:
            if ex.want:
                end = _want_end(ex)
                if end < k:  # line `end` exists and closed the expected output
                    return end
                break
    return None


def _first_test(text: str) -> str:
    """The doctest cut after its first *checked* example (one with an expected output): the
    Python counterpart of Rust's first test function, setup lines (``>>> c = Counter()``)
    included, later tests left out (:func:`_first_test_end`, so nothing after the first test
    changes it). Without a line that ends its expected output, the whole text is read as
    doctest reads it (the expected output runs to the end); text that does not parse there,
    or has no checked example, is kept whole."""
    end = _first_test_end(text)
    if end is not None:
        return "\n".join(text.split("\n")[:end]) + "\n"
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:
        return text
    for ex in examples:
        if ex.want:
            end = _want_end(ex)
            return "\n".join(text.split("\n")[:end]) + "\n"
    return text


def first_test_complete(language: str, prompt: str, continuation: str) -> bool:
    """True once ``continuation`` holds the whole first test that scoring reads, so that no
    further text can change its score: generation may stop there.

    Python: the docstring has closed, or a complete line ends the first checked example's
    expected output (:func:`_first_test_end`). Rust: the ``}`` that closes the first test
    function's body has been written (:func:`plip_nn.codesrc.rust_test_end`, as
    :func:`_rust_trim` cuts). Checked on real generations: the scored test of the text at the
    stop equals that of the whole generation.
    """
    if language == "python":
        if _docstring_delimiter(prompt) in continuation:
            return True
        last_line = prompt[prompt.rfind("\n") + 1 :]
        return _first_test_end(last_line + continuation) is not None
    if language == "rust":
        header = _rust_header(prompt)
        end = rust_test_end(header + continuation)
        return end is not None and end > len(header)
    raise ValueError(f"language must be 'python' or 'rust'; got {language!r}")


def scored_test(language: str, prompt: str, continuation: str) -> str:
    """The text of the generated test that scoring reads (Python: the doctest cut after its
    first checked example; Rust: the prompt's ending + the first test function)."""
    if language == "python":
        return _python_doctest_text(prompt, continuation)
    if language == "rust":
        return _rust_trim(continuation, _rust_header(prompt))
    raise ValueError(f"language must be 'python' or 'rust'; got {language!r}")


def _python_method_class(function_source: str, function_name: str) -> str | None:
    """The enclosing class name if ``function_name`` is a method (first param self/cls)."""
    try:
        tree = parse_python(function_source)
    except SyntaxError:
        return None
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for node in cls.body:
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name == function_name
            ):
                params = [*node.args.posonlyargs, *node.args.args]
                if params and params[0].arg in ("self", "cls"):
                    return cls.name
    return None


def _python_calls(tree: ast.AST, name: str) -> Iterator[tuple[str | None, int | None]]:
    """(receiver, passed argument count or None when starred) per call of ``name``.

    receiver: None for ``name(...)``, else the dotted text of ``obj`` in ``obj.name(...)``.
    """
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == name:
            receiver = None
        elif isinstance(func, ast.Attribute) and func.attr == name:
            receiver = ast.unparse(func.value)
        else:
            continue
        starred = any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        )
        yield receiver, None if starred else len(node.args) + len(node.keywords)


def _python_arity_ok(receiver: str | None, n: int | None, arity: int, cls: str | None) -> bool:
    if n is None:
        return False
    if receiver is None or cls is None:  # plain call, or attribute call of a non-method
        return n == arity
    # Method: obj.m(a) passes the receiver too; Class.m(obj, a) passes it explicitly.
    return n + 1 == arity or (receiver == cls and n == arity)


def score_python(
    prompt: str,
    continuation: str,
    *,
    function_name: str,
    arity: int,
    function_source: str,
    execute: ExecuteMode = "sandbox",
    timeout: float = 10.0,
) -> Preservation:
    """Score a generated Python doctest (conventions in the module docstring).

    Args:
        prompt: the generation prompt; its last line holds the docstring's ``>>> ``.
        continuation: what the model wrote after the prompt.
        function_name: the function under test.
        arity: declared parameter count (``self``/``cls`` included for methods).
        function_source: complete source defining the function (and anything the test needs);
            used to recognise methods and to execute the doctest.
        execute: ``"sandbox"``, ``"unsafe"`` or ``"off"`` (module docstring); only a ``valid``
            test that calls the function is run.
        timeout: seconds before the test is killed (then ``executes`` is False).
    """
    _check_args(function_name, arity, timeout)
    check_execute(execute)
    text = _python_doctest_text(prompt, continuation)
    reasons: list[str] = []
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError as exc:
        examples, reasons = [], [f"doctest does not parse: {exc}"]
    trees: list[ast.AST] = []
    for ex in examples:
        try:
            trees.append(parse_python(ex.source))
        except SyntaxError as exc:
            reasons.append(f"example {ex.source.strip()!r} is not valid Python: {exc.msg}")
    if not examples and not reasons:
        reasons.append("no doctest example")
    valid = bool(examples) and len(trees) == len(examples)

    cls = _python_method_class(function_source, function_name)
    calls = [c for t in trees for c in _python_calls(t, function_name)]
    arity_ok = any(_python_arity_ok(recv, n, arity, cls) for recv, n in calls)
    if not calls:
        reasons.append(f"no call of {function_name}")
    elif not arity_ok:
        passed = sorted({n for _, n in calls if n is not None})
        reasons.append(f"calls of {function_name} pass {passed} arguments, declared {arity}")

    executes: bool | None = None
    if execute != "off" and valid and calls:
        executes, why = execute_python(function_source, text, timeout, execute)
        if why:
            reasons.append(why)
    elif execute != "off":
        executes = False  # an invalid test, or one that never calls the function: not run
    return _make(bool(calls), arity_ok, valid, executes, reasons)


# --------------------------------------------------------------------------- Rust


def _rust_header(prompt: str) -> str:
    """The end of a Rust generation prompt that the scored test starts with.

    Prompts end right after ``#[test]\\n`` (the convention: the model writes ``fn`` and the
    name itself) or, in the older convention, after ``#[test]\\nfn ``.
    """
    header = generation_suffix(prompt, "rust")
    if header is None:
        raise ValueError(
            f"Rust prompt must end with {RUST_GENERATION_SUFFIX!r} "
            f"(or {LEGACY_GENERATION_SUFFIX['rust']!r}); it ends with {prompt[-20:]!r}"
        )
    return header


def _rust_trim(continuation: str, header: str) -> str:
    """``header`` + continuation up to the ``}`` that closes the first body (whole if none)."""
    text = header + continuation
    end = rust_test_end(text)
    return text if end is None else text[:end]


def _rust_calls(root: Node, source: bytes, name: str) -> list[tuple[bool, int]]:
    """(method call, arguments passed) per call of ``name`` whose own subtree parses."""
    return [
        (c.method, c.n_args)
        for c in rust_calls(root, source)
        if c.name == name and c.clean and c.n_args is not None
    ]


def _rust_is_method(function_source: str, function_name: str) -> bool:
    tree = rust_parser().parse(function_source.encode("utf-8"))
    for node in walk(tree.root_node):
        if node.type == "function_item":
            name = node.child_by_field_name("name")
            if name is not None and name.text == function_name.encode():
                params = node.child_by_field_name("parameters")
                return params is not None and any(
                    c.type == "self_parameter" for c in params.named_children
                )
    return False


def score_rust(
    prompt: str,
    continuation: str,
    *,
    function_name: str,
    arity: int,
    function_source: str,
    execute: ExecuteMode = "sandbox",
    timeout: float = 10.0,
) -> Preservation:
    """Score a generated Rust test (conventions in the module docstring).

    Args:
        prompt: the generation prompt; it ends with ``#[test]\\n`` (or ``#[test]\\nfn ``).
        continuation: what the model wrote after the prompt.
        function_name: the function under test.
        arity: declared parameter count (``self`` included for methods).
        function_source: complete source defining the function (and types the test needs).
        execute: ``"sandbox"``, ``"unsafe"`` or ``"off"`` (module docstring); only a ``valid``
            test that calls the function is compiled and run, and only where rustc exists.
        timeout: seconds for running the test binary (compilation gets at least 60 s).
    """
    _check_args(function_name, arity, timeout)
    check_execute(execute)
    test_source = _rust_trim(continuation, _rust_header(prompt))
    data = test_source.encode("utf-8")
    tree = rust_parser().parse(data)
    fns = [c for c in tree.root_node.named_children if c.type == "function_item"]
    reasons: list[str] = []
    valid = not has_error(tree.root_node) and len(fns) == 1
    if not valid:
        reasons.append("test function does not parse (tree-sitter error or missing node)")

    method = _rust_is_method(function_source, function_name)
    calls = _rust_calls(tree.root_node, data, function_name)
    # A method called on a receiver passes the receiver as ``self`` too.
    arity_ok = any((n + 1 if recv and method else n) == arity for recv, n in calls)
    if not calls:
        reasons.append(f"no call of {function_name}")
    elif not arity_ok:
        passed = sorted({n for _, n in calls})
        reasons.append(f"calls of {function_name} pass {passed} arguments, declared {arity}")

    executes: bool | None = None
    if execute != "off" and valid and calls:
        executes, why = execute_rust(function_source, test_source, timeout, execute)
        if why:
            reasons.append(why)
    elif execute != "off":
        executes = False  # an invalid test, or one that never calls the function: not run
    return _make(bool(calls), arity_ok, valid, executes, reasons)


def score(
    language: Literal["python", "rust"],
    prompt: str,
    continuation: str,
    *,
    function_name: str,
    arity: int,
    function_source: str,
    execute: ExecuteMode = "sandbox",
    timeout: float = 10.0,
) -> Preservation:
    """Dispatch to ``score_python`` / ``score_rust`` by record ``language``."""
    scorers = {"python": score_python, "rust": score_rust}
    if language not in scorers:
        raise ValueError(f"language must be 'python' or 'rust'; got {language!r}")
    return scorers[language](
        prompt,
        continuation,
        function_name=function_name,
        arity=arity,
        function_source=function_source,
        execute=execute,
        timeout=timeout,
    )
