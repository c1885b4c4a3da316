"""The code runs on every Python that pyproject.toml declares (``requires-python``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("plip_nn", "experiments", "analysis", "benchmarks", "tests", "scripts")
VERMIN = [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())"]


def python310() -> str | None:
    """A working Python 3.10 interpreter (pyenv shims exist without one behind them)."""
    candidates = [
        shutil.which("python3.10"),
        *map(str, Path.home().glob(".pyenv/versions/3.10*/bin/python3.10")),
    ]
    for exe in filter(None, candidates):
        if subprocess.run([exe, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return exe
    return None


def declared_minimum() -> tuple[int, int]:
    # tomllib is 3.11+, and these tests must run on the declared minimum too.
    m = re.search(r'^requires-python = ">=3\.(\d+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert m, "pyproject.toml: requires-python is not of the form '>=3.N'"
    return 3, int(m.group(1))


def test_vermin_finds_nothing_newer_than_declared() -> None:
    major, minor = declared_minimum()
    proc = subprocess.run(
        [*VERMIN, "--no-tips", "--eval-annotations", "--violations",
         "--backport", "dataclasses", f"-t={major}.{minor}-", *PACKAGES],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def test_vermin_would_catch_a_311_api(tmp_path: Path) -> None:
    # The check above can fail: datetime.UTC (3.11) is what this project once used.
    (tmp_path / "m.py").write_text("import datetime\nNOW = datetime.datetime.now(datetime.UTC)\n")
    proc = subprocess.run(
        [*VERMIN, "--no-tips", "--violations", "-t=3.10-", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "datetime.UTC" in proc.stdout


@pytest.mark.skipif(python310() is None, reason="no Python 3.10 interpreter here")
def test_sources_compile_and_sandbox_imports_on_python_310() -> None:
    files = [str(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    py310 = python310()
    assert py310 is not None
    proc = subprocess.run(
        [py310, "-c", "import sys\nfor f in sys.argv[1:]: compile(open(f).read(), f, 'exec')",
         *files],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The sandbox module is stdlib-only: load it under 3.10 and run a command through it.
    script = (
        "import importlib.util as u, sys, tempfile\n"
        "spec = u.spec_from_file_location('sb', sys.argv[1]); s = u.module_from_spec(spec)\n"
        "sys.modules['sb'] = s; spec.loader.exec_module(s)\n"
        "if not s.available(): print('no sandbox'); sys.exit(0)\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    r = s.run(['/bin/echo', 'hi'], workdir=d, limits=s.Limits())\n"
        "print(r.returncode, r.output.strip())\n"
    )
    proc = subprocess.run(
        [py310, "-c", script, str(ROOT / "analysis" / "sandbox.py")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() in ("0 hi", "no sandbox")
