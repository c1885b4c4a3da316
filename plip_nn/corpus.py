"""Corpus: file formats, automatic marker/target annotation, and checks.

File format (ours) is the PLIP-rs universal v2.0 shape: a JSON object with
``_format_version: "2.0"`` and lists ``python_doctest``, ``rust_test``, ``python_baseline``,
``rust_baseline`` (PLIP-rs) plus ``python_generation`` and ``rust_generation`` (ours). Each entry is
``{id, code, marker_char_pos, marker_pattern, target_char_positions, function}`` where ``function``
is ``{name, params, arity, source}`` (absent in PLIP-rs files). Extra keys are kept and ignored.

Annotation convention (PRODUCT.md, "CLI contract"), found with ``ast``/``tokenize`` for Python and
tree-sitter-rust for Rust, never with regular expressions over the raw text:

* **test**: marker = first char of the first doctest example (``>>>`` starting a docstring line,
  as ``doctest`` parses it) in the function's docstring / of the ``#[test]`` attribute of the
  first test that calls the function. Python picks the first function (source order) whose
  docstring has an example; Rust picks the first ``#[test]`` function that calls a function
  defined in the sample (preferring one whose name is part of the test's name). Rust tests in
  real code win over tests written inside ``///`` doc comments, which are used only when the
  code has no real test (the PLIP-rs generation prompts).
* **baseline** (false marker): Python = first ``>>>`` inside a comment or string token; Rust =
  first outer attribute ``#[...]`` other than ``#[test]``/``#[cfg(test)]``. Function = the first
  (non-test) function.
* **generation**: the code ends with ``>>> `` (Python, inside the docstring of the last function)
  or with ``#[test]\\nfn `` (Rust, after the last function). The marker is that trailing
  ``>>>``/``#[test]``, *after* the function, so the edge is causally valid.
* targets = first char of the ``def``/``fn`` keyword (``async def`` -> ``def``), of the name, and
  of each declared parameter: ``self`` included, ``&mut self`` -> ``s``, ``mut x`` -> ``x``,
  ``*args`` -> ``a``; a Rust pattern parameter (``(a, b): (i32, i32)``) -> its first bound
  identifier (``a``; one target per declared parameter).
* ``FunctionInfo.params`` are the declared names in source spelling (Python keeps ``*``/``**``
  on variadics: ``("self", "x", "*args", "**kwargs")``; Rust pattern parameters keep their
  pattern text); ``arity == len(params)`` (Python counts ``self``, ``*args`` and ``**kwargs``
  one each). ``FunctionInfo.source`` is a complete program that defines the function, for
  running tests later: the sample's code for test/baseline samples, the prompt without its
  trailing marker for Rust generation prompts, and the given complete program for Python
  generation prompts (whose prompt stops inside the docstring).
"""

from __future__ import annotations

import ast
import doctest
import io
import json
import logging
import os
import sys
import tempfile
import tokenize
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CORPUS_PATH",
    "LISTS",
    "Annotation",
    "Corpus",
    "CorpusError",
    "FunctionInfo",
    "Problem",
    "Sample",
    "annotate_file",
    "annotate_python",
    "annotate_rust",
    "check_corpus",
    "cli_annotate",
    "cli_check",
    "cli_convert",
    "convert_file",
    "load_corpus",
]

Language = Literal["python", "rust"]
Kind = Literal["test", "baseline", "generation"]

DEFAULT_CORPUS_PATH = Path(__file__).parent / "data" / "corpus" / "corpus.json"
FORMAT_VERSION = "2.0"
#: JSON list name -> (language, kind).
LISTS: dict[str, tuple[Language, Kind]] = {
    "python_doctest": ("python", "test"),
    "rust_test": ("rust", "test"),
    "python_baseline": ("python", "baseline"),
    "rust_baseline": ("rust", "baseline"),
    "python_generation": ("python", "generation"),
    "rust_generation": ("rust", "generation"),
}
_LIST_OF = {v: k for k, v in LISTS.items()}
PY_MARKER = ">>>"
RUST_TEST_MARKER = "#[test]"
RUST_BASELINE_MARKER = "#["
# Generation prompts end right after the marker (docs/PROMPTS.md): Python at ``>>>``, Rust at
# ``#[test]`` and its line break. The model then writes the space-prefixed name (``>>> name(``)
# or ``fn`` itself, with the tokens it saw after ``def``/``fn``, and the marker token stays the
# prompt's last token, the source of every edit. A trailing space (``>>> ``, ``#[test]\nfn ``,
# the older convention) still loads and is cut back to the rule by ``generation_prompt``.
PY_GENERATION_SUFFIX = ">>>"
RUST_GENERATION_SUFFIX = "#[test]\n"
_LEGACY_SUFFIX = {"python": ">>> ", "rust": "#[test]\nfn "}
_SUFFIX = {"python": PY_GENERATION_SUFFIX, "rust": RUST_GENERATION_SUFFIX}
_REQUIRED = ("id", "code", "marker_char_pos", "marker_pattern", "target_char_positions")


def generation_suffix(code: str, language: str) -> str | None:
    """The generation-prompt ending that ``code`` has (the rule's or the legacy one), or None."""
    for suffix in (_LEGACY_SUFFIX[language], _SUFFIX[language]):
        if code.endswith(suffix):
            return suffix
    return None


def generation_prompt(code: str, language: str) -> str:
    """``code`` cut back to the prompt rule: it ends right after the marker (see docs/PROMPTS.md).

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


class CorpusError(ValueError):
    """A corpus file or sample that is malformed or cannot be annotated."""


@dataclass(frozen=True, kw_only=True)
class FunctionInfo:
    """The function under test, as preservation scoring needs it.

    Attributes:
        name: The function's name (source spelling).
        params: Declared parameters in order (see the module docstring for the spelling).
        arity: Number of declared parameters; Python counts ``self``, ``*args``, ``**kwargs``.
        source: A complete program that defines the function.
    """

    name: str
    params: tuple[str, ...]
    arity: int
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"FunctionInfo.name={self.name!r} must be a non-empty string")
        if not isinstance(self.params, tuple) or not all(isinstance(p, str) for p in self.params):
            raise ValueError(f"FunctionInfo.params={self.params!r} must be a tuple of strings")
        if isinstance(self.arity, bool) or self.arity != len(self.params):
            raise ValueError(
                f"FunctionInfo.arity={self.arity!r} must equal len(params)={len(self.params)}"
            )
        if not isinstance(self.source, str) or self.name not in self.source:
            raise ValueError(f"FunctionInfo.source must be a string that defines {self.name!r}")

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``{name, params, arity, source}``."""
        return {
            "name": self.name,
            "params": list(self.params),
            "arity": self.arity,
            "source": self.source,
        }


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One corpus sample with character positions.

    Attributes:
        id: Unique id within the corpus.
        language: ``"python"`` or ``"rust"``.
        kind: ``"test"``, ``"baseline"`` or ``"generation"``.
        code: The text given to the model.
        marker_char_pos: First character of the marker in ``code``.
        marker_pattern: The marker text found at ``marker_char_pos``.
        target_char_positions: First characters of the targets, in source order.
        function: The function under test (``None`` for PLIP-rs samples without it).
    """

    id: str
    language: Language
    kind: Kind
    code: str
    marker_char_pos: int
    marker_pattern: str
    target_char_positions: tuple[int, ...]
    function: FunctionInfo | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"id={self.id!r} must be a non-empty string")
        if self.language not in ("python", "rust"):
            raise ValueError(f"language={self.language!r} must be 'python' or 'rust'")
        if self.kind not in ("test", "baseline", "generation"):
            raise ValueError(f"kind={self.kind!r} must be 'test', 'baseline' or 'generation'")
        if not isinstance(self.code, str) or not self.code:
            raise ValueError("code must be a non-empty string")
        n = len(self.code)
        for name, pos in [("marker_char_pos", self.marker_char_pos)] + [
            ("target_char_positions", t) for t in self.target_char_positions
        ]:
            if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos < n:
                raise ValueError(
                    f"{name} value {pos!r} is out of range for code of length {n}; "
                    f"use a char position in 0..{n - 1} (re-run `plip-nn corpus annotate`)"
                )
        if not self.target_char_positions:
            raise ValueError("target_char_positions is empty; give at least one target")
        end = self.marker_char_pos + len(self.marker_pattern)
        if not self.marker_pattern or self.code[self.marker_char_pos : end] != self.marker_pattern:
            raise ValueError(
                f"marker_pattern={self.marker_pattern!r} is not at marker_char_pos="
                f"{self.marker_char_pos} (found {self.code[self.marker_char_pos : end]!r}); "
                "re-run `plip-nn corpus annotate`"
            )

    @property
    def masked_targets(self) -> tuple[int, ...]:
        """Target chars after the marker: their edges are masked by causality."""
        return tuple(t for t in self.target_char_positions if t > self.marker_char_pos)

    def to_json(self) -> dict[str, Any]:
        """JSON entry of our format."""
        out: dict[str, Any] = {
            "id": self.id,
            "code": self.code,
            "marker_char_pos": self.marker_char_pos,
            "marker_pattern": self.marker_pattern,
            "target_char_positions": list(self.target_char_positions),
        }
        if self.function is not None:
            out["function"] = self.function.to_json()
        return out


@dataclass(frozen=True, kw_only=True)
class Annotation:
    """Result of annotating one piece of code."""

    marker_char_pos: int
    marker_pattern: str
    target_char_positions: tuple[int, ...]
    function: FunctionInfo


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing ``check_corpus`` found wrong.

    Attributes:
        path: The file (or ``"<corpus>"``).
        sample_id: The sample (``"-"`` for file-level problems).
        code: Short category: ``malformed_json``, ``format``, ``missing_field``, ``bad_value``,
            ``out_of_range``, ``duplicate_id``, ``masked``, ``unannotatable``.
        message: What is wrong and how to fix it.
    """

    path: str
    sample_id: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: sample {self.sample_id}: [{self.code}] {self.message}"


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus."""

    samples: tuple[Sample, ...]
    path: Path | None = field(default=None)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for s in self.samples:
            if s.id in seen:
                raise CorpusError(f"{self.path}: sample {s.id}: duplicate id; make ids unique")
            seen.add(s.id)

    def select(self, language: str | None = None, kind: str | None = None) -> list[Sample]:
        """Samples of one language and/or kind, in file order."""
        if language not in (None, "python", "rust"):
            raise ValueError(f"language={language!r} must be None, 'python' or 'rust'")
        if kind not in (None, "test", "baseline", "generation"):
            raise ValueError(f"kind={kind!r} must be None, 'test', 'baseline' or 'generation'")
        return [
            s
            for s in self.samples
            if (language is None or s.language == language) and (kind is None or s.kind == kind)
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def by_id(self, sample_id: str) -> Sample:
        """The sample with this id."""
        for s in self.samples:
            if s.id == sample_id:
                return s
        raise KeyError(f"no sample {sample_id!r} in {self.path}")

    def to_json(self) -> dict[str, Any]:
        """Our file format."""
        out: dict[str, Any] = {"_format_version": FORMAT_VERSION}
        for name, (lang, kind) in LISTS.items():
            out[name] = [s.to_json() for s in self.samples if (s.language, s.kind) == (lang, kind)]
        return out


class _Fail(Exception):
    """Internal: an annotation failure reason, wrapped into CorpusError with the sample id."""


# --------------------------------------------------------------------------------------------
# Python annotation (ast + tokenize + doctest)
# --------------------------------------------------------------------------------------------


def _line_starts(code: str) -> list[int]:
    """Char offset of each line, 1-based like ast/tokenize (index 0 unused)."""
    starts = [0, 0]
    i, n = 0, len(code)
    while i < n:
        ch = code[i]
        if ch == "\r" and i + 1 < n and code[i + 1] == "\n":
            i += 1
        if ch in "\r\n":
            starts.append(i + 1)
        i += 1
    return starts


class _PySource:
    """Code with its line table, AST and tokens."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.starts = _line_starts(code)
        try:
            self.tree = ast.parse(code)
        except SyntaxError as exc:
            raise _Fail(f"Python does not parse: {exc.msg} (line {exc.lineno})") from None
        self.tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
        self.token_at = {
            self.pos(*t.start): t for t in self.tokens if t.type in (tokenize.NAME, tokenize.STRING)
        }

    def pos(self, row: int, col_chars: int) -> int:
        if row >= len(self.starts):  # NEWLINE/ENDMARKER past the last line
            return len(self.code)
        return self.starts[row] + col_chars

    def pos_bytes(self, row: int, col_bytes: int) -> int:
        """Char offset of an ast (row, UTF-8 byte column) position."""
        start = self.starts[row]
        end = self.starts[row + 1] if row + 1 < len(self.starts) else len(self.code)
        line = self.code[start:end].encode("utf-8")
        return start + len(line[:col_bytes].decode("utf-8"))

    def functions(self) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
        nodes = [
            n for n in ast.walk(self.tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        return sorted(nodes, key=lambda n: (n.lineno, n.col_offset))

    def token_after(self, char_pos: int) -> tokenize.TokenInfo:
        """The first NAME token starting at or after ``char_pos``."""
        for t in self.tokens:
            if t.type == tokenize.NAME and self.pos(*t.start) >= char_pos:
                return t
        raise _Fail(f"no name token after char {char_pos}")

    def targets(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[list[int], list[str]]:
        """Target chars (def, name, params) and declared parameter spellings."""
        start = self.pos_bytes(fn.lineno, fn.col_offset)
        kw = self.token_after(start)
        if kw.string == "async":
            kw = self.token_after(self.pos(*kw.end))
        if kw.string != "def":
            raise _Fail(f"expected 'def' at line {fn.lineno}, found {kw.string!r}")
        name_tok = self.token_after(self.pos(*kw.end))
        a = fn.args
        declared: list[tuple[ast.arg, str]] = [(x, "") for x in (*a.posonlyargs, *a.args)]
        if a.vararg is not None:
            declared.append((a.vararg, "*"))
        declared += [(x, "") for x in a.kwonlyargs]
        if a.kwarg is not None:
            declared.append((a.kwarg, "**"))
        positions = [self.pos(*kw.start), self.pos(*name_tok.start)]
        params: list[str] = []
        for arg, stars in declared:
            p = self.pos_bytes(arg.lineno, arg.col_offset)
            tok = self.token_at.get(p)
            if tok is None or tok.type != tokenize.NAME:
                raise _Fail(f"parameter {arg.arg!r} of {fn.name!r} has no name token at char {p}")
            positions.append(p)
            params.append(stars + tok.string)  # source spelling, not ast's NFKC form
        return positions, params

    def docstring_examples(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[int]:
        """Char positions of the ``>>>`` of each doctest example in ``fn``'s docstring."""
        if not fn.body or not isinstance(fn.body[0], ast.Expr):
            return []
        node = fn.body[0].value
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            return []
        assert node.end_lineno is not None and node.end_col_offset is not None
        start = self.pos_bytes(node.lineno, node.col_offset)
        end = self.pos_bytes(node.end_lineno, node.end_col_offset)
        tok = self.token_at.get(start)
        if tok is None or tok.type != tokenize.STRING or self.pos(*tok.end) != end:
            raise _Fail(
                f"the docstring of {fn.name!r} is several string literals; write one literal"
            )
        raw = tok.string
        i = 0
        while raw[i] not in "'\"":
            i += 1
        quote = raw[i : i + 3] if raw[i : i + 3] in ('"""', "'''") else raw[i]
        body = raw[i + len(quote) : len(raw) - len(quote)]
        body_start = start + i + len(quote)
        body_lines = [0]
        for k, ch in enumerate(body):
            if ch == "\n":
                body_lines.append(k + 1)
        found = []
        for ex in doctest.DocTestParser().parse(body):
            if isinstance(ex, doctest.Example):
                p = body_start + body_lines[ex.lineno] + ex.indent
                if self.code[p : p + 3] != PY_MARKER:
                    raise _Fail(f"doctest example of {fn.name!r} does not map to '>>>' at {p}")
                found.append(p)
        return found

    def false_markers(self) -> list[int]:
        """Char positions of ``>>>`` inside comment and string tokens, in order."""
        kinds = {tokenize.COMMENT, tokenize.STRING}
        fstring_middle = getattr(tokenize, "FSTRING_MIDDLE", None)
        if fstring_middle is not None:
            kinds.add(fstring_middle)
        out = []
        for t in self.tokens:
            if t.type in kinds:
                k = t.string.find(PY_MARKER)
                while k >= 0:
                    out.append(self.pos(*t.start) + k)
                    k = t.string.find(PY_MARKER, k + 1)
        return out


def _pick(fns: list[Any], name: str | None, what: str) -> Any:
    if name is None:
        return fns[0]
    for fn in fns:
        if fn.name == name:
            return fn
    raise _Fail(f"function {name!r} not found among {what} {[f.name for f in fns]}")


def _close_python_prompt(code: str) -> str:
    """Complete a prompt that ends inside a docstring so that ``ast`` can parse it."""
    marker = len(code) - len(generation_suffix(code, "python") or PY_GENERATION_SUFFIX)
    line_start = code.rfind("\n", 0, marker) + 1
    indent = code[line_start:marker]
    if indent.strip():
        raise _Fail("the trailing '>>>' must start its own docstring line")
    for quote in ('"""', "'''"):
        # `None` makes the trailing `>>>` a real (non-blank) doctest example for `doctest`.
        completed = f"{code[:marker]}>>> None\n{indent}{quote}\n{indent}pass\n"
        try:
            ast.parse(completed)
        except SyntaxError:
            continue
        return completed
    raise _Fail("the code before the trailing '>>>' is not a function with an open docstring")


def annotate_python(
    code: str,
    *,
    kind: Kind | None = None,
    function: str | None = None,
    source: str | None = None,
    sample_id: str = "?",
) -> Annotation:
    """Find the marker and targets in Python code.

    Args:
        code: The sample's code.
        kind: ``"test"``, ``"baseline"`` or ``"generation"``; ``None`` infers generation when
            the code ends with ``">>> "`` and test otherwise.
        function: Name of the function under test, when the default choice is not wanted.
        source: Generation only: the complete program defining the function (required, since
            the prompt stops inside the docstring).
        sample_id: Named in errors.

    Returns:
        The annotation.

    Raises:
        CorpusError: The code cannot be annotated; the message names the sample and why.
    """
    try:
        return _annotate_python(code, kind, function, source)
    except _Fail as exc:
        raise CorpusError(
            f"sample {sample_id}: cannot annotate Python {kind or ''}: {exc}"
        ) from None


def _annotate_python(
    code: str, kind: Kind | None, function: str | None, source: str | None
) -> Annotation:
    if kind is None:
        kind = "generation" if generation_suffix(code, "python") else "test"
    if kind == "generation":
        return _annotate_python_generation(code, function, source)
    src = _PySource(code)
    fns = src.functions()
    if not fns:
        raise _Fail("no function definition")
    if kind == "test":
        with_examples = [(fn, ex) for fn in fns if (ex := src.docstring_examples(fn))]
        if not with_examples:
            raise _Fail("no function has a doctest example ('>>>' starting a docstring line)")
        fn = _pick([f for f, _ in with_examples], function, "functions with doctests")
        marker = dict((id(f), ex) for f, ex in with_examples)[id(fn)][0]
    elif kind == "baseline":
        fn = _pick(fns, function, "functions")
        found = src.false_markers()
        if not found:
            raise _Fail("no '>>>' inside a comment or string (a false marker)")
        marker = found[0]
    else:
        raise _Fail(f"kind={kind!r} must be 'test', 'baseline' or 'generation'")
    targets, params = src.targets(fn)
    return Annotation(
        marker_char_pos=marker,
        marker_pattern=PY_MARKER,
        target_char_positions=tuple(targets),
        function=FunctionInfo(name=fn.name, params=tuple(params), arity=len(params), source=code),
    )


def _annotate_python_generation(code: str, function: str | None, source: str | None) -> Annotation:
    suffix = generation_suffix(code, "python")
    if suffix is None:
        raise _Fail("a Python generation prompt must end with '>>>' inside a docstring")
    marker = len(code) - len(suffix)
    src = _PySource(_close_python_prompt(code))
    owner = [fn for fn in src.functions() if marker in src.docstring_examples(fn)]
    if not owner:
        raise _Fail("the trailing '>>>' is not in a function's docstring")
    fn = owner[-1]
    if function is not None and fn.name != function:
        raise _Fail(f"the trailing '>>>' is in {fn.name!r}'s docstring, not {function!r}'s")
    targets, params = src.targets(fn)
    if source is None:
        raise _Fail(
            "the prompt stops inside the docstring, so the function body is missing; "
            "give 'source' (the complete program defining the function)"
        )
    full = _PySource(source)
    matching = [f for f in full.functions() if f.name == fn.name]
    if not matching or full.targets(matching[-1])[1] != params:
        raise _Fail(f"'source' does not define {fn.name}({', '.join(params)})")
    return Annotation(
        marker_char_pos=marker,
        marker_pattern=PY_MARKER,
        target_char_positions=tuple(targets),
        function=FunctionInfo(name=fn.name, params=tuple(params), arity=len(params), source=source),
    )


# --------------------------------------------------------------------------------------------
# Rust annotation (tree-sitter-rust)
# --------------------------------------------------------------------------------------------


@cache
def _rust_parser() -> Any:
    import tree_sitter
    import tree_sitter_rust

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_rust.language()))


def _walk(node: Any) -> Iterator[Any]:
    """Pre-order (source-order) walk."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _has_error(node: Any) -> bool:
    return any(n.is_error or n.is_missing for n in _walk(node))


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
        parser = _rust_parser()
        self.tree = parser.parse(self.data)
        if complete and _has_error(self.tree.root_node):
            # An incomplete program (a prompt that stops inside a function): close open braces
            # at the end, where it changes no position, and keep the first that parses cleanly.
            for k in range(1, 4):
                tree = parser.parse(self.data + b"\n" + b"}" * k)
                if not _has_error(tree.root_node):
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


def _attributes(fn: Any) -> list[Any]:
    """Outer attribute items directly before an item (comments in between allowed)."""
    out = []
    prev = fn.prev_sibling
    while prev is not None and prev.type in ("attribute_item", "line_comment", "block_comment"):
        if prev.type == "attribute_item":
            out.append(prev)
        prev = prev.prev_sibling
    return out[::-1]


def _calls(src: _RustSource, node: Any) -> list[str]:
    """Names of called functions/methods under ``node`` in source order (macros included)."""
    names: list[tuple[int, str]] = []
    for n in _walk(node):
        if n.type == "call_expression":
            f = n.child_by_field_name("function")
            while f is not None and f.type == "generic_function":
                f = f.child_by_field_name("function")
            if f is None:
                continue
            if f.type == "identifier":
                names.append((f.start_byte, src.text(f)))
            elif f.type == "scoped_identifier":
                name = f.child_by_field_name("name")
                if name is not None:
                    names.append((name.start_byte, src.text(name)))
            elif f.type == "field_expression":
                name = f.child_by_field_name("field")
                if name is not None:
                    names.append((name.start_byte, src.text(name)))
        elif n.type == "token_tree":
            # Macro arguments are token trees: `add(2, 3)` is an identifier then a `(...)` tree.
            kids = n.children
            for k, a in enumerate(kids):
                if a.type != "identifier":
                    continue
                j = _skip_turbofish(kids, k + 1)
                b = kids[j] if j < len(kids) else None
                if b is not None and b.type == "token_tree" and b.children[0].type == "(":
                    names.append((a.start_byte, src.text(a)))
    return [name for _, name in sorted(names)]


def _skip_turbofish(kids: list[Any], j: int) -> int:
    """Index after a ``::<...>`` that starts at ``kids[j]`` (``j`` itself if there is none)."""
    if j + 1 < len(kids) and kids[j].type == "::" and kids[j + 1].type == "<":
        depth = 0
        for k in range(j + 1, len(kids)):
            depth += {"<": 1, ">": -1}.get(kids[k].type, 0)
            if depth == 0:
                return k + 1
    return j


def _is_test_fn(src: _RustSource, fn: Any) -> Any | None:
    """The ``#[test]`` attribute item of ``fn``, or None."""
    for a in _attributes(fn):
        if _attr_name(src, a) == "test":
            return a
    return None


def _functions(src: _RustSource, root: Any) -> list[Any]:
    return [n for n in _walk(root) if n.type == "function_item"]


_BINDINGS = ("identifier", "_", "shorthand_field_identifier")


def _first_binding(pattern: Any) -> Any | None:
    """First name a pattern binds (skipping struct/enum paths and field names)."""
    if pattern.type in _BINDINGS:
        return pattern
    for i, child in enumerate(pattern.children):
        if pattern.field_name_for_child(i) == "type" or child.type == "field_identifier":
            continue  # `P { .. }` / `Some(..)` paths and `x:` field names bind nothing
        found = _first_binding(child)
        if found is not None:
            return found
    return None


def _rust_targets(src: _RustSource, fn: Any) -> tuple[list[int], list[str]]:
    """Target chars (fn, name, params) and parameter spellings of a function_item."""
    kw = next((c for c in fn.children if c.type == "fn"), None)
    name = fn.child_by_field_name("name")
    params = fn.child_by_field_name("parameters")
    if kw is None or name is None or params is None:
        raise _Fail(f"incomplete function at char {src.char(fn)}")
    positions = [src.char(kw), src.char(name)]
    spellings: list[str] = []
    for p in params.named_children:
        if p.type == "self_parameter":
            node = next(c for c in p.children if c.type == "self")
            spellings.append("self")
        elif p.type == "parameter":
            pattern = p.child_by_field_name("pattern")
            if pattern is None:
                raise _Fail(f"parameter without a pattern at char {src.char(p)}")
            node = _first_binding(pattern) or pattern
            spellings.append(src.text(pattern))
        elif p.type == "variadic_parameter":
            node = p
            spellings.append(src.text(p))
        else:
            continue  # attributes on parameters, comments
        positions.append(src.char(node))
    return positions, spellings


def _doc_blocks(src: _RustSource) -> list[tuple[str, list[int]]]:
    """Consecutive outer ``///`` doc comments: (inner text, char position of each inner char)."""
    blocks: list[tuple[str, list[int]]] = []
    text: list[str] = []
    where: list[int] = []
    last_end = -1
    for n in _walk(src.tree.root_node):
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
            the code ends with ``"#[test]\\nfn "`` and test otherwise.
        function: Name of the function under test, when the default choice is not wanted.
        sample_id: Named in errors.

    Returns:
        The annotation.

    Raises:
        CorpusError: The code cannot be annotated; the message names the sample and why.
    """
    try:
        return _annotate_rust(code, kind, function)
    except _Fail as exc:
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
        raise _Fail("no (non-test) function definition")
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
            for n in _walk(src.tree.root_node)
            if n.type == "attribute_item" and _attr_name(src, n) not in ("test", "cfg(test)")
        ]
        if not attrs:
            raise _Fail("no attribute '#[...]' other than #[test]/#[cfg(test)] (a false marker)")
        marker, pattern = src.char(attrs[0]), RUST_BASELINE_MARKER
    else:
        raise _Fail(f"kind={kind!r} must be 'test', 'baseline' or 'generation'")
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
    raise _Fail(f"function {name!r} not found among functions {names}")


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
        inner = _RustSource(text)
        for fn in _functions(inner, inner.tree.root_node):
            attr = _is_test_fn(inner, fn)
            if attr is None:
                continue
            body = fn.child_by_field_name("body") or fn
            called = [c for c in _calls(inner, body) if c in by_name]
            chosen = _choose_call(inner.text(fn.child_by_field_name("name")), called, function)
            if chosen is not None:
                return where[inner.char(attr)], by_name[chosen]
    wanted = f"function {function!r}" if function else "a function defined in the sample"
    raise _Fail(f"no #[test] function calls {wanted}")


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
        raise _Fail("the trailing '#[test]' is not a top-level attribute after the function")
    prefix = _RustSource(code[:marker])
    if _has_error(prefix.tree.root_node):
        raise _Fail("the code before the trailing '#[test]' does not parse as complete Rust")
    fns = [f for f in _functions(prefix, prefix.tree.root_node) if _is_test_fn(prefix, f) is None]
    if not fns:
        raise _Fail("no function before the trailing '#[test]'")
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


def annotate_sample(raw: Mapping[str, Any], language: Language, kind: Kind) -> Sample:
    """Annotate one ``{id, code}`` entry (optional ``function`` name hint, ``source``).

    Raises:
        CorpusError: Missing fields or unannotatable code; names the sample and why.
    """
    sample_id = raw.get("id")
    if not isinstance(sample_id, str) or not sample_id:
        raise CorpusError(f"entry {dict(raw)!r:.80}: 'id' must be a non-empty string")
    code = raw.get("code")
    if not isinstance(code, str) or not code:
        raise CorpusError(f"sample {sample_id}: 'code' must be a non-empty string")
    hint = raw.get("function")
    hint_name = hint.get("name") if isinstance(hint, Mapping) else hint
    if hint_name is not None and not isinstance(hint_name, str):
        raise CorpusError(f"sample {sample_id}: 'function' must be a name or an object with 'name'")
    if language == "python":
        source = raw.get("source")
        if source is None and isinstance(hint, Mapping):
            source = hint.get("source")
        ann = annotate_python(
            code, kind=kind, function=hint_name, source=source, sample_id=sample_id
        )
    else:
        ann = annotate_rust(code, kind=kind, function=hint_name, sample_id=sample_id)
    return Sample(
        id=sample_id,
        language=language,
        kind=kind,
        code=code,
        marker_char_pos=ann.marker_char_pos,
        marker_pattern=ann.marker_pattern,
        target_char_positions=ann.target_char_positions,
        function=ann.function,
    )


# --------------------------------------------------------------------------------------------
# Files: reading, loading, converting, checking
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
            "fix the JSON syntax"
        ) from None


def _is_generation_prompts(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("prompts"), list)


def _convert_generation_prompts(data: dict[str, Any], path: Path) -> list[Sample]:
    """PLIP-rs generation prompts ``{prompts: [{id, prompt, category}]}`` -> Rust samples."""
    out = []
    for i, entry in enumerate(data["prompts"]):
        if not isinstance(entry, dict) or "prompt" not in entry:
            raise CorpusError(f"{path}: prompts[{i}]: missing field 'prompt'; add it")
        raw = {"id": entry.get("id", f"prompt_{i}"), "code": entry["prompt"]}
        try:
            out.append(annotate_sample(raw, "rust", "generation"))
        except CorpusError as exc:
            raise CorpusError(f"{path}: {exc}") from None
    return out


def _function_from_json(raw: Any) -> FunctionInfo:
    if not isinstance(raw, dict):
        raise ValueError("'function' must be an object {name, params, arity, source}")
    missing = [k for k in ("name", "params", "arity", "source") if k not in raw]
    if missing:
        raise ValueError(f"'function' lacks {missing}; re-run `plip-nn corpus annotate`")
    params = raw["params"]
    if not isinstance(params, list):
        raise ValueError(f"function.params={params!r} must be a list of strings")
    return FunctionInfo(
        name=raw["name"], params=tuple(params), arity=raw["arity"], source=raw["source"]
    )


def _sample_from_json(raw: Any, language: Language, kind: Kind) -> Sample:
    if not isinstance(raw, dict):
        raise ValueError(f"entry must be an object, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ValueError(
            f"missing field(s) {missing}; add them or run `plip-nn corpus annotate` on {{id, code}}"
        )
    targets = raw["target_char_positions"]
    if not isinstance(targets, list):
        raise ValueError(f"target_char_positions={targets!r} must be a list of ints")
    return Sample(
        id=raw["id"],
        language=language,
        kind=kind,
        code=raw["code"],
        marker_char_pos=raw["marker_char_pos"],
        marker_pattern=raw["marker_pattern"],
        target_char_positions=tuple(targets),
        function=_function_from_json(raw["function"]) if "function" in raw else None,
    )


def _entries(data: Any, path: Path) -> Iterator[tuple[str, int, Any]]:
    """(list name, index, entry) of an our/universal-format file; format errors raise."""
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: top level must be an object with lists {list(LISTS)}")
    version = data.get("_format_version")
    if version != FORMAT_VERSION:
        raise CorpusError(
            f"{path}: _format_version={version!r}; expected {FORMAT_VERSION!r} "
            "(PLIP-rs generation prompts need a top-level 'prompts' list)"
        )
    for key, value in data.items():
        if key.startswith("_"):
            continue
        if key not in LISTS:
            raise CorpusError(f"{path}: unknown list {key!r}; use one of {list(LISTS)}")
        if not isinstance(value, list):
            raise CorpusError(f"{path}: {key!r} must be a list of samples")
        for i, entry in enumerate(value):
            yield key, i, entry


def _entry_id(key: str, i: int, entry: Any) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        return entry["id"]
    return f"{key}[{i}]"


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Load a corpus: ours, PLIP-rs universal v2.0, or PLIP-rs generation prompts.

    Args:
        path: The JSON file; ``None`` loads :data:`DEFAULT_CORPUS_PATH`.

    Returns:
        The corpus. PLIP-rs generation prompts are annotated on the fly (Rust generation).

    Raises:
        CorpusError: Malformed file or sample; the message names the file, the sample and the fix.
    """
    p = Path(path) if path is not None else DEFAULT_CORPUS_PATH
    data = _read_json(p)
    if _is_generation_prompts(data):
        return Corpus(tuple(_convert_generation_prompts(data, p)), p)
    samples = []
    for key, i, entry in _entries(data, p):
        language, kind = LISTS[key]
        try:
            samples.append(_sample_from_json(entry, language, kind))
        except ValueError as exc:
            raise CorpusError(f"{p}: sample {_entry_id(key, i, entry)}: {exc}") from None
    return Corpus(tuple(samples), p)


def check_corpus(corpus_or_path: Corpus | str | Path) -> list[Problem]:
    """Every problem in a corpus: format, fields, ranges, duplicates, causally masked edges.

    A target character after the marker character is an edge the causal mask hides (the marker
    cannot attend to it), reported as ``masked``.

    Args:
        corpus_or_path: A loaded corpus, or a file in any supported format.

    Returns:
        The problems, empty when the corpus is fine.
    """
    if isinstance(corpus_or_path, Corpus):
        where = str(corpus_or_path.path or "<corpus>")
        return _masked_problems(corpus_or_path.samples, where)
    p = Path(corpus_or_path)
    try:
        data = _read_json(p)
    except CorpusError as exc:
        return [Problem(path=str(p), sample_id="-", code="malformed_json", message=str(exc))]
    if _is_generation_prompts(data):
        try:
            samples = _convert_generation_prompts(data, p)
        except CorpusError as exc:
            return [Problem(path=str(p), sample_id="-", code="unannotatable", message=str(exc))]
        return _masked_problems(samples, str(p))
    problems: list[Problem] = []
    samples = []
    ids: dict[str, str] = {}
    try:
        entries = list(_entries(data, p))
    except CorpusError as exc:
        return [Problem(path=str(p), sample_id="-", code="format", message=str(exc))]
    for key, i, entry in entries:
        sid = _entry_id(key, i, entry)
        if sid in ids:
            problems.append(
                Problem(
                    path=str(p),
                    sample_id=sid,
                    code="duplicate_id",
                    message=f"id also used in {ids[sid]}; give each sample a unique id",
                )
            )
        ids.setdefault(sid, f"{key}[{i}]")
        language, kind = LISTS[key]
        try:
            samples.append(_sample_from_json(entry, language, kind))
        except ValueError as exc:
            msg = str(exc)
            code = (
                "missing_field"
                if msg.startswith("missing") or "lacks" in msg
                else "out_of_range"
                if "out of range" in msg
                else "bad_value"
            )
            problems.append(Problem(path=str(p), sample_id=sid, code=code, message=msg))
    return problems + _masked_problems(samples, str(p))


def _masked_problems(samples: Iterable[Sample], where: str) -> list[Problem]:
    out = []
    for s in samples:
        masked = s.masked_targets
        if masked:
            out.append(
                Problem(
                    path=where,
                    sample_id=s.id,
                    code="masked",
                    message=(
                        f"marker at char {s.marker_char_pos} precedes target chars "
                        f"{list(masked)}: those edges are masked by causality; put the marker "
                        "after the function"
                    ),
                )
            )
    return out


def _write_json_atomic(data: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a corpus file is meant to be shared
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def annotate_file(in_path: str | Path, out_path: str | Path) -> Corpus:
    """Annotate ``{id, code}`` entries (any of our lists) and write our format.

    Existing positions in the input are ignored and recomputed. Entries may carry a
    ``function`` name hint and, for Python generation prompts, ``source``.

    Raises:
        CorpusError: Malformed input or an unannotatable sample (named, with the reason).
    """
    src = Path(in_path)
    data = _read_json(src)
    if not isinstance(data, dict):
        raise CorpusError(f"{src}: top level must be an object with lists {list(LISTS)}")
    data = {"_format_version": FORMAT_VERSION, **data}
    samples = []
    for key, i, entry in _entries(data, src):
        language, kind = LISTS[key]
        if not isinstance(entry, dict):
            raise CorpusError(f"{src}: {key}[{i}]: entry must be an object {{id, code}}")
        try:
            samples.append(annotate_sample(entry, language, kind))
        except (CorpusError, ValueError) as exc:
            raise CorpusError(f"{src}: {exc}") from None
    corpus = Corpus(tuple(samples), Path(out_path))
    _write_json_atomic(corpus.to_json(), Path(out_path))
    logger.info("annotated %d samples from %s into %s", len(samples), src, out_path)
    return corpus


def convert_file(in_path: str | Path, out_path: str | Path) -> Corpus:
    """Convert a PLIP-rs file (universal v2.0 or generation prompts) into our format.

    Universal samples keep PLIP-rs's positions (their Rust targets differ from our convention,
    see tests) and gain ``function`` from our annotator when it can find one. Generation
    prompts become ``rust_generation`` samples annotated by our annotator.

    Raises:
        CorpusError: Malformed input.
    """
    src = Path(in_path)
    data = _read_json(src)
    if _is_generation_prompts(data):
        samples = _convert_generation_prompts(data, src)
    else:
        samples = []
        for s in load_corpus(src).samples:
            try:
                ann = (annotate_python if s.language == "python" else annotate_rust)(
                    s.code, kind=s.kind, sample_id=s.id
                )
                s = Sample(**{**s.__dict__, "function": ann.function})
            except CorpusError as exc:
                logger.warning("%s: no function info: %s", src, exc)
            samples.append(s)
    corpus = Corpus(tuple(samples), Path(out_path))
    _write_json_atomic(corpus.to_json(), Path(out_path))
    return corpus


# --------------------------------------------------------------------------------------------
# CLI glue: the only functions here that print (the CLI owns stdout/stderr).
# --------------------------------------------------------------------------------------------


def cli_check(path: str | Path) -> int:
    """``plip-nn corpus check FILE``: print problems to stderr; 0 if none, else 2."""
    problems = check_corpus(path)
    if problems:
        for pr in problems:
            print(pr, file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    corpus = load_corpus(path)
    counts = {k: len(corpus.select(*v)) for k, v in LISTS.items()}
    print(f"{path}: OK, {len(corpus)} samples {counts}")
    return 0


def cli_annotate(in_path: str | Path, out_path: str | Path) -> int:
    """``plip-nn corpus annotate IN -o OUT``: 0 on success, 2 with one error line."""
    try:
        corpus = annotate_file(in_path, out_path)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(corpus)} annotated samples to {out_path}")
    return 0


def cli_convert(in_path: str | Path, out_path: str | Path) -> int:
    """``plip-nn corpus convert IN -o OUT``: 0 on success, 2 with one error line."""
    try:
        corpus = convert_file(in_path, out_path)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(corpus)} samples to {out_path}")
    return 0
