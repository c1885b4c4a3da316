"""A tiny model directory and a small hand-positioned corpus for experiment and CLI tests.

Positions in the corpus are computed here with ``str.index`` on code we generate, independent
of the annotator, so the experiments are tested on their own.
"""

from __future__ import annotations

import json
from pathlib import Path

from archs import tiny_model, tiny_tokenizer

PY_NAMES = ["add", "sub", "mul", "pick"]
RS_NAMES = ["add", "sub", "mul", "pick"]


def write_model_dir(path: Path, arch: str = "qwen2", seed: int = 0) -> Path:
    """Save a tiny random model + the tiny tokenizer as an HF directory."""
    model = tiny_model(arch, seed)
    model.config._attn_implementation = "eager"
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def _py_targets(code: str, name: str, params: list[str]) -> list[int]:
    start = code.index(f"def {name}(")
    out = [start, start + 4]
    cursor = start + 4 + len(name) + 1
    for p in params:
        cursor = code.index(p, cursor)
        out.append(cursor)
        cursor += len(p)
    return out


def _rs_targets(code: str, name: str, params: list[str]) -> list[int]:
    start = code.index(f"fn {name}(")
    out = [start, start + 3]
    cursor = start + 3 + len(name) + 1
    for p in params:
        cursor = code.index(f"{p}:", cursor)
        out.append(cursor)
        cursor += len(p)
    return out


def _fn(name: str, params: list[str], source: str) -> dict:
    return {"name": name, "params": params, "arity": len(params), "source": source}


def _entry(
    sid: str, code: str, marker: str, pattern: str, targets: list[int], fn: dict | None
) -> dict:
    entry = {
        "id": sid,
        "code": code,
        "marker_char_pos": code.index(marker),
        "marker_pattern": pattern,
        "target_char_positions": targets,
    }
    if fn is not None:
        entry["function"] = fn
    return entry


def corpus_dict() -> dict:
    """A small corpus in the plip-nn format (v2.0 lists plus generation lists)."""
    py_test, rs_test, py_base, rs_base, py_gen, rs_gen = [], [], [], [], [], []
    for i, name in enumerate(PY_NAMES):
        params = ["a", "b"] if i % 2 == 0 else ["x", "y", "z"]
        sig = f"def {name}({', '.join(params)}):\n"
        body = f"    return {' + '.join(params)}\n"
        code = (
            sig
            + f'    """Do {name}.\n\n    >>> {name}({", ".join("1" * len(params))})\n    """\n'
            + body
        )
        source = sig + body
        fn = _fn(name, params, source)
        py_test.append(
            _entry(f"py_{name}", code, ">>>", ">>>", _py_targets(code, name, params), fn)
        )
        gen = sig + f'    """Do {name} with the numbers.\n\n    >>> '
        py_gen.append(
            _entry(f"pygen_{name}", gen, ">>>", ">>>", _py_targets(gen, name, params), fn)
        )
    for i, name in enumerate(RS_NAMES):
        params = ["a", "b"] if i % 2 == 0 else ["x", "y", "z"]
        args = ", ".join(f"{p}: i32" for p in params)
        src = f"fn {name}({args}) -> i32 {{\n    {' + '.join(params)}\n}}\n"
        call = ", ".join("1" * len(params))
        code = (
            src
            + f"\n#[test]\nfn test_{name}() {{\n    assert_eq!({name}({call}), {len(params)});\n}}\n"
        )
        fn = _fn(name, params, src)
        rs_test.append(
            _entry(f"rs_{name}", code, "#[test]", "#[test]", _rs_targets(code, name, params), fn)
        )
        gen = src + "\n#[test]\nfn "
        rs_gen.append(
            _entry(f"rsgen_{name}", gen, "#[test]", "#[test]", _rs_targets(gen, name, params), fn)
        )
    for name in ("inc", "dec"):
        code = f"def {name}(a, b):\n    # >>> not a doctest, a comment\n    return a + b\n"
        py_base.append(
            _entry(f"pyb_{name}", code, ">>>", ">>>", _py_targets(code, name, ["a", "b"]), None)
        )
        code = f"fn {name}(a: i32, b: i32) -> i32 {{\n    a + b\n}}\n\n#[inline]\nfn other() {{}}\n"
        rs_base.append(
            _entry(
                f"rsb_{name}", code, "#[inline]", "#[", _rs_targets(code, name, ["a", "b"]), None
            )
        )
    return {
        "_format_version": "2.0",
        "_description": "plip-nn test corpus (generated in tests/study_fixtures.py)",
        "python_doctest": py_test,
        "rust_test": rs_test,
        "python_baseline": py_base,
        "rust_baseline": rs_base,
        "python_generation": py_gen,
        "rust_generation": rs_gen,
    }


def write_corpus(path: Path, data: dict | None = None) -> Path:
    path.write_text(json.dumps(data if data is not None else corpus_dict(), indent=1))
    return path
