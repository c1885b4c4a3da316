"""Copy curriculum from real code: real functions, renamed, followed by a test that calls them.

The synthetic copy curriculum (``synthetic_code.py``) teaches the embedded model to copy a
function's name into its test, but only in documents that look synthetic: tiny template bodies,
one-line summaries. On hand-written prompts (real names, real docstrings, real bodies) the
copy did not transfer. This module builds the same task inside real code:

* **Python**: a module-level function of the training split of the standard library with 1-4
  plain parameters and a short body; its docstring keeps its first paragraph (or gets a short
  summary) and gains one doctest example ``>>> name(args)`` with literal arguments, one per
  declared parameter. No expected output is written (the value is not computed here), so the
  example teaches *that* the function is called and with how many arguments, not what it returns.
* **Rust**: a top-level, non-generic ``fn`` of the training crates with 1-3 parameters of simple
  types and a short body, followed by ``#[test] fn ...() { let result = name(args); }``, a smoke
  test that calls it with literal arguments of the declared types.

The function keeps its real name in half of the documents and gets a fresh random name
(identifier words or syllables, from ``CodeGenerator``) in the other half, everywhere it occurs
in its source (recursive calls too). Held-out prompt names are never used.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

from synthetic_code import CodeGenerator, pick_by_arity

_STR_HINTS = ("s", "text", "name", "path", "string", "line", "word", "prefix", "suffix", "sep",
              "fmt", "url", "key", "char", "encoding", "mode", "msg", "label", "pattern", "src")  # fmt: skip
_LIST_HINTS = ("items", "seq", "list", "values", "args", "lines", "words", "data", "parts",
               "iterable", "elements", "xs", "nums", "numbers", "names")  # fmt: skip
_PY_STRS = ("'abc'", "'hello world'", "'x'", "'a,b'", "''", "'spam'", "'foo.py'", "'Data'")
_RS_INTS = ("i8", "i16", "i32", "i64", "isize", "u8", "u16", "u32", "u64", "usize")


def _py_literal(rng: random.Random, param: str, annotation: str | None) -> str:
    hint = (annotation or "").lower()
    low = param.lower()
    if "str" in hint or low in _STR_HINTS or low.endswith(("name", "text", "path", "str")):
        return rng.choice(_PY_STRS)
    if "list" in hint or "sequence" in hint or low in _LIST_HINTS:
        return "[" + ", ".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 4))) + "]"
    if "bool" in hint or low.startswith(("is_", "use_", "strict", "flag")):
        return rng.choice(("True", "False"))
    if "float" in hint:
        return rng.choice(("0.5", "1.5", "2.0", "3.25"))
    return str(rng.randint(0, 20))


def python_functions(files: Iterable[str], exclude: frozenset[str]) -> list[dict[str, Any]]:
    """Short module-level functions with 1-4 plain parameters, from real Python source."""
    out = []
    for text in files:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or node.decorator_list:
                continue
            a = node.args
            params = [*a.posonlyargs, *a.args]
            if a.vararg or a.kwarg or a.kwonlyargs or not 1 <= len(params) <= 4:
                continue
            if node.name in exclude or node.name.startswith("_") or not node.body:
                continue
            body = node.body
            doc = ast.get_docstring(node)
            if doc is not None:
                body = body[1:]
            if not body or node.end_lineno is None:
                continue
            lines = text.splitlines()
            first = body[0].lineno - 1
            last = node.end_lineno
            if last - first > 16 or body[0].col_offset != 4:
                continue
            header = ast.get_source_segment(text, node)
            if header is None:
                continue
            sig_end = header.index(":\n") if ":\n" in header else -1
            if sig_end < 0 or "\n" in header[:sig_end]:
                continue  # multi-line signatures: keep it simple
            out.append(
                {
                    "name": node.name,
                    "signature": header[:sig_end + 1],
                    "params": [(p.arg, ast.unparse(p.annotation) if p.annotation else None)
                               for p in params],
                    "summary": (doc or "").strip().split("\n\n")[0],
                    "body": "\n".join(lines[first:last]),
                }
            )  # fmt: skip
    return out


def _rename(text: str, old: str, new: str) -> str:
    return re.sub(rf"\b{re.escape(old)}\b", new, text)


def python_document(fn: dict[str, Any], gen: CodeGenerator, rng: random.Random) -> str:
    """The function (maybe renamed) with a one-example doctest calling it."""
    name = fn["name"] if rng.random() < 0.5 else gen.random_identifier(
        words=(1, 2, 2, 3), max_syllables=3
    )  # fmt: skip
    summary = fn["summary"] or "Return the result."
    summary = "\n".join("    " + ln.strip() if i else ln.strip()
                        for i, ln in enumerate(summary.splitlines()))  # fmt: skip
    summary = summary.replace('"""', "'''")
    args = ", ".join(_py_literal(rng, p, ann) for p, ann in fn["params"])
    doc = f'    """{summary}\n\n    >>> {name}({args})\n    """\n'
    sig = _rename(fn["signature"], fn["name"], name)
    return f"{sig}\n{doc}{_rename(fn['body'], fn['name'], name)}\n"


def _rs_literal(rng: random.Random, ty: str, *, tuples: bool = False) -> str | None:
    ty = ty.strip()
    if tuples and ty.startswith("(") and ty.endswith(")") and "," in ty:
        # Curriculum v3: ``(f64, f64)``-style tuples of simple types, one literal per field.
        fields = [_rs_literal(rng, t) for t in ty[1:-1].split(",") if t.strip()]
        if len(fields) >= 2 and all(f is not None for f in fields):
            return "(" + ", ".join(str(f) for f in fields) + ")"
        return None
    if ty in _RS_INTS:
        return str(rng.randint(0, 9 if ty.startswith("u8") else 20))
    if ty in ("f32", "f64"):
        return rng.choice(("0.5", "1.5", "2.0"))
    if ty == "bool":
        return rng.choice(("true", "false"))
    if ty == "char":
        return rng.choice(("'a'", "'z'", "'0'", "' '"))
    if ty in ("&str", "&'static str"):
        return rng.choice(('"abc"', '"hello world"', '""', '"x"'))
    if ty == "String":
        return rng.choice(('String::from("abc")', '"x".to_string()'))
    m = re.fullmatch(r"&(?:mut )?\[(\w+)\]", ty)
    if m and m.group(1) in _RS_INTS:
        return "&[" + ", ".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 4))) + "]"
    m = re.fullmatch(r"Vec<(\w+)>", ty)
    if m and m.group(1) in _RS_INTS:
        return "vec![" + ", ".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 4))) + "]"
    return None


def rust_functions(
    files: Iterable[str], exclude: frozenset[str], *, tuples: bool = False
) -> list[dict[str, Any]]:
    """Short top-level non-generic functions with 1-3 simple parameters, from real Rust."""
    import tree_sitter_rust
    from tree_sitter import Language, Parser

    parser = Parser(Language(tree_sitter_rust.language()))
    probe = random.Random(0)
    out = []
    for text in files:
        data = text.encode("utf-8")
        root = parser.parse(data).root_node
        for node in root.children:
            if node.type != "function_item" or node.has_error:
                continue
            if node.child_by_field_name("type_parameters") is not None:
                continue
            name_node = node.child_by_field_name("name")
            params = node.child_by_field_name("parameters")
            body = node.child_by_field_name("body")
            if name_node is None or params is None or body is None:
                continue
            name = data[name_node.start_byte : name_node.end_byte].decode()
            if name in exclude or name.startswith("_") or name == "main":
                continue
            types: list = []
            for p in params.named_children:
                t = p.child_by_field_name("type") if p.type == "parameter" else None
                if t is None:
                    types = []
                    break
                types.append(data[t.start_byte : t.end_byte].decode())
            if not 1 <= len(types) <= 3 or any(
                _rs_literal(probe, t, tuples=tuples) is None for t in types
            ):
                continue
            src = data[node.start_byte : node.end_byte].decode()
            if src.count("\n") > 16 or "unsafe" in src[:40] or "const fn" in src[:40]:
                continue
            out.append({"name": name, "types": types, "source": src})
    return out


def rust_document(
    fn: dict[str, Any],
    gen: CodeGenerator,
    rng: random.Random,
    test_names: Sequence[str],
    *,
    tuples: bool = False,
) -> str:
    """The function (maybe renamed) followed by a smoke ``#[test]`` that calls it."""
    name = fn["name"] if rng.random() < 0.5 else gen.random_identifier(
        words=(1, 2, 2, 3), max_syllables=3
    )  # fmt: skip
    args = ", ".join(str(_rs_literal(rng, t, tuples=tuples)) for t in fn["types"])
    test = rng.choice(test_names).format(n=name)
    call = f"{name}({args})"
    stmt = rng.choice((f"let result = {call};", f"let _ = {call};", f"let _result = {call};"))
    return (
        _rename(fn["source"], fn["name"], name) + f"\n\n#[test]\nfn {test}() {{\n    {stmt}\n}}\n"
    )


RS_TEST_NAMES = ("test_{n}", "test_{n}", "test_{n}", "{n}_works", "it_works", "smoke")


def _pick(rng: random.Random, fns: Sequence[dict[str, Any]], key: str, balance: bool) -> Any:
    """One function; with ``balance``, the parameter count ``len(fn[key])`` is drawn first."""
    return pick_by_arity(rng, fns, lambda f: len(f[key]), balance)


def build(
    python_files: Sequence[str],
    rust_files: Sequence[str],
    *,
    n_docs: int,
    seed: int,
    exclude: Iterable[str],
    words: Sequence[str],
    arity_balance: bool = False,
) -> dict[str, list[str]]:
    """``{"python_wrap": [...], "rust_wrap": [...]}``: ``n_docs`` documents per language.

    ``arity_balance`` (curriculum v3) draws the parameter count uniformly before the function
    and admits Rust tuple parameters such as ``(f64, f64)``.
    """
    ex = frozenset(exclude)
    rng = random.Random(seed)
    gen = CodeGenerator(seed=seed + 1, exclude=ex, random_names=True, words=words)
    py = python_functions(python_files, ex)
    rs = rust_functions(rust_files, ex, tuples=arity_balance)
    b = arity_balance
    return {
        "python_wrap": [
            python_document(_pick(rng, py, "params", b), gen, rng) for _ in range(n_docs)
        ],
        "rust_wrap": [
            rust_document(_pick(rng, rs, "types", b), gen, rng, RS_TEST_NAMES, tuples=b)
            for _ in range(n_docs)
        ],
        "_counts": [str(len(py)), str(len(rs))],
    }
