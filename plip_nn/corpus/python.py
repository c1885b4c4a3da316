"""Python annotation with ``ast``, ``tokenize`` and ``doctest`` (conventions in the package doc)."""

from __future__ import annotations

import ast
import doctest
import io
import tokenize
from typing import Any

from plip_nn.codesrc import PY_GENERATION_SUFFIX, PY_MARKER, generation_suffix
from plip_nn.corpus.model import Annotation, AnnotationFailure, CorpusError, FunctionInfo, Kind

__all__ = ["annotate_python"]


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
            raise AnnotationFailure(
                f"Python does not parse: {exc.msg} (line {exc.lineno})"
            ) from None
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
        raise AnnotationFailure(f"no name token after char {char_pos}")

    def targets(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[list[int], list[str]]:
        """Target chars (def, name, params) and declared parameter spellings."""
        start = self.pos_bytes(fn.lineno, fn.col_offset)
        kw = self.token_after(start)
        if kw.string == "async":
            kw = self.token_after(self.pos(*kw.end))
        if kw.string != "def":
            raise AnnotationFailure(f"expected 'def' at line {fn.lineno}, found {kw.string!r}")
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
                raise AnnotationFailure(
                    f"parameter {arg.arg!r} of {fn.name!r} has no name token at char {p}"
                )
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
            raise AnnotationFailure(
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
                # ex.indent counts columns after tab expansion; the '>>>' is the line's
                # first non-blank character.
                line = body[body_lines[ex.lineno] :]
                p = body_start + body_lines[ex.lineno] + len(line) - len(line.lstrip(" \t"))
                if self.code[p : p + 3] != PY_MARKER:
                    raise AnnotationFailure(
                        f"doctest example of {fn.name!r} does not map to '>>>' at {p}"
                    )
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
    raise AnnotationFailure(f"function {name!r} not found among {what} {[f.name for f in fns]}")


def _close_python_prompt(code: str) -> str:
    """Complete a prompt that ends inside a docstring so that ``ast`` can parse it."""
    marker = len(code) - len(generation_suffix(code, "python") or PY_GENERATION_SUFFIX)
    line_start = code.rfind("\n", 0, marker) + 1
    indent = code[line_start:marker]
    if indent.strip():
        raise AnnotationFailure("the trailing '>>>' must start its own docstring line")
    for quote in ('"""', "'''"):
        # `None` makes the trailing `>>>` a real (non-blank) doctest example for `doctest`.
        # The body's `pass` goes at the marker's indent or, for an example indented deeper
        # than the function body (a fenced block), at the first shorter indent that parses.
        for cut in range(len(indent), -1, -1):
            completed = f"{code[:marker]}>>> None\n{indent}{quote}\n{indent[:cut]}pass\n"
            try:
                ast.parse(completed)
            except SyntaxError:
                continue
            return completed
    raise AnnotationFailure(
        "the code before the trailing '>>>' is not a function with an open docstring"
    )


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
            the code ends with a generation ending (``>>>``, or the older ``>>> ``;
            :func:`plip_nn.codesrc.generation_suffix`) and test otherwise.
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
    except AnnotationFailure as exc:
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
        raise AnnotationFailure("no function definition")
    if kind == "test":
        with_examples = [(fn, ex) for fn in fns if (ex := src.docstring_examples(fn))]
        if not with_examples:
            raise AnnotationFailure(
                "no function has a doctest example ('>>>' starting a docstring line)"
            )
        fn = _pick([f for f, _ in with_examples], function, "functions with doctests")
        marker = dict((id(f), ex) for f, ex in with_examples)[id(fn)][0]
    elif kind == "baseline":
        fn = _pick(fns, function, "functions")
        found = src.false_markers()
        if not found:
            raise AnnotationFailure("no '>>>' inside a comment or string (a false marker)")
        marker = found[0]
    else:
        raise AnnotationFailure(f"kind={kind!r} must be 'test', 'baseline' or 'generation'")
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
        raise AnnotationFailure("a Python generation prompt must end with '>>>' inside a docstring")
    marker = len(code) - len(suffix)
    src = _PySource(_close_python_prompt(code))
    owner = [fn for fn in src.functions() if marker in src.docstring_examples(fn)]
    if not owner:
        raise AnnotationFailure("the trailing '>>>' is not in a function's docstring")
    fn = owner[-1]
    if function is not None and fn.name != function:
        raise AnnotationFailure(
            f"the trailing '>>>' is in {fn.name!r}'s docstring, not {function!r}'s"
        )
    targets, params = src.targets(fn)
    if source is None:
        raise AnnotationFailure(
            "the prompt stops inside the docstring, so the function body is missing; "
            "give 'source' (the complete program defining the function)"
        )
    full = _PySource(source)
    matching = [f for f in full.functions() if f.name == fn.name]
    if not matching or full.targets(matching[-1])[1] != params:
        raise AnnotationFailure(f"'source' does not define {fn.name}({', '.join(params)})")
    return Annotation(
        marker_char_pos=marker,
        marker_pattern=PY_MARKER,
        target_char_positions=tuple(targets),
        function=FunctionInfo(name=fn.name, params=tuple(params), arity=len(params), source=source),
    )
