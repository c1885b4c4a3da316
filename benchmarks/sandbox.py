"""Cost of sandboxed execution of one generated test vs a plain subprocess (``--execute unsafe``).

Times ``score_python`` / ``score_rust`` end to end (parse + write + run) on a passing test, median
of N runs each, interleaved so load drifts hit both modes alike. Run: ``python -m
benchmarks.sandbox [N]``. CPU only; needs bwrap (and rustc for the Rust rows).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from analysis import sandbox
from analysis.execution import rustc
from analysis.preservation import score_python, score_rust

PY_SRC = 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n'
PY_PROMPT = 'def add(a, b):\n    """Add two numbers.\n\n    >>> '
PY_CONT = 'add(2, 3)\n    5\n    """'
RS_SRC = "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"
RS_PROMPT = RS_SRC + "\n#[test]\nfn "
RS_CONT = "test_add() {\n    assert_eq!(add(2, 3), 5);\n}\n"


def _time(fn: Callable[[str], Any], mode: str) -> float:
    t0 = time.perf_counter()
    res = fn(mode)
    dt = time.perf_counter() - t0
    if res.executes is not True:
        raise RuntimeError(f"{mode}: the benchmark test did not pass: {res.reason}")
    return dt


def main(n: int = 10) -> str:
    if not sandbox.available():
        raise SystemExit(f"no sandbox: {sandbox.unavailable_reason()}")
    cases = {
        "python doctest": lambda m: score_python(
            PY_PROMPT, PY_CONT, function_name="add", arity=2, function_source=PY_SRC, execute=m
        ),
    }
    if rustc() is not None:
        cases["rust rustc --test + run"] = lambda m: score_rust(
            RS_PROMPT, RS_CONT, function_name="add", arity=2, function_source=RS_SRC, execute=m
        )
    lines = [
        "| case | unsafe median s | sandbox median s | ratio | overhead s | N |",
        "|---|---|---|---|---|---|",
    ]
    for name, fn in cases.items():
        reps = n if name.startswith("python") else max(3, n // 3)
        _time(fn, "sandbox"), _time(fn, "unsafe")  # warm caches (probe, rustc sysroot)
        times: dict[str, list[float]] = {"unsafe": [], "sandbox": []}
        for _ in range(reps):
            for mode in ("unsafe", "sandbox"):
                times[mode].append(_time(fn, mode))
        u, s = statistics.median(times["unsafe"]), statistics.median(times["sandbox"])
        lines.append(f"| {name} | {u:.3f} | {s:.3f} | {s / u:.2f} | {s - u:+.3f} | {reps} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
