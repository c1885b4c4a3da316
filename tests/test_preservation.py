"""Preservation scoring on hand-written continuations with hand-written expected flags."""

from __future__ import annotations

import pytest
from sandbox_marks import needs_rustc, needs_sandbox

from analysis.preservation import Preservation, score, score_python, score_rust

# ----------------------------------------------------------------------------- Python fixtures

PY_ADD_SRC = 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n'
PY_ADD = 'def add(a, b):\n    """Add two numbers.\n\n    >>> '
PY_ADD_SQ = "def add(a, b):\n    '''Add two numbers.\n\n    >>> "
PY_ADD_FEWSHOT = 'def add(a, b):\n    """Add.\n\n    >>> add(0, 0)\n    0\n    >>> '
PY_COUNTER_SRC = (
    "class Counter:\n"
    "    def __init__(self):\n"
    "        self.n = 0\n\n"
    "    def bump(self, by):\n"
    '        """Increase the count."""\n'
    "        self.n += by\n"
    "        return self.n\n"
)
PY_COUNTER = (
    "class Counter:\n"
    "    def __init__(self):\n"
    "        self.n = 0\n\n"
    "    def bump(self, by):\n"
    '        """Increase the count.\n\n'
    "        >>> "
)
PY_ANSWER_SRC = "def answer():\n    return 42\n"
PY_ANSWER = 'def answer():\n    """The answer.\n\n    >>> '

# (id, prompt, function, arity, source, continuation, calls, arity_ok, valid)
PY_CASES = [
    (
        "plain",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'add(2, 3)\n    5\n    """\n    return a + b\n',
        1,
        1,
        1,
    ),
    ("negative", PY_ADD, "add", 2, PY_ADD_SRC, 'add(-1, 1)\n    0\n    """', 1, 1, 1),
    ("keywords", PY_ADD, "add", 2, PY_ADD_SRC, 'add(a=1, b=2)\n    3\n    """', 1, 1, 1),
    ("mixed_kw", PY_ADD, "add", 2, PY_ADD_SRC, 'add(1, b=2)\n    3\n    """', 1, 1, 1),
    ("too_few", PY_ADD, "add", 2, PY_ADD_SRC, 'add(2)\n    2\n    """', 1, 0, 1),
    ("too_many", PY_ADD, "add", 2, PY_ADD_SRC, 'add(1, 2, 3)\n    6\n    """', 1, 0, 1),
    ("starred", PY_ADD, "add", 2, PY_ADD_SRC, 'add(*[1, 2])\n    3\n    """', 1, 0, 1),
    (
        "double_star",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'add(**{"a": 1, "b": 2})\n    3\n    """',
        1,
        0,
        1,
    ),
    ("name_not_call", PY_ADD, "add", 2, PY_ADD_SRC, 'print(add)\n    x\n    """', 0, 0, 1),
    ("other_fn", PY_ADD, "add", 2, PY_ADD_SRC, 'sum([2, 3])\n    5\n    """', 0, 0, 1),
    ("in_string", PY_ADD, "add", 2, PY_ADD_SRC, '"add(2, 3)"\n    \'add(2, 3)\'\n    """', 0, 0, 1),
    ("in_comment", PY_ADD, "add", 2, PY_ADD_SRC, '1  # add(2, 3)\n    1\n    """', 0, 0, 1),
    ("prefix_name", PY_ADD, "add", 2, PY_ADD_SRC, 'add2(2, 3)\n    5\n    """', 0, 0, 1),
    ("longer_name", PY_ADD, "add", 2, PY_ADD_SRC, 'adder(2, 3)\n    """', 0, 0, 1),
    ("module_attr", PY_ADD, "add", 2, PY_ADD_SRC, 'math.add(2, 3)\n    5\n    """', 1, 1, 1),
    ("unclosed", PY_ADD, "add", 2, PY_ADD_SRC, 'add(2, 3\n    """', 0, 0, 0),
    ("extra_paren", PY_ADD, "add", 2, PY_ADD_SRC, 'add(2, 3))\n    """', 0, 0, 0),
    ("missing_comma", PY_ADD, "add", 2, PY_ADD_SRC, 'add(2 3)\n    """', 0, 0, 0),
    ("bad_def", PY_ADD, "add", 2, PY_ADD_SRC, 'def f(:\n    """', 0, 0, 0),
    ("closes_at_once", PY_ADD, "add", 2, PY_ADD_SRC, '"""\n    return a + b\n', 0, 0, 0),
    ("blank_then_close", PY_ADD, "add", 2, PY_ADD_SRC, '\n    """', 0, 0, 0),
    (
        "two_examples",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'add(2, 3)\n    5\n    >>> add(0, 0)\n    0\n    """',
        1,
        1,
        1,
    ),
    # One scoring rule for both languages: only the first test is scored (the examples up to
    # the first with an expected output here, the first test function in Rust).
    (
        "setup_line",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'x = 2\n    >>> add(x, x)\n    4\n    """',
        1,
        1,
        1,
    ),
    (
        "continuation_line",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'x = 2\n    >>> add(x,\n    ... x)\n    4\n    """',
        1,
        1,
        1,
    ),
    (
        "call_only_in_second_test",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'sum([1, 2])\n    3\n    >>> add(1, 2)\n    3\n    """',
        0,
        0,
        1,
    ),
    (
        "second_bad",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'add(2, 3)\n    5\n    >>> add(2,\n    """',
        1,
        1,
        1,
    ),
    (
        "first_continues",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'add(2,\n    ... 3)\n    5\n    >>> x(\n    """',
        1,
        1,
        1,
    ),
    ("nested", PY_ADD, "add", 2, PY_ADD_SRC, 'add(add(1, 2), 3)\n    6\n    """', 1, 1, 1),
    (
        "passed_as_value",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'list(map(add, [1], [2]))\n    [3]\n    """',
        0,
        0,
        1,
    ),
    ("comparison", PY_ADD, "add", 2, PY_ADD_SRC, 'add(1, 2) == 3\n    True\n    """', 1, 1, 1),
    ("assert", PY_ADD, "add", 2, PY_ADD_SRC, 'assert add(1, 2) == 3\n    """', 1, 1, 1),
    ("in_lambda", PY_ADD, "add", 2, PY_ADD_SRC, '(lambda: add(1, 2))()\n    3\n    """', 1, 1, 1),
    ("bad_indent", PY_ADD, "add", 2, PY_ADD_SRC, 'add(2, 3)\n  5\n    """', 0, 0, 0),
    (
        "single_quotes",
        PY_ADD_SQ,
        "add",
        2,
        PY_ADD_SRC,
        "add(2, 3)\n    5\n    '''\n    return a + b\n",
        1,
        1,
        1,
    ),
    (
        "after_docstring_ignored",
        PY_ADD,
        "add",
        2,
        PY_ADD_SRC,
        'print(1)\n    1\n    """\n    return add(a, b)\n',
        0,
        0,
        1,
    ),
    ("no_close", PY_ADD, "add", 2, PY_ADD_SRC, "add(2, 3)\n    5", 1, 1, 1),
    (
        "fewshot_not_counted",
        PY_ADD_FEWSHOT,
        "add",
        2,
        PY_ADD_SRC,
        'print(3)\n    3\n    """',
        0,
        0,
        1,
    ),
    (
        "method_receiver",
        PY_COUNTER,
        "bump",
        2,
        PY_COUNTER_SRC,
        'c = Counter()\n        >>> c.bump(2)\n        2\n        """',
        1,
        1,
        1,
    ),
    (
        "method_chain",
        PY_COUNTER,
        "bump",
        2,
        PY_COUNTER_SRC,
        'Counter().bump(2)\n        2\n        """',
        1,
        1,
        1,
    ),
    (
        "method_explicit_self",
        PY_COUNTER,
        "bump",
        2,
        PY_COUNTER_SRC,
        'Counter.bump(Counter(), 2)\n        2\n        """',
        1,
        1,
        1,
    ),
    (
        "method_no_arg",
        PY_COUNTER,
        "bump",
        2,
        PY_COUNTER_SRC,
        'c = Counter()\n        >>> c.bump()\n        """',
        1,
        0,
        1,
    ),
    ("method_bare_call", PY_COUNTER, "bump", 2, PY_COUNTER_SRC, 'bump(2)\n        """', 1, 0, 1),
    (
        "method_too_many",
        PY_COUNTER,
        "bump",
        2,
        PY_COUNTER_SRC,
        'c = Counter()\n        >>> c.bump(1, 2)\n        """',
        1,
        0,
        1,
    ),
    (
        "method_attr_only",
        PY_COUNTER,
        "bump",
        2,
        PY_COUNTER_SRC,
        'c = Counter()\n        >>> c.n\n        0\n        """',
        0,
        0,
        1,
    ),
    ("zero_arity", PY_ANSWER, "answer", 0, PY_ANSWER_SRC, 'answer()\n    42\n    """', 1, 1, 1),
    ("zero_arity_extra", PY_ANSWER, "answer", 0, PY_ANSWER_SRC, 'answer(1)\n    """', 1, 0, 1),
    (
        "zero_arity_name",
        PY_ANSWER,
        "answer",
        0,
        PY_ANSWER_SRC,
        'answer\n    <function answer>\n    """',
        0,
        0,
        1,
    ),
    ("nonmethod_attr_extra", PY_ADD, "add", 2, PY_ADD_SRC, 'ops.add(1)\n    """', 1, 0, 1),
]


@pytest.mark.parametrize(
    ("prompt", "fn", "arity", "src", "cont", "calls", "arity_ok", "valid"),
    [c[1:] for c in PY_CASES],
    ids=[c[0] for c in PY_CASES],
)
def test_python_flags(
    prompt: str, fn: str, arity: int, src: str, cont: str, calls: int, arity_ok: int, valid: int
) -> None:
    got = score_python(
        prompt, cont, function_name=fn, arity=arity, function_source=src, execute="off"
    )
    assert (got.calls_function, got.arity_ok, got.valid) == (
        bool(calls),
        bool(arity_ok),
        bool(valid),
    )
    assert got.preserved == (bool(calls) and bool(arity_ok) and bool(valid))
    assert got.executes is None
    assert (got.reason == "") == got.preserved


def test_python_case_count() -> None:
    assert len(PY_CASES) >= 40
    assert len({c[0] for c in PY_CASES}) == len(PY_CASES)


# (continuation, expected executes): runs and passes / runs and fails / error / timeout
PY_EXEC = [
    ('add(2, 3)\n    5\n    """\n    return a + b\n', True),
    ('add(2, 3)\n    6\n    """', False),  # runs, wrong expected output
    ('add(1)\n    1\n    """', False),  # TypeError
    ('add(2, 3\n    """', False),  # invalid: never run
    ('import os\n    >>> "PLIP_SECRET" in os.environ or add(0, 0)\n    0\n    """', True),  # env
    ('while add(1, 0):\n    ...     pass\n    """', False),  # infinite loop -> timeout
    ('1 + 1\n    2\n    """', False),  # passes, but never calls add: not run
]


@needs_sandbox
@pytest.mark.parametrize(("cont", "expected"), PY_EXEC)
def test_python_executes(cont: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLIP_SECRET", "x")
    got = score_python(
        PY_ADD, cont, function_name="add", arity=2, function_source=PY_ADD_SRC, timeout=3.0
    )
    assert got.executes is expected, got.reason


@needs_sandbox
def test_python_method_executes() -> None:
    cont = 'c = Counter()\n        >>> c.bump(2)\n        2\n        >>> c.bump(3)\n        5\n        """'
    got = score_python(
        PY_COUNTER, cont, function_name="bump", arity=2, function_source=PY_COUNTER_SRC
    )
    assert got.preserved and got.executes is True, got.reason


@needs_sandbox
def test_python_own_docstring_examples_not_run() -> None:
    # The reference source carries a failing example of its own; only the generated one runs.
    src = 'def add(a, b):\n    """Add.\n\n    >>> add(1, 1)\n    3\n    """\n    return a + b\n'
    got = score_python(
        PY_ADD, 'add(2, 3)\n    5\n    """', function_name="add", arity=2, function_source=src
    )
    assert got.executes is True, got.reason


@needs_sandbox
def test_timeout_reason_says_so() -> None:
    got = score_python(
        PY_ADD,
        'while add(1, 0): pass\n    """',
        function_name="add",
        arity=2,
        function_source=PY_ADD_SRC,
        timeout=1.0,
    )
    assert got.executes is False and "timed out" in got.reason


# ----------------------------------------------------------------------------- Rust fixtures

RS_ADD_SRC = "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"
RS_ADD = RS_ADD_SRC + "\n#[test]\nfn "
RS_STACK_SRC = (
    "struct Stack {\n    items: Vec<i32>,\n}\n\n"
    "impl Stack {\n"
    "    fn new() -> Self {\n        Stack { items: Vec::new() }\n    }\n"
    "    fn push(&mut self, x: i32) {\n        self.items.push(x);\n    }\n"
    "    fn len(&self) -> usize {\n        self.items.len()\n    }\n"
    "}\n"
)
RS_STACK = RS_STACK_SRC + "\n#[test]\nfn "
RS_ANSWER_SRC = "fn answer() -> i32 {\n    42\n}\n"
RS_ANSWER = RS_ANSWER_SRC + "\n#[test]\nfn "
RS_LARGEST_SRC = (
    "fn largest<T: PartialOrd + Copy>(a: T, b: T) -> T {\n    if a > b { a } else { b }\n}\n"
)
RS_LARGEST = RS_LARGEST_SRC + "\n#[test]\nfn "

A = ("add", 2, RS_ADD_SRC, RS_ADD)
S = ("push", 2, RS_STACK_SRC, RS_STACK)
Z = ("answer", 0, RS_ANSWER_SRC, RS_ANSWER)
# (id, fixture, continuation, calls, arity_ok, valid)
RS_CASES = [
    ("macro_call", A, "test_add() {\n    assert_eq!(add(2, 3), 5);\n}\n", 1, 1, 1),
    ("let_call", A, "test_add() {\n    let r = add(2, 3);\n    assert_eq!(r, 5);\n}\n", 1, 1, 1),
    ("assert_macro", A, "test_add() {\n    assert!(add(1, 1) == 2);\n}", 1, 1, 1),
    ("too_few", A, "test_add() {\n    assert_eq!(add(2), 5);\n}", 1, 0, 1),
    ("too_many", A, "test_add() {\n    assert_eq!(add(1, 2, 3), 6);\n}", 1, 0, 1),
    ("crate_path", A, "test_add() {\n    assert_eq!(crate::add(2, 3), 5);\n}", 1, 1, 1),
    ("super_path", A, "test_add() {\n    assert_eq!(super::add(2, 3), 5);\n}", 1, 1, 1),
    ("fn_pointer", A, "test_add() {\n    let f = add;\n    assert_eq!(f(2, 3), 5);\n}", 0, 0, 1),
    (
        "in_string",
        A,
        'test_add() {\n    let s = "add(2, 3)";\n    assert!(!s.is_empty());\n}',
        0,
        0,
        1,
    ),
    ("in_comment", A, "test_add() {\n    // add(2, 3)\n    assert_eq!(5, 5);\n}", 0, 0, 1),
    ("other_name", A, "test_add() {\n    assert_eq!(adder(2, 3), 5);\n}", 0, 0, 1),
    ("unclosed_body", A, "test_add() {\n    assert_eq!(add(2, 3), 5);\n", 1, 1, 0),
    ("bad_let", A, "test_add() {\n    let x = add(2, 3;\n}", 0, 0, 0),
    ("nested_in_macro", A, "test_add() {\n    assert_eq!(add(add(1, 2), 3), 6);\n}", 1, 1, 1),
    ("macro_in_macro", A, "test_add() {\n    assert_eq!(vec![add(1, 2)], vec![3]);\n}", 1, 1, 1),
    ("println", A, 'test_add() {\n    println!("{}", add(2, 3));\n}', 1, 1, 1),
    ("method_on_tuple", A, "test_add() {\n    assert_eq!((2, 3).add(), 5);\n}", 1, 0, 1),
    (
        "brace_in_string",
        A,
        'test_add() {\n    let s = "}";\n    assert_eq!(add(2, 3), 5);\n}',
        1,
        1,
        1,
    ),
    (
        "brace_in_char",
        A,
        "test_add() {\n    let c = '}';\n    assert_eq!(add(2, 3), 5);\n}",
        1,
        1,
        1,
    ),
    ("brace_in_comment", A, "test_add() {\n    /* } */\n    assert_eq!(add(2, 3), 5);\n}", 1, 1, 1),
    (
        "second_test_ignored",
        A,
        "test_none() {\n    assert!(true);\n}\n\n#[test]\nfn test_add() {\n    assert_eq!(add(2, 3), 5);\n}",
        0,
        0,
        1,
    ),
    (
        "trailing_garbage_ignored",
        A,
        "test_add() {\n    assert_eq!(add(2, 3), 5);\n}}\nfn (",
        1,
        1,
        1,
    ),
    (
        "loop_body",
        A,
        "test_add() {\n    for i in 0..3 {\n        assert_eq!(add(i, 0), i);\n    }\n}",
        1,
        1,
        1,
    ),
    (
        "closure",
        A,
        "test_add() {\n    let v: Vec<i32> = (0..3).map(|i| add(i, 1)).collect();\n    assert_eq!(v, vec![1, 2, 3]);\n}",
        1,
        1,
        1,
    ),
    (
        "result_test",
        A,
        "test_add() -> Result<(), String> {\n    assert_eq!(add(2, 3), 5);\n    Ok(())\n}",
        1,
        1,
        1,
    ),
    ("comment_arg", A, "test_add() {\n    assert_eq!(add(2, 3 /* three */), 5);\n}", 1, 1, 1),
    ("empty", A, "", 0, 0, 0),
    ("name_only", A, "test_add", 0, 0, 0),
    ("open_brace_only", A, "test_add() {", 0, 0, 0),
    ("empty_let", A, "test_add() {\n    let x = ;\n}", 0, 0, 0),
    (
        "bad_statement_after_call",
        A,
        "test_add() {\n    assert_eq!(add(2, 3), 5);\n    let = 3;\n}",
        1,
        1,
        0,
    ),
    ("tail_expression", A, "test_add() {\n    add(2, 3);\n}", 1, 1, 1),
    ("discard", A, "test_add() {\n    let _ = add(2, 3);\n}", 1, 1, 1),
    ("trait_path", A, "test_add() {\n    assert_eq!(Add::add(2, 3), 5);\n}", 1, 1, 1),
    (
        "method_call",
        S,
        "test_push() {\n    let mut s = Stack::new();\n    s.push(1);\n    assert_eq!(s.len(), 1);\n}",
        1,
        1,
        1,
    ),
    (
        "ufcs_call",
        S,
        "test_push() {\n    let mut s = Stack::new();\n    Stack::push(&mut s, 1);\n    assert_eq!(s.len(), 1);\n}",
        1,
        1,
        1,
    ),
    ("method_no_arg", S, "test_push() {\n    let mut s = Stack::new();\n    s.push();\n}", 1, 0, 1),
    (
        "method_two_args",
        S,
        "test_push() {\n    let mut s = Stack::new();\n    s.push(1, 2);\n}",
        1,
        0,
        1,
    ),
    (
        "method_not_called",
        S,
        "test_push() {\n    let s = Stack::new();\n    assert_eq!(s.len(), 0);\n}",
        0,
        0,
        1,
    ),
    (
        "method_in_block_in_macro",
        S,
        "test_push() {\n    let mut s = Stack::new();\n    assert_eq!({ s.push(3); s.len() }, 1);\n}",
        1,
        1,
        1,
    ),
    ("zero_arity", Z, "test_answer() {\n    assert_eq!(answer(), 42);\n}", 1, 1, 1),
    ("zero_arity_extra", Z, "test_answer() {\n    assert_eq!(answer(1), 42);\n}", 1, 0, 1),
    (
        "generic_turbofish",
        ("largest", 2, RS_LARGEST_SRC, RS_LARGEST),
        "test_largest() {\n    assert_eq!(largest::<i32>(2, 3), 3);\n}",
        1,
        1,
        1,
    ),
    ("free_fn_as_method_extra", A, "test_add() {\n    assert_eq!(2.add(3), 5);\n}", 1, 0, 1),
]


@pytest.mark.parametrize(
    ("fixture", "cont", "calls", "arity_ok", "valid"),
    [c[1:] for c in RS_CASES],
    ids=[c[0] for c in RS_CASES],
)
def test_rust_flags(
    fixture: tuple[str, int, str, str], cont: str, calls: int, arity_ok: int, valid: int
) -> None:
    fn, arity, src, prompt = fixture
    got = score_rust(
        prompt, cont, function_name=fn, arity=arity, function_source=src, execute="off"
    )
    assert (got.calls_function, got.arity_ok, got.valid) == (
        bool(calls),
        bool(arity_ok),
        bool(valid),
    )
    assert got.preserved == (bool(calls) and bool(arity_ok) and bool(valid))
    assert got.executes is None


def test_rust_case_count() -> None:
    assert len(RS_CASES) >= 40
    assert len({c[0] for c in RS_CASES}) == len(RS_CASES)


RS_EXEC = [
    (A, "test_add() {\n    assert_eq!(add(2, 3), 5);\n}\n", True),
    (A, "test_add() {\n    assert_eq!(add(2, 3), 6);\n}\n", False),  # runs and fails
    (A, 'test_add() {\n    assert_eq!(add("2", 3), 5);\n}\n', False),  # does not compile
    (
        S,
        "test_push() {\n    let mut s = Stack::new();\n    s.push(1);\n    assert_eq!(s.len(), 1);\n}",
        True,
    ),
    (A, "test_spin() {\n    loop {}\n}\n", False),  # infinite loop -> timeout
]


@needs_sandbox
@needs_rustc
@pytest.mark.parametrize(("fixture", "cont", "expected"), RS_EXEC)
def test_rust_executes(fixture: tuple[str, int, str, str], cont: str, expected: bool) -> None:
    fn, arity, src, prompt = fixture
    got = score_rust(prompt, cont, function_name=fn, arity=arity, function_source=src, timeout=2.0)
    assert got.executes is expected, got.reason


def test_rust_invalid_not_executed() -> None:
    got = score_rust(
        RS_ADD, "test_add() {", function_name="add", arity=2, function_source=RS_ADD_SRC
    )
    assert got.valid is False and got.executes is False


def test_rust_no_rustc_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.execution as mod

    monkeypatch.setattr(mod, "rustc", lambda: None)
    got = score_rust(
        RS_ADD, RS_CASES[0][2], function_name="add", arity=2, function_source=RS_ADD_SRC
    )
    assert got.preserved and got.executes is None


@needs_sandbox
@pytest.mark.slow
@needs_rustc
@pytest.mark.parametrize(
    ("fixture", "cont", "calls", "arity_ok", "valid"),
    [c[1:] for c in RS_CASES],
    ids=[c[0] for c in RS_CASES],
)
def test_rust_full_table_executed(
    fixture: tuple[str, int, str, str], cont: str, calls: int, arity_ok: int, valid: int
) -> None:
    fn, arity, src, prompt = fixture
    got = score_rust(prompt, cont, function_name=fn, arity=arity, function_source=src, timeout=5.0)
    assert (got.calls_function, got.arity_ok, got.valid) == (
        bool(calls),
        bool(arity_ok),
        bool(valid),
    )
    assert isinstance(got.executes, bool)
    if not valid:
        assert got.executes is False
    if got.executes:  # a passing test that calls the function compiled against its source
        assert valid


# ----------------------------------------------------------------------------- dispatch and errors


def test_dispatch_matches_direct_calls() -> None:
    kw = {"function_name": "add", "arity": 2, "execute": "off"}
    assert score(
        "python", PY_ADD, 'add(1, 2)\n    """', function_source=PY_ADD_SRC, **kw
    ) == score_python(PY_ADD, 'add(1, 2)\n    """', function_source=PY_ADD_SRC, **kw)
    got = score("rust", RS_ADD, RS_CASES[0][2], function_source=RS_ADD_SRC, **kw)
    assert isinstance(got, Preservation) and got.preserved


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"language": "go"}, "language must be"),
        ({"function_name": "not a name"}, "function_name"),
        ({"arity": -1}, "arity"),
        ({"timeout": 0.0}, "timeout"),
        ({"execute": True}, "execute must be one of sandbox, unsafe, off"),
        ({"prompt": "def add(a, b):\n    return a"}, "'>>> '"),
    ],
)
def test_bad_input_names_the_value(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "language": "python",
        "prompt": PY_ADD,
        "function_name": "add",
        "arity": 2,
        "timeout": 1.0,
        "execute": "off",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        score(
            args["language"],  # type: ignore[arg-type]
            args["prompt"],  # type: ignore[arg-type]
            "add(1, 2)",
            function_name=args["function_name"],  # type: ignore[arg-type]
            arity=args["arity"],  # type: ignore[arg-type]
            function_source=PY_ADD_SRC,
            execute=args["execute"],  # type: ignore[arg-type]
            timeout=args["timeout"],  # type: ignore[arg-type]
        )


def test_rust_prompt_convention_enforced() -> None:
    with pytest.raises(ValueError, match="#\\[test\\]"):
        score_rust(
            RS_ADD_SRC, "test_add() {}", function_name="add", arity=2, function_source=RS_ADD_SRC
        )


# The prompt rule (docs/PROMPTS.md): prompts end right after the marker, and the model writes
# the space / ``fn`` itself. Every table case scored in that convention gives the same flags.
@pytest.mark.parametrize(("case"), PY_CASES, ids=[c[0] for c in PY_CASES])
def test_python_flags_same_when_prompt_ends_at_marker(case: tuple) -> None:
    _, prompt, fn, arity, src, cont, *_ = case
    assert prompt.endswith(">>> ")
    legacy = score_python(prompt, cont, function_name=fn, arity=arity, function_source=src,
                          execute="off")  # fmt: skip
    ruled = score_python(prompt[:-1], " " + cont, function_name=fn, arity=arity,
                         function_source=src, execute="off")  # fmt: skip
    assert ruled == legacy


@pytest.mark.parametrize(("case"), RS_CASES, ids=[c[0] for c in RS_CASES])
def test_rust_flags_same_when_prompt_ends_at_marker(case: tuple) -> None:
    _, (fn, arity, src, prompt), cont, *_ = case
    assert prompt.endswith("#[test]\nfn ")
    legacy = score_rust(prompt, cont, function_name=fn, arity=arity, function_source=src,
                        execute="off")  # fmt: skip
    ruled = score_rust(prompt[: -len("fn ")], "fn " + cont, function_name=fn, arity=arity,
                       function_source=src, execute="off")  # fmt: skip
    assert ruled == legacy


def test_rust_marker_prompt_needs_a_function_after_it() -> None:
    prompt = RS_ADD_SRC + "\n#[test]\n"
    ok = score_rust(prompt, "fn it_works() {\n    let r = add(1, 2);\n    assert_eq!(r, 3);\n}\n",
                    function_name="add", arity=2, function_source=RS_ADD_SRC, execute="off")  # fmt: skip
    assert ok.preserved
    # Not a test function: the attribute then a bare statement does not parse.
    bad = score_rust(prompt, "let r = add(1, 2);\n", function_name="add", arity=2,
                     function_source=RS_ADD_SRC, execute="off")  # fmt: skip
    assert not bad.valid and not bad.preserved


def test_identical_generated_tests_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.execution as pres

    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **_: object) -> tuple[int, str]:
        calls.append(cmd)
        return 0, ""

    monkeypatch.setattr(pres, "_run_unsafe", fake_run)
    first = score_python(PY_ADD, "add(1, 2)\n    3\n", function_name="add", arity=2,
                         function_source=PY_ADD_SRC, execute="unsafe")  # fmt: skip
    again = score_python(PY_ADD, "add(1, 2)\n    3\n", function_name="add", arity=2,
                         function_source=PY_ADD_SRC, execute="unsafe")  # fmt: skip
    other = score_python(PY_ADD, "add(2, 2)\n    4\n", function_name="add", arity=2,
                         function_source=PY_ADD_SRC, execute="unsafe")  # fmt: skip
    assert first == again and first.executes and other.executes
    assert len(calls) == 2  # the repeated program ran once; a different one ran again
