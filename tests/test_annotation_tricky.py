"""Annotation on hand-written tricky samples, with hand-placed expected positions.

Each template marks, by hand, the marker with ``⟨M⟩`` and every target with ``⟨T⟩`` right
before the expected character; the helper removes the marks and records where they were. The
expected positions are therefore written by a person, not computed by the annotator.
"""

from __future__ import annotations

import pytest

from plip_nn.corpus import CorpusError, annotate_python, annotate_rust

M, T = "⟨M⟩", "⟨T⟩"


def unmark(template: str) -> tuple[str, int, list[int]]:
    """Strip the marks: (code, marker char, target chars in order)."""
    code, marker, targets = "", -1, []
    i = 0
    while i < len(template):
        if template.startswith(M, i):
            marker = len(code)
            i += len(M)
        elif template.startswith(T, i):
            targets.append(len(code))
            i += len(T)
        else:
            code += template[i]
            i += 1
    assert marker >= 0, "template without a marker"
    return code, marker, targets


# (id, kind, template, expected params, function hint)
PYTHON_CASES = [
    (
        "async_def",
        "test",
        'async ⟨T⟩def ⟨T⟩fetch(⟨T⟩url):\n    """⟨M⟩>>> 1\n    1\n    """\n',
        ("url",),
        None,
    ),
    (
        "decorators",
        "test",
        '@staticmethod\n@other(">>> not this")\n⟨T⟩def ⟨T⟩f(⟨T⟩x):\n    """Doc.\n\n'
        '    ⟨M⟩>>> f(1)\n    """\n',
        ("x",),
        None,
    ),
    (
        "method_self",
        "test",
        'class A:\n    ⟨T⟩def ⟨T⟩m(⟨T⟩self, ⟨T⟩y):\n        """\n        ⟨M⟩>>> A().m(2)\n'
        '        2\n        """\n        return y\n',
        ("self", "y"),
        None,
    ),
    (
        "annotations_defaults",
        "test",
        '⟨T⟩def ⟨T⟩g(⟨T⟩a: int = 1, ⟨T⟩b: "list[str]" = [">>>"]) -> int:\n'
        '    """\n    ⟨M⟩>>> g()\n    """\n',
        ("a", "b"),
        None,
    ),
    (
        "varargs_kwargs",
        "test",
        '⟨T⟩def ⟨T⟩h(*⟨T⟩args, **⟨T⟩kwargs):\n    """⟨M⟩>>> h()"""\n',
        ("*args", "**kwargs"),
        None,
    ),
    (
        "posonly_kwonly",
        "test",
        '⟨T⟩def ⟨T⟩k(⟨T⟩a, /, ⟨T⟩b, *, ⟨T⟩c=3):\n    """\n    ⟨M⟩>>> k(1, 2)\n    """\n',
        ("a", "b", "c"),
        None,
    ),
    (
        "all_kinds",
        "test",
        '⟨T⟩def ⟨T⟩z(⟨T⟩p, /, ⟨T⟩q=1, *⟨T⟩rest, ⟨T⟩kw, **⟨T⟩opts):\n    """⟨M⟩>>> 0\n    0\n    """\n',
        ("p", "q", "*rest", "kw", "**opts"),
        None,
    ),
    (
        "non_ascii",
        "test",
        '⟨T⟩def ⟨T⟩größe(⟨T⟩länge, ⟨T⟩π):\n    """Fläche.\n\n    ⟨M⟩>>> größe(1, 2)\n    """\n',
        ("länge", "π"),
        None,
    ),
    (
        "several_examples_first_wins",
        "test",
        '⟨T⟩def ⟨T⟩f(⟨T⟩n):\n    """\n    ⟨M⟩>>> f(1)\n    1\n    >>> f(2)\n    2\n    """\n',
        ("n",),
        None,
    ),
    (
        "comment_marker_is_not_test",
        "test",
        "# >>> f(0) in a comment\n⟨T⟩def ⟨T⟩f(⟨T⟩n):\n    # >>> again a comment\n"
        '    """Text with >>> mid-line.\n\n    ⟨M⟩>>> f(3)\n    """\n',
        ("n",),
        None,
    ),
    (
        "string_marker_in_earlier_function",
        "test",
        'def helper():\n    return ">>> helper()"\n\n\n⟨T⟩def ⟨T⟩main(⟨T⟩v):\n'
        '    """\n    ⟨M⟩>>> main(1)\n    """\n',
        ("v",),
        None,
    ),
    (
        "first_function_with_doctest",
        "test",
        'def plain(a):\n    """No example."""\n\n\n⟨T⟩def ⟨T⟩tested(⟨T⟩b):\n'
        '    """\n    ⟨M⟩>>> tested(1)\n    """\n',
        ("b",),
        None,
    ),
    (
        "hint_picks_second",
        "test",
        'def one(a):\n    """\n    >>> one(1)\n    """\n\n\n⟨T⟩def ⟨T⟩two(⟨T⟩b):\n'
        '    """\n    ⟨M⟩>>> two(2)\n    """\n',
        ("b",),
        "two",
    ),
    (
        "raw_single_quoted_docstring",
        "test",
        "⟨T⟩def ⟨T⟩r(⟨T⟩s):\n    r'''Regex \\d.\n\n    ⟨M⟩>>> r('1')\n    '''\n",
        ("s",),
        None,
    ),
    (
        "multiline_signature",
        "test",
        '⟨T⟩def ⟨T⟩wide(\n    ⟨T⟩first,\n    ⟨T⟩second=(1, 2),\n):\n    """\n    ⟨M⟩>>> wide(0)\n    """\n',
        ("first", "second"),
        None,
    ),
    (
        "nested_function",
        "test",
        'def outer():\n    ⟨T⟩def ⟨T⟩inner(⟨T⟩q):\n        """⟨M⟩>>> 1\n        1\n        """\n'
        "    return inner\n",
        ("q",),
        None,
    ),
    (
        "baseline_comment",
        "baseline",
        "⟨T⟩def ⟨T⟩add(⟨T⟩a, ⟨T⟩b):\n    # ⟨M⟩>>> add(1, 2)\n    return a + b\n",
        ("a", "b"),
        None,
    ),
    (
        "baseline_fstring",
        "baseline",
        '⟨T⟩def ⟨T⟩echo(⟨T⟩cmd):\n    return f"⟨M⟩>>> {cmd}"\n',
        ("cmd",),
        None,
    ),
    (
        "generation_with_helper",
        "generation",
        'def h(x):\n    """\n    >>> h(1)\n    """\n    return x\n\n\n'
        '⟨T⟩def ⟨T⟩g(⟨T⟩y, *, ⟨T⟩z=2):\n    """Doc.\n\n    ⟨M⟩>>> ',
        ("y", "z"),
        None,
    ),
]

RUST_CASES = [
    (
        "mut_self",
        "test",
        "struct S { n: u8 }\nimpl S {\n    ⟨T⟩fn ⟨T⟩bump(&mut ⟨T⟩self, ⟨T⟩by: u8) { self.n += by; }\n}\n\n"
        "⟨M⟩#[test]\nfn test_bump() { let mut s = S { n: 0 }; s.bump(2); }\n",
        ("self", "by"),
        None,
    ),
    (
        "mut_param",
        "test",
        "⟨T⟩fn ⟨T⟩count(mut ⟨T⟩n: u32) -> u32 { n += 1; n }\n\n⟨M⟩#[test]\nfn t() { assert_eq!(count(1), 2); }\n",
        ("n",),
        None,
    ),
    (
        "generics_lifetimes",
        "test",
        "⟨T⟩fn ⟨T⟩pick<'a, T: Clone>(⟨T⟩xs: &'a [T], ⟨T⟩i: usize) -> &'a T { &xs[i] }\n\n"
        "⟨M⟩#[test]\nfn test_pick() { assert_eq!(*pick(&[1, 2], 1), 2); }\n",
        ("xs", "i"),
        None,
    ),
    (
        "where_clause",
        "test",
        "⟨T⟩fn ⟨T⟩total<I>(⟨T⟩it: I) -> i32\nwhere\n    I: Iterator<Item = i32>,\n{\n    it.sum()\n}\n\n"
        "⟨M⟩#[test]\nfn test_total() { assert_eq!(total(vec![1, 2].into_iter()), 3); }\n",
        ("it",),
        None,
    ),
    (
        "patterns_in_params",
        "test",
        "struct P { x: i32 }\n⟨T⟩fn ⟨T⟩f((⟨T⟩a, ⟨T⟩b): (i32, i32), P { ⟨T⟩x }: P, &⟨T⟩r: &i32, ⟨T⟩_: u8) -> i32 {\n"
        "    a + b + x + r\n}\n\n⟨M⟩#[test]\nfn test_f() { assert_eq!(f((1, 2), P { x: 3 }, &4, 0), 10); }\n",
        ("(a, b)", "P { x }", "&r", "_"),
        None,
    ),
    (
        "nested_patterns_bind_every_name",
        "test",
        "struct Q { p: i32, q: i32 }\n⟨T⟩fn ⟨T⟩g(((⟨T⟩a, mut ⟨T⟩b), ⟨T⟩c): ((u8, u8), u8), "
        "Q { p: ⟨T⟩px, ⟨T⟩q }: Q, [⟨T⟩first, _]: [u8; 2], ⟨T⟩(_, _): (u8, u8)) -> u8 {\n"
        "    b = b + 1;\n    a + b + c + first + px as u8 + q as u8\n}\n\n"
        "⟨M⟩#[test]\nfn test_g() { assert_eq!(g(((1, 2), 3), Q { p: 0, q: 0 }, [4, 5], (0, 0)), 11); }\n",
        ("((a, mut b), c)", "Q { p: px, q }", "[first, _]", "(_, _)"),
        None,
    ),
    (
        "attributes_before_fn",
        "test",
        "#[inline]\n#[must_use]\npub ⟨T⟩fn ⟨T⟩twice(⟨T⟩x: i32) -> i32 { 2 * x }\n\n"
        "⟨M⟩#[test]\nfn test_twice() { assert_eq!(twice(2), 4); }\n",
        ("x",),
        None,
    ),
    (
        "cfg_test_module",
        "test",
        "⟨T⟩fn ⟨T⟩inc(⟨T⟩x: i32) -> i32 { x + 1 }\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n"
        "    ⟨M⟩#[test]\n    fn test_inc() { assert_eq!(inc(1), 2); }\n}\n",
        ("x",),
        None,
    ),
    (
        "should_panic_before_test",
        "test",
        '⟨T⟩fn ⟨T⟩boom(⟨T⟩flag: bool) { if flag { panic!("x") } }\n\n'
        "#[should_panic]\n⟨M⟩#[test]\nfn test_boom() { boom(true); }\n",
        ("flag",),
        None,
    ),
    (
        "test_in_doc_comment",
        "test",
        "/// Adds.\n///\n/// ⟨M⟩#[test]\n/// fn test_add() { assert_eq!(add(1, 2), 3); }\n"
        "⟨T⟩fn ⟨T⟩add(⟨T⟩a: i32, ⟨T⟩b: i32) -> i32 { a + b }\n",
        ("a", "b"),
        None,
    ),
    (
        "test_name_picks_function",
        "test",
        "fn a() -> i32 { 1 }\n⟨T⟩fn ⟨T⟩b_plus(⟨T⟩v: i32) -> i32 { v + a() }\n\n"
        "⟨M⟩#[test]\nfn test_b_plus() { assert_eq!(a(), 1); assert_eq!(b_plus(1), 2); }\n",
        ("v",),
        None,
    ),
    (
        "modifiers_non_ascii",
        "test",
        "pub const ⟨T⟩fn ⟨T⟩größe(⟨T⟩länge: u32) -> u32 { länge * 2 }\n\n"
        "⟨M⟩#[test]\nfn test_größe() { assert_eq!(größe(2), 4); }\n",
        ("länge",),
        None,
    ),
    (
        "turbofish_and_scoped_calls",
        "test",
        "struct W;\nimpl W {\n    ⟨T⟩fn ⟨T⟩make<T: Default>() -> T { T::default() }\n}\n\n"
        "⟨M⟩#[test]\nfn test_make() { assert_eq!(W::make::<i32>(), 0); }\n",
        (),
        None,
    ),
    (
        "helper_called_in_let",
        "test",
        "⟨T⟩fn ⟨T⟩square(⟨T⟩x: i64) -> i64 { x * x }\n\n⟨M⟩#[test]\nfn check() {\n"
        "    let y = square(3);\n    assert_eq!(y, 9);\n}\n",
        ("x",),
        None,
    ),
    (
        "baseline_derive_after",
        "baseline",
        "⟨T⟩fn ⟨T⟩make(⟨T⟩v: u8) -> W { W(v) }\n\n⟨M⟩#[derive(Debug)]\nstruct W(u8);\n",
        ("v",),
        None,
    ),
    (
        "generation_after_impl",
        "generation",
        "struct Acc(i32);\n\nimpl Acc {\n    fn new() -> Self { Acc(0) }\n\n"
        "    ⟨T⟩fn ⟨T⟩add(&mut ⟨T⟩self, ⟨T⟩x: i32) -> i32 { self.0 += x; self.0 }\n}\n\n⟨M⟩#[test]\nfn ",
        ("self", "x"),
        None,
    ),
    (
        "generation_with_helper_and_hint",
        "generation",
        "⟨T⟩fn ⟨T⟩half(⟨T⟩x: u32) -> u32 { x / 2 }\n\nfn quarter(x: u32) -> u32 { half(half(x)) }\n\n"
        "⟨M⟩#[test]\nfn ",
        ("x",),
        "half",
    ),
]


@pytest.mark.parametrize(
    ("case", "kind", "template", "params", "hint"), PYTHON_CASES, ids=[c[0] for c in PYTHON_CASES]
)
def test_python_tricky(case: str, kind, template: str, params: tuple, hint: str | None) -> None:
    code, marker, targets = unmark(template)
    source = None
    if kind == "generation":  # the complete program is given separately
        source = code + 'None\n    """\n    return y\n'
    ann = annotate_python(code, kind=kind, function=hint, source=source, sample_id=case)
    assert ann.marker_char_pos == marker
    assert list(ann.target_char_positions) == targets
    assert ann.function.params == params
    assert ann.function.arity == len(params)
    assert ann.marker_pattern == ">>>"


@pytest.mark.parametrize(
    ("case", "kind", "template", "params", "hint"), RUST_CASES, ids=[c[0] for c in RUST_CASES]
)
def test_rust_tricky(case: str, kind, template: str, params: tuple, hint: str | None) -> None:
    code, marker, targets = unmark(template)
    ann = annotate_rust(code, kind=kind, function=hint, sample_id=case)
    assert ann.marker_char_pos == marker
    assert list(ann.target_char_positions) == targets
    assert ann.function.params == params
    assert ann.marker_pattern == ("#[" if kind == "baseline" else "#[test]")
    if kind == "generation":
        assert ann.function.source == code[:marker].rstrip() + "\n"


def test_at_least_30_tricky_cases() -> None:
    assert len(PYTHON_CASES) + len(RUST_CASES) >= 30


@pytest.mark.parametrize(
    ("annotate", "code", "kind", "match"),
    [
        (annotate_python, "def f(x):\n    return x\n", "test", "no function has a doctest"),
        (annotate_python, "def f(x:\n", "test", "does not parse"),
        (annotate_python, "x = 1\n", "test", "no function definition"),
        (annotate_python, "def f(x):\n    return x\n", "baseline", "no '>>>' inside a comment"),
        (annotate_python, 'def f(x):\n    """Doc.\n\n    >>> ', "generation", "give 'source'"),
        (
            annotate_python,
            "def f(x):\n    return 1  # >>> ",
            "generation",
            "must start its own docstring line",
        ),
        (
            annotate_rust,
            "fn f() {}\n#[test]\nfn t() { g(); }\n",
            "test",
            r"no #\[test\] function calls",
        ),
        (annotate_rust, "fn f(x: u8) -> u8 { x }\n", "baseline", "no attribute"),
        (annotate_rust, "fn f( {\n\n#[test]\nfn ", "generation", "not a top-level attribute"),
        (annotate_rust, "#[test]\nfn t() {}\n", "test", "no \\(non-test\\) function"),
    ],
)
def test_unannotatable_names_sample_and_reason(annotate, code: str, kind, match: str) -> None:
    with pytest.raises(CorpusError, match=rf"sample bad7: cannot annotate .*{match}"):
        annotate(code, kind=kind, sample_id="bad7")


def test_python_generation_source_must_match() -> None:
    prompt = 'def f(x):\n    """Doc.\n\n    >>> '
    with pytest.raises(CorpusError, match=r"'source' does not define f\(x\)"):
        annotate_python(prompt, kind="generation", source="def f(y):\n    return y\n")
