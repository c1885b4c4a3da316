"""Seeded generator of small Python functions with doctests and Rust functions with tests.

The embedded toy model sees far too little real code to learn, from real code alone, that a test
marker (``>>>`` in a docstring, ``#[test]`` after a function) is followed by a call of the
function right above it. This module writes many small, varied, *correct* examples of that
pattern: Python doctest results are computed by running the generated function, Rust expected
values by a Python mirror of the Rust body (integer templates avoid the operators whose
semantics differ between the two languages on negative numbers).

Function names are ``verb_noun`` combinations; the caller passes the names it must never use
(the held-out evaluation prompts' functions). With ``random_names=True`` (the *copy curriculum*)
function and parameter names are instead fresh random snake_case words built from syllables
(``velo_trimka``), so a test can only name its function by copying it from the context: the
model cannot memorise names and must learn to attend back to the definition (induction).
"""

from __future__ import annotations

import builtins
import keyword
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

VERBS = (
    "add", "apply", "bump", "cap", "check", "clip", "combine", "compute", "convert", "count",
    "crop", "decode", "double", "encode", "expand", "extract", "fetch", "filter", "find", "fold",
    "grow", "halve", "join", "keep", "limit", "make", "mark", "measure", "merge", "mix", "norm",
    "pack", "pick", "raise", "rank", "reduce", "render", "scale", "score", "select", "shift",
    "shrink", "shorten", "square", "squash", "step", "sum", "swap", "tally", "trim", "wrap",
)  # fmt: skip
NOUNS = (
    "amount", "batch", "block", "bonus", "cell", "chars", "column", "cost", "counter", "depth",
    "entries", "field", "frame", "gap", "grid", "height", "index", "items", "label", "layer",
    "length", "level", "line", "margin", "message", "offset", "page", "parts", "points", "price",
    "range", "rate", "record", "row", "score", "scores", "series", "size", "slot", "span", "stack",
    "tag", "text", "ticks", "title", "token", "total", "values", "weight", "width", "words",
)  # fmt: skip
PY_PARAMS = {
    "int": ("n", "x", "value", "count", "width", "limit", "start", "step", "size", "k", "num"),
    "str": ("text", "s", "word", "name", "line", "label", "message", "key", "phrase"),
    "list": ("items", "values", "numbers", "data", "xs", "scores", "nums"),
}
# Bare verbs that would break or shadow something as a function name.
_RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"fn", "mod", "use", "type"}
# Syllables of the copy curriculum's random names (consonant-vowel(-consonant) pieces).
SYLLABLES = tuple(
    c + v + t
    for c in (*"bdfgklmnprstvz", "tr", "pl", "sk")
    for v in ("a", "e", "i", "o", "u")
    for t in ("", "", "n", "r", "x")
)
# Names a random parameter must not take: Rust/Python keywords and the templates' local variables.
_RS_KEYWORDS = frozenset((
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self",
    "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "async",
    "await", "dyn", "abstract", "become", "box", "do", "final", "macro", "override", "priv",
    "typeof", "unsized", "virtual", "yield", "try",
))  # fmt: skip
_LOCALS = frozenset({"item", "total", "i", "words", "w", "result", "e", "out", "v"})
WORDS = ("alpha", "beta", "red fox", "hello world", "a b c", "plip", "Data", "x y", "spam eggs")


@dataclass(frozen=True, kw_only=True)
class _PyTemplate:
    kinds: tuple[str, ...]
    body: str  # uses {a} {b} {c} for parameters, {k} for a small constant
    hint: str  # return annotation
    summary: str


@dataclass(frozen=True, kw_only=True)
class _RsTemplate:
    kinds: tuple[str, ...]  # "int" (i64), "nat" (i64 >= 0), "str" (&str), "list" (&[i64]), "usize"
    body: str
    ret: str  # Rust return type: i64, bool, String, usize, Vec<i64>
    mirror: Callable[..., Any]  # Python computation of the same value
    summary: str


PY_TEMPLATES = (
    _PyTemplate(kinds=("int",), body="return {a} * {a}", hint="int", summary="Square {a}."),
    _PyTemplate(kinds=("int",), body="return {a} + {k}", hint="int", summary="Add {k} to {a}."),
    _PyTemplate(kinds=("int",), body="return {a} % {k} == 0", hint="bool", summary="Tell whether {a} is a multiple of {k}."),
    _PyTemplate(kinds=("int",), body="return abs({a} - {k})", hint="int", summary="Distance from {a} to {k}."),
    _PyTemplate(kinds=("int",), body="if {a} < 0:\n    return -{a}\nreturn {a}", hint="int", summary="Return the magnitude of {a}."),
    _PyTemplate(kinds=("int",), body="total = 0\nfor i in range({a}):\n    total += i * {k}\nreturn total", hint="int", summary="Sum the first {a} multiples of {k}."),
    _PyTemplate(kinds=("int",), body="return str({a}).zfill({k})", hint="str", summary="Pad {a} with zeros to {k} digits."),
    _PyTemplate(kinds=("str",), body="return {a}.upper()", hint="str", summary="Upper-case {a}."),
    _PyTemplate(kinds=("str",), body="return {a}[::-1]", hint="str", summary="Reverse {a}."),
    _PyTemplate(kinds=("str",), body="return len({a}.split())", hint="int", summary="Count the words in {a}."),
    _PyTemplate(kinds=("str",), body="return {a}.strip().title()", hint="str", summary="Title-case {a}."),
    _PyTemplate(kinds=("str",), body="return {a}.replace(' ', '_')", hint="str", summary="Replace spaces in {a} by underscores."),
    _PyTemplate(kinds=("str",), body="words = {a}.split()\nreturn [w for w in words if len(w) > {k}]", hint="list", summary="Keep the words of {a} longer than {k}."),
    _PyTemplate(kinds=("list",), body="return sum({a})", hint="int", summary="Add up {a}."),
    _PyTemplate(kinds=("list",), body="return max({a})", hint="int", summary="Largest element of {a}."),
    _PyTemplate(kinds=("list",), body="return sorted({a})", hint="list", summary="Sorted copy of {a}."),
    _PyTemplate(kinds=("list",), body="return [item * {k} for item in {a}]", hint="list", summary="Multiply each element of {a} by {k}."),
    _PyTemplate(kinds=("list",), body="return [item for item in {a} if item % 2 == 0]", hint="list", summary="Even elements of {a}."),
    _PyTemplate(kinds=("list",), body="return len(set({a}))", hint="int", summary="Number of distinct elements of {a}."),
    _PyTemplate(kinds=("list",), body="result = []\nfor item in {a}:\n    if item > {k}:\n        result.append(item)\nreturn result", hint="list", summary="Elements of {a} above {k}."),
    _PyTemplate(kinds=("list",), body="return {a}[-1] if {a} else None", hint="int", summary="Last element of {a}, or None."),
    _PyTemplate(kinds=("int", "int"), body="return {a} + {b}", hint="int", summary="Add {a} and {b}."),
    _PyTemplate(kinds=("int", "int"), body="return {a} * {b} - {k}", hint="int", summary="Multiply {a} by {b} and subtract {k}."),
    _PyTemplate(kinds=("int", "int"), body="return max({a}, {b})", hint="int", summary="Larger of {a} and {b}."),
    _PyTemplate(kinds=("int", "int"), body="return ({a} + {b}) / 2", hint="float", summary="Mean of {a} and {b}."),
    _PyTemplate(kinds=("int", "int"), body="return {a} ** 2 + {b} ** 2", hint="int", summary="Sum of the squares of {a} and {b}."),
    _PyTemplate(kinds=("int", "int"), body="if {a} > {b}:\n    return {a} - {b}\nreturn {b} - {a}", hint="int", summary="Absolute difference of {a} and {b}."),
    _PyTemplate(kinds=("str", "int"), body="return {a} * {b}", hint="str", summary="Repeat {a} {b} times."),
    _PyTemplate(kinds=("str", "int"), body="return {a}[:{b}]", hint="str", summary="First {b} characters of {a}."),
    _PyTemplate(kinds=("str", "int"), body="return {a}.rjust({b}, '.')", hint="str", summary="Right-align {a} in {b} columns."),
    _PyTemplate(kinds=("list", "int"), body="return [item + {b} for item in {a}]", hint="list", summary="Add {b} to each element of {a}."),
    _PyTemplate(kinds=("list", "int"), body="return [item for item in {a} if item < {b}]", hint="list", summary="Elements of {a} below {b}."),
    _PyTemplate(kinds=("list", "int"), body="return {a}.count({b})", hint="int", summary="How often {b} occurs in {a}."),
    _PyTemplate(kinds=("str", "str"), body="return {a} + '-' + {b}", hint="str", summary="Join {a} and {b} with a dash."),
    _PyTemplate(kinds=("str", "str"), body="return {a}.startswith({b})", hint="bool", summary="Tell whether {a} starts with {b}."),
    _PyTemplate(kinds=("int", "int", "int"), body="return max({a}, min({b}, {c}))", hint="int", summary="Clamp {b} and {c} below by {a}."),
    _PyTemplate(kinds=("int", "int", "int"), body="return {a} * {b} + {c}", hint="int", summary="Compute {a} * {b} + {c}."),
    _PyTemplate(kinds=("int", "int", "int"), body="return ({a} + {b} + {c}) // 3", hint="int", summary="Integer mean of three numbers."),
    _PyTemplate(kinds=("list", "int", "int"), body="return [min(max(item, {b}), {c}) for item in {a}]", hint="list", summary="Clamp each element of {a} to [{b}, {c}]."),
)  # fmt: skip

RS_TEMPLATES = (
    _RsTemplate(kinds=("int",), body="{a} * {a}", ret="i64", mirror=lambda a, k: a * a, summary="Squares `{a}`."),
    _RsTemplate(kinds=("int",), body="{a} + {k}", ret="i64", mirror=lambda a, k: a + k, summary="Adds {k} to `{a}`."),
    _RsTemplate(kinds=("int",), body="({a} - {k}).abs()", ret="i64", mirror=lambda a, k: abs(a - k), summary="Distance from `{a}` to {k}."),
    _RsTemplate(kinds=("int",), body="if {a} < 0 {{\n    -{a}\n}} else {{\n    {a}\n}}", ret="i64", mirror=lambda a, k: abs(a), summary="Magnitude of `{a}`."),
    _RsTemplate(kinds=("nat",), body="let mut total = 0;\nfor i in 0..{a} {{\n    total += i * {k};\n}}\ntotal", ret="i64", mirror=lambda a, k: sum(i * k for i in range(a)), summary="Sums the first `{a}` multiples of {k}."),
    _RsTemplate(kinds=("nat",), body="{a} % {k} == 0", ret="bool", mirror=lambda a, k: a % k == 0, summary="Whether `{a}` is a multiple of {k}."),
    _RsTemplate(kinds=("int",), body="{a} > {k}", ret="bool", mirror=lambda a, k: a > k, summary="Whether `{a}` exceeds {k}."),
    _RsTemplate(kinds=("str",), body="{a}.to_uppercase()", ret="String", mirror=lambda a, k: a.upper(), summary="Upper-cases `{a}`."),
    _RsTemplate(kinds=("str",), body="{a}.chars().rev().collect()", ret="String", mirror=lambda a, k: a[::-1], summary="Reverses `{a}`."),
    _RsTemplate(kinds=("str",), body="{a}.replace(' ', \"_\")", ret="String", mirror=lambda a, k: a.replace(" ", "_"), summary="Replaces spaces in `{a}` by underscores."),
    _RsTemplate(kinds=("str",), body="{a}.split_whitespace().count()", ret="usize", mirror=lambda a, k: len(a.split()), summary="Counts the words in `{a}`."),
    _RsTemplate(kinds=("str",), body="{a}.len()", ret="usize", mirror=lambda a, k: len(a), summary="Length of `{a}` in bytes."),
    _RsTemplate(kinds=("list",), body="{a}.iter().sum()", ret="i64", mirror=lambda a, k: sum(a), summary="Adds up `{a}`."),
    _RsTemplate(kinds=("list",), body="{a}.iter().filter(|e| **e > {k}).count()", ret="usize", mirror=lambda a, k: sum(x > k for x in a), summary="Counts the elements of `{a}` above {k}."),
    _RsTemplate(kinds=("list",), body="{a}.iter().map(|e| e * {k}).collect()", ret="Vec<i64>", mirror=lambda a, k: [x * k for x in a], summary="Multiplies each element of `{a}` by {k}."),
    _RsTemplate(kinds=("list",), body="let mut out = Vec::new();\nfor e in {a} {{\n    if *e > {k} {{\n        out.push(*e);\n    }}\n}}\nout", ret="Vec<i64>", mirror=lambda a, k: [x for x in a if x > k], summary="Elements of `{a}` above {k}."),
    _RsTemplate(kinds=("list",), body="let mut v = {a}.to_vec();\nv.sort();\nv", ret="Vec<i64>", mirror=lambda a, k: sorted(a), summary="Sorted copy of `{a}`."),
    _RsTemplate(kinds=("int", "int"), body="{a} + {b}", ret="i64", mirror=lambda a, b, k: a + b, summary="Adds `{a}` and `{b}`."),
    _RsTemplate(kinds=("int", "int"), body="{a} * {b} - {k}", ret="i64", mirror=lambda a, b, k: a * b - k, summary="Multiplies `{a}` by `{b}` and subtracts {k}."),
    _RsTemplate(kinds=("int", "int"), body="{a}.max({b})", ret="i64", mirror=lambda a, b, k: max(a, b), summary="Larger of `{a}` and `{b}`."),
    _RsTemplate(kinds=("int", "int"), body="{a} * {a} + {b} * {b}", ret="i64", mirror=lambda a, b, k: a * a + b * b, summary="Sum of squares."),
    _RsTemplate(kinds=("int", "int"), body="{a} == {b}", ret="bool", mirror=lambda a, b, k: a == b, summary="Whether `{a}` equals `{b}`."),
    _RsTemplate(kinds=("str", "usize"), body="{a}.repeat({b})", ret="String", mirror=lambda a, b, k: a * b, summary="Repeats `{a}` `{b}` times."),
    _RsTemplate(kinds=("str", "usize"), body="{a}.chars().take({b}).collect()", ret="String", mirror=lambda a, b, k: a[:b], summary="First `{b}` characters of `{a}`."),
    _RsTemplate(kinds=("list", "int"), body="{a}.iter().map(|e| e + {b}).collect()", ret="Vec<i64>", mirror=lambda a, b, k: [x + b for x in a], summary="Adds `{b}` to each element."),
    _RsTemplate(kinds=("list", "int"), body="{a}.iter().filter(|e| **e < {b}).cloned().collect()", ret="Vec<i64>", mirror=lambda a, b, k: [x for x in a if x < b], summary="Elements of `{a}` below `{b}`."),
    _RsTemplate(kinds=("int", "int", "int"), body="{a} * {b} + {c}", ret="i64", mirror=lambda a, b, c, k: a * b + c, summary="Computes `{a} * {b} + {c}`."),
    _RsTemplate(kinds=("int", "int", "int"), body="{a}.max({b}.min({c}))", ret="i64", mirror=lambda a, b, c, k: max(a, min(b, c)), summary="Clamps with a lower bound."),
)  # fmt: skip

RS_PARAMS = {
    "int": ("n", "x", "value", "count", "width", "limit", "start", "step", "k", "num"),
    "nat": ("n", "count", "steps", "size", "times"),
    "usize": ("n", "count", "len", "width", "times"),
    "str": ("text", "s", "word", "name", "line", "label", "input"),
    "list": ("items", "values", "numbers", "data", "xs", "scores", "nums"),
}
RS_TYPES = {"int": "i64", "nat": "i64", "usize": "usize", "str": "&str", "list": "&[i64]"}


def _value(rng: random.Random, kind: str) -> Any:
    if kind == "int":
        return rng.randint(-20, 60)
    if kind in ("nat", "usize"):
        return rng.randint(0, 12)
    if kind == "str":
        return rng.choice(WORDS)
    return [rng.randint(-5, 30) for _ in range(rng.randint(1, 5))]


def _rs_literal(value: Any, kind: str) -> str:
    if kind == "str":
        return f'"{value}"'
    if kind == "list":
        return "&[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _rs_result(value: Any, ret: str) -> str:
    if ret == "String":
        return f'"{value}"'
    if ret == "Vec<i64>":
        return "vec![" + ", ".join(str(v) for v in value) + "]"
    if ret == "bool":
        return "true" if value else "false"
    return str(value)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def pick_by_arity(
    rng: random.Random, items: Sequence[Any], arity: Callable[[Any], int], balance: bool
) -> Any:
    """One of ``items``; with ``balance`` (curriculum v3) the parameter count ``arity(item)`` is
    drawn uniformly first, so rare arities are as common as frequent ones."""
    if not balance:
        return rng.choice(items)
    n = rng.choice(sorted({arity(x) for x in items}))
    return rng.choice([x for x in items if arity(x) == n])


class CodeGenerator:
    """Seeded generator of synthetic Python/Rust documents that pair functions with tests.

    Args:
        seed: random seed; the same seed yields the same documents.
        exclude: function names that must never be generated.
    """

    def __init__(
        self,
        *,
        seed: int,
        exclude: Iterable[str],
        random_names: bool = False,
        words: Sequence[str] = (),
        arity_balance: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        # Curriculum v3 (stage 6): pick the parameter count uniformly before the template, so
        # two- and three-parameter functions are as common as one-parameter ones (most templates
        # take one, and the model learned to call with one argument whatever the signature).
        self.arity_balance = arity_balance
        self.exclude = frozenset(exclude)
        self.random_names = random_names
        # Copy curriculum v2: half of the random names join real identifier words (``load_row``,
        # ``parse_cache_entry``) so the copied token sequences look like real code's names, not
        # only syllable soup; the combinations are random, so none can be memorised.
        self.words = tuple(words)
        self.names = [
            f"{v}_{n}" for v in VERBS for n in NOUNS if f"{v}_{n}" not in self.exclude
        ] + [v for v in VERBS if v not in self.exclude and v not in _RESERVED]

    def _random_word(self, max_syllables: int) -> str:
        return "".join(
            self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(1, max_syllables))
        )

    def random_identifier(self, *, words: tuple[int, ...], max_syllables: int) -> str:
        """A fresh random snake_case identifier that is no keyword, builtin or excluded name.

        With a word list, half of the identifiers join random real words instead of syllables.
        """
        while True:
            n_words = self.rng.choice(words)
            if self.words and self.rng.random() < 0.5:
                name = "_".join(self.rng.choice(self.words) for _ in range(n_words))
            else:
                name = "_".join(self._random_word(max_syllables) for _ in range(n_words))
            if len(name) > 1 and name not in self.exclude and name not in _RESERVED | _RS_KEYWORDS:
                return name

    def _template(self, templates: Sequence[Any]) -> Any:
        return pick_by_arity(self.rng, templates, lambda t: len(t.kinds), self.arity_balance)

    def _name(self, used: set[str]) -> str:
        while True:
            if self.random_names:
                name = self.random_identifier(words=(1, 2, 2, 2, 3), max_syllables=3)
            else:
                name = self.rng.choice(self.names)
            if name not in used:
                used.add(name)
                return name

    # -- Python -------------------------------------------------------------------------------
    def python_function(self, used: set[str]) -> str:
        """One Python function with a docstring holding 1-3 doctest examples."""
        rng = self.rng
        while True:
            tpl = self._template(PY_TEMPLATES)
            params = self._params(PY_PARAMS, tpl.kinds)
            k = rng.randint(2, 9)
            fields = dict(zip("abc", params, strict=False))
            body = tpl.body.format(k=k, **fields)
            name = self._name(used)
            hinted = rng.random() < 0.5
            hints = {"int": "int", "str": "str", "list": "list[int]"}
            sig = ", ".join(
                f"{p}: {hints[kind]}" if hinted else p
                for p, kind in zip(params, tpl.kinds, strict=True)
            )
            ret = f" -> {tpl.hint}" if hinted and tpl.hint != "list" else ""
            src = f"def {name}({sig}){ret}:\n" + _indent(body, "    ") + "\n"
            namespace: dict[str, Any] = {}
            try:
                exec(compile(src, "<synthetic>", "exec"), namespace)  # our own generated code
                examples = []
                # Copy curriculum: mostly one example, so the call must be copied from the `def`.
                n_examples = rng.choice((1, 1, 2) if self.random_names else (1, 1, 2, 2, 3))
                for _ in range(n_examples):
                    args = [_value(rng, kind) for kind in tpl.kinds]
                    result = namespace[name](*args)
                    call = f"{name}({', '.join(repr(a) for a in args)})"
                    examples.append((call, "" if result is None else repr(result)))
            except (ZeroDivisionError, ValueError, TypeError, IndexError, RecursionError):
                continue
            return self._python_doc(
                name, sig, ret, body, tpl.summary.format(k=k, **fields), examples, params
            )

    def _python_doc(
        self,
        name: str,
        sig: str,
        ret: str,
        body: str,
        summary: str,
        examples: list[tuple[str, str]],
        params: list[str],
    ) -> str:
        rng = self.rng
        doc = [f'    """{summary}', ""]
        if rng.random() < 0.3:
            doc += ["    Args:"] + [f"        {p}: The {p}." for p in params] + [""]
            doc += ["    Returns:", "        The result.", ""]
        if rng.random() < 0.2:
            doc += [rng.choice(("    Example:", "    Examples:", "    For example:")), ""]
        for call, result in examples:
            doc.append(f"    >>> {call}")
            if result:
                doc.append(f"    {result}")
        doc.append('    """')
        return f"def {name}({sig}){ret}:\n" + "\n".join(doc) + "\n" + _indent(body, "    ") + "\n"

    def python_document(self) -> str:
        """A small module: optional import, 1-3 functions, each with doctests."""
        rng = self.rng
        used: set[str] = set()
        parts = []
        if rng.random() < 0.25:
            parts.append(rng.choice(("import math\n", "import re\n", "from typing import List\n")))
        n_funcs = rng.choice((1, 1, 2) if self.random_names else (1, 2, 2, 3))
        parts += [self.python_function(used) for _ in range(n_funcs)]
        return "\n\n".join(parts)

    # -- Rust ---------------------------------------------------------------------------------
    def _params(self, pools: dict[str, tuple[str, ...]], kinds: tuple[str, ...]) -> list[str]:
        params: list[str] = []
        for kind in kinds:
            if self.random_names:
                while True:
                    p = self.random_identifier(words=(1, 1, 1, 2), max_syllables=2)
                    if p not in params and p not in _LOCALS:
                        break
                params.append(p)
                continue
            choices = [p for p in pools[kind] if p not in params]
            params.append(self.rng.choice(choices))
        return params

    def rust_function(self, used: set[str]) -> tuple[str, str, list[str]]:
        """One Rust function; returns (source, name, test statements calling it)."""
        rng = self.rng
        tpl = self._template(RS_TEMPLATES)
        params = self._params(RS_PARAMS, tpl.kinds)
        k = rng.randint(2, 9)
        fields = dict(zip("abc", params, strict=False))
        body = tpl.body.format(k=k, **fields)
        name = self._name(used)
        sig = ", ".join(f"{p}: {RS_TYPES[kind]}" for p, kind in zip(params, tpl.kinds, strict=True))
        doc = f"/// {tpl.summary.format(k=k, **fields)}\n" if rng.random() < 0.5 else ""
        vis = "pub " if rng.random() < 0.4 else ""
        src = f"{doc}{vis}fn {name}({sig}) -> {tpl.ret} {{\n" + _indent(body, "    ") + "\n}\n"
        statements = []
        for _ in range(rng.choice((1, 1, 2) if self.random_names else (1, 1, 2, 3))):
            args = [_value(rng, kind) for kind in tpl.kinds]
            expected = tpl.mirror(*args, k)
            call = f"{name}({', '.join(_rs_literal(a, kind) for a, kind in zip(args, tpl.kinds, strict=True))})"
            # Copy curriculum: mostly ``let result = name(..)``, where the name is written with a
            # leading space exactly as after ``fn`` (``assert_eq!(name(`` glues it to ``!(``).
            let_share = 0.6 if self.random_names else 0.2
            if tpl.ret == "bool" and rng.random() >= let_share:
                statements.append(f"assert!({call});" if expected else f"assert!(!{call});")
            elif tpl.ret == "bool":
                statements.append(f"let result = {call};")
                statements.append("assert!(result);" if expected else "assert!(!result);")
            elif rng.random() < let_share:
                statements.append(f"let result = {call};")
                statements.append(f"assert_eq!(result, {_rs_result(expected, tpl.ret)});")
            else:
                statements.append(f"assert_eq!({call}, {_rs_result(expected, tpl.ret)});")
        return src, name, statements

    def _test_name(self, name: str, used: set[str]) -> str:
        styles: tuple[str, ...] = (
            "test_{n}", "test_{n}", "{n}_works", "{n}_basic", "test_{n}_simple", "check_{n}",
        )  # fmt: skip
        if self.random_names and self.words:
            # Curriculum v2 (stage 5): a quarter generic names, so the copy also happens in
            # the body; stage 4 used half, and its generic-named tests drifted into bodies
            # that call nothing.
            styles += ("it_works", "basic")
        elif self.random_names:
            styles += ("it_works", "test_basic", "basic", "works", "test_it", "simple_case")
        test_name = self.rng.choice(styles).format(n=name)
        if test_name in used:  # a generic name already taken in this file
            test_name = f"test_{name}"
        used.add(test_name)
        return test_name

    def rust_document(self) -> str:
        """A small Rust file: functions, each followed by a ``#[test]`` that calls it."""
        rng = self.rng
        used: set[str] = set()
        parts = []
        if rng.random() < 0.2:
            parts.append(rng.choice(("use std::collections::HashMap;\n", "use std::fmt;\n")))
        n_funcs = rng.choice((1, 1, 2) if self.random_names else (1, 2, 2, 3))
        funcs = [self.rust_function(used) for _ in range(n_funcs)]
        if rng.random() < 0.25:
            # The idiomatic layout: functions first, then a test module.
            parts += [src for src, _, _ in funcs]
            tests = [
                "    #[test]\n"
                f"    fn {self._test_name(name, used)}() {{\n"
                + _indent("\n".join(stmts), "        ")
                + "\n    }\n"
                for _, name, stmts in funcs
            ]
            parts.append(
                "#[cfg(test)]\nmod tests {\n    use super::*;\n\n" + "\n".join(tests) + "}\n"
            )
        else:
            for src, name, stmts in funcs:
                parts.append(src)
                parts.append(
                    f"#[test]\nfn {self._test_name(name, used)}() {{\n"
                    + _indent("\n".join(stmts), "    ")
                    + "\n}\n"
                )
        return "\n".join(parts)
