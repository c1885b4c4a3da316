"""Running generated tests: the ``--execute`` policy and the subprocess / sandbox runners.

Execution never happens in the scoring process. Python runs ``python -I -m doctest`` on a temp
module (``function_source`` with its own docstrings removed, plus the generated doctest as
``__test__``); Rust runs ``rustc --edition 2021 --test`` and then the test binary. The mode
(:data:`ExecuteMode`) says where: ``sandbox`` (:mod:`analysis.sandbox`, bubblewrap), ``unsafe``
(a plain subprocess with a scrubbed environment, an explicit opt-in) or ``off``. Each distinct
program runs once per process (memoised): conditions that generate the same test share its
result. Scoring (what is run, and the flags) is :mod:`analysis.preservation`.
"""

from __future__ import annotations

import ast
import functools
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Literal

from analysis import sandbox

__all__ = [
    "EXECUTE_MODES",
    "EXECUTE_REQUESTS",
    "ExecuteMode",
    "check_execute",
    "execute_python",
    "execute_rust",
    "parse_python",
    "resolve_execute",
    "rustc",
]

log = logging.getLogger(__name__)

_RUSTC_DEFAULT = Path("/root/.cargo/bin/rustc")


ExecuteMode = Literal["sandbox", "unsafe", "off"]
EXECUTE_MODES: tuple[str, ...] = ("sandbox", "unsafe", "off")
_OUTPUT_TAIL = 2000


def check_execute(execute: object) -> None:
    if execute not in EXECUTE_MODES:
        raise ValueError(
            f"execute must be one of {', '.join(EXECUTE_MODES)}; got {execute!r} "
            "(sandbox runs generated code in bubblewrap, unsafe without it, off not at all)"
        )


EXECUTE_REQUESTS: tuple[str, ...] = ("auto", "sandbox", "off", "unsafe")


def resolve_execute(requested: str) -> tuple[ExecuteMode, str]:
    """The ``--execute`` policy: (mode to score with, note for the manifest and report).

    ``auto``: the sandbox when it works here, else ``off`` with a note saying why. ``sandbox``:
    the sandbox, or :class:`~analysis.sandbox.SandboxUnavailable` naming the fix. ``unsafe``:
    no sandbox, noted. ``off``: not run. The note is empty when nothing needs saying.
    """
    if requested not in EXECUTE_REQUESTS:
        raise ValueError(
            f"--execute {requested!r}: use one of {', '.join(EXECUTE_REQUESTS)} (auto = sandbox "
            "when available, else off)"
        )
    if requested == "off":
        return "off", ""
    if requested == "unsafe":
        return "unsafe", (
            "generated tests were executed WITHOUT a sandbox (--execute unsafe): they could read "
            "and write what this user can"
        )
    reason = sandbox.unavailable_reason()
    if reason is None:
        return "sandbox", ""
    if requested == "sandbox":
        raise sandbox.SandboxUnavailable(f"--execute sandbox: {reason}")
    return "off", f"executes not measured (no sandbox; --execute auto): {reason}"


def _scrubbed_env(tmp: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8"}


def _run_unsafe(cmd: list[str], *, cwd: str, timeout: float) -> tuple[int | None, str]:
    """``--execute unsafe``: a plain subprocess (returncode or None on timeout, output tail)."""
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=_scrubbed_env(cwd),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    return proc.returncode, out[-_OUTPUT_TAIL:]


def _run_sandboxed(
    cmd: list[str],
    *,
    workdir: str,
    writable: bool,
    ro_paths: list[str],
    limits: sandbox.Limits,
    chdir: str = "/tmp",
) -> tuple[int | None, str]:
    """Run ``cmd`` in the sandbox; (returncode or None when killed, reason/output tail)."""
    res = sandbox.run(
        cmd, workdir=workdir, writable=writable, ro_paths=ro_paths, chdir=chdir, limits=limits
    )
    why = res.describe(limits)
    if res.returncode is None:
        return None, why
    out = res.output[-_OUTPUT_TAIL:]
    return res.returncode, out if res.returncode >= 0 else f"{why}: {out}"


def _python_for_sandbox() -> tuple[str, str]:
    """(interpreter, prefix to bind): the base interpreter of this one, never a venv shim."""
    return os.path.realpath(sys.executable), sys.base_prefix


def _python_limits(timeout: float) -> sandbox.Limits:
    return sandbox.Limits(wall_s=timeout, cpu_s=max(1, math.ceil(timeout)))


def _rust_compile_limits(timeout: float) -> sandbox.Limits:
    wall = max(timeout, 60.0)
    return sandbox.Limits(
        wall_s=wall,
        cpu_s=math.ceil(wall) * 2,  # rustc runs codegen threads in parallel
        address_space=8 * 1024**3,  # rustc reserves much more than it touches
        file_size=256 * 1024**2,
        processes=128,
    )


def _rust_run_limits(timeout: float) -> sandbox.Limits:
    return sandbox.Limits(wall_s=timeout, cpu_s=max(1, math.ceil(timeout)))


AST_LOCK = threading.Lock()
"""Held around every ``ast.parse`` of the scoring code: the generation stage scores a chunk's
tests in threads, and CPython 3.11's AST builder keeps its recursion depth per interpreter, not
per thread, so concurrent parses can fail with "AST constructor recursion depth mismatch"."""


def parse_python(source: str) -> ast.Module:
    """``ast.parse`` under :data:`AST_LOCK` (raises SyntaxError as it does)."""
    with AST_LOCK:
        return ast.parse(source)


def _strip_docstrings(source: str) -> str:
    """``source`` without docstrings, so doctest only runs the generated examples."""
    tree = parse_python(source)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and ast.get_docstring(node, clean=False) is not None
        ):
            node.body[0] = ast.Pass()
    return ast.unparse(ast.fix_missing_locations(tree))


# One run per distinct program: conditions that generate the same test (often most of them)
# share its result. Generated tests are deterministic programs; the memo lives in-process only.
@functools.lru_cache(maxsize=8192)
def execute_python(
    function_source: str, doctest_text: str, timeout: float, execute: ExecuteMode
) -> tuple[bool, str]:
    try:
        module = _strip_docstrings(function_source)
    except SyntaxError as exc:
        return False, f"function_source does not parse: {exc.msg}"
    module += f"\n\n__test__ = {{'generated': {doctest_text!r}}}\n"
    with tempfile.TemporaryDirectory(prefix="plip_doctest_") as tmp:
        Path(tmp, "generated_doctest.py").write_text(module, encoding="utf-8")
        if execute == "sandbox":
            python, prefix = _python_for_sandbox()
            cmd = [python, "-I", "-m", "doctest", "/work/generated_doctest.py"]
            code, out = _run_sandboxed(
                cmd, workdir=tmp, writable=False, ro_paths=[prefix], limits=_python_limits(timeout)
            )
        else:
            cmd = [sys.executable, "-I", "-m", "doctest", "generated_doctest.py"]
            code, out = _run_unsafe(cmd, cwd=tmp, timeout=timeout)
    if code is None:
        return False, f"doctest {out}"
    return code == 0, "" if code == 0 else f"doctest failed (exit {code}): {out[-300:]}"


@functools.cache
def rustc() -> str | None:
    """The real compiler binary (``<sysroot>/bin/rustc``), so rustup proxies work scrubbed."""
    found = shutil.which("rustc") or (str(_RUSTC_DEFAULT) if _RUSTC_DEFAULT.exists() else None)
    if found is None:
        return None
    try:
        proc = subprocess.run(
            [found, "--print", "sysroot"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    real = Path(proc.stdout.strip(), "bin", "rustc")
    if proc.returncode != 0 or not real.exists():
        log.warning("rustc at %s does not report a usable sysroot: %s", found, proc.stderr[-200:])
        return None
    return str(real)


# One run per distinct program: conditions that generate the same test (often most of them)
# share its result. Generated tests are deterministic programs; the memo lives in-process only.
@functools.lru_cache(maxsize=8192)
def execute_rust(
    function_source: str, test_source: str, timeout: float, execute: ExecuteMode
) -> tuple[bool | None, str]:
    compiler = rustc()
    if compiler is None:
        log.warning("rustc not found: Rust tests are not executed (executes=None)")
        return None, "rustc not found"
    program = "#![allow(dead_code, unused)]\n" + function_source + "\n\n" + test_source + "\n"
    with tempfile.TemporaryDirectory(prefix="plip_rustc_") as tmp:
        Path(tmp, "generated_test.rs").write_text(program, encoding="utf-8")
        compile_cmd = [compiler, "--edition", "2021", "--test", "-o", "generated_test"]
        run_args = ["--test-threads=1"]
        if execute == "sandbox":
            sysroot = str(Path(compiler).parent.parent)
            # The sandbox has no /etc, so Debian's /usr/bin/cc -> /etc/alternatives link is
            # resolved here.
            linker = os.path.realpath(shutil.which("cc") or "/usr/bin/cc")
            code, out = _run_sandboxed(
                [*compile_cmd, "-C", f"linker={linker}", "generated_test.rs"],
                workdir=tmp,
                writable=True,  # rustc writes the binary next to the source
                ro_paths=[sysroot, str(Path(linker).parent)],
                chdir="/work",
                limits=_rust_compile_limits(timeout),
            )
            # Compile-only mounts /work writable; the untrusted binary gets it read-only.
            cmd = ["/work/generated_test", *run_args]
            run = functools.partial(
                _run_sandboxed,
                workdir=tmp,
                writable=False,
                ro_paths=[],
                limits=_rust_run_limits(timeout),
            )
        else:
            code, out = _run_unsafe(
                [*compile_cmd, "generated_test.rs"], cwd=tmp, timeout=max(timeout, 60.0)
            )
            cmd = ["./generated_test", *run_args]
            run = functools.partial(_run_unsafe, cwd=tmp, timeout=timeout)
        if code != 0:
            return False, f"rustc failed: {out[-300:]}"
        code, out = run(cmd)
    if code is None:
        return False, f"test binary {out}"
    return code == 0, "" if code == 0 else f"test failed (exit {code}): {out[-300:]}"
