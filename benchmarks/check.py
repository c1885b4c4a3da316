"""``make bench-check``: which sections of ``benchmarks/RESULTS.md`` are older than their code.

``python -m benchmarks.check [--results benchmarks/RESULTS.md]``

Every ``## `` section of RESULTS.md carries the commit it was measured at, on a line of its own
(:func:`stamp_line`, written by ``benchmarks.run`` and ``benchmarks.heads``). :data:`SECTIONS`
names the code paths each section measures. A section is stale when the last commit that
changed one of its paths (``git log -1 -- PATHS``) is not already contained in its stamp commit
(``git merge-base --is-ancestor``). Lists every section with its stamp, the last change and its
state; exits 1 when any section is stale or carries no stamp, 0 otherwise. Reads git only: it
takes seconds, not a benchmark run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
STAMP = re.compile(r"^Measured at git `([0-9a-f]{7,40})`\.$")

_ENGINE = ("plip_nn/",)
# The engine as run()/generate() use it: plip_nn.intervention is only the user's-trace entry.
_RUN_ENGINE = ("plip_nn/", ":(exclude)plip_nn/intervention.py")
_HARNESS = ("benchmarks/run.py", "benchmarks/timing.py", "benchmarks/workload.py",
            "benchmarks/models.py")  # fmt: skip

SECTIONS: dict[str, tuple[str, ...]] = {
    # section title prefix -> the paths whose last change it must postdate
    "Machine": ("benchmarks/run.py",),
    "Models": ("benchmarks/models.py", "plip_nn/data/"),
    "Targets": (
        *_ENGINE,
        *_HARNESS,
        "benchmarks/engine_overhead.py",
        "benchmarks/overhead.py",
        "benchmarks/generation.py",
        "benchmarks/memory.py",
        "benchmarks/intervene_overhead.py",
    ),
    "P1 ": (*_RUN_ENGINE, *_HARNESS, "benchmarks/engine_overhead.py"),
    "P1b ": (*_RUN_ENGINE, *_HARNESS, "benchmarks/overhead.py", "benchmarks/profile_run.py"),
    "P3 / P4 ": (*_RUN_ENGINE, *_HARNESS, "benchmarks/generation.py"),
    "P5 ": (*_RUN_ENGINE, *_HARNESS, "benchmarks/remote_bytes.py"),
    "P6 ": (*_RUN_ENGINE, *_HARNESS, "benchmarks/memory.py"),
    "P7 ": (*_ENGINE, *_HARNESS, "benchmarks/intervene_overhead.py"),
    "P8 ": (*_RUN_ENGINE, *_HARNESS, "benchmarks/gen_batching.py"),
    "P9 ": (*_ENGINE, *_HARNESS, "benchmarks/intervene_overhead.py"),
    "Heads step": (
        *_RUN_ENGINE,
        "experiments/heads.py",
        "experiments/records.py",
        "experiments/conditions.py",
        "analysis/heads.py",
        "benchmarks/heads.py",
        "benchmarks/models.py",
    ),
}


def stamp_line(commit: str) -> str:
    """The line under a section's heading that names the commit it was measured at."""
    return f"Measured at git `{commit}`."


def stamped(lines: list[str], commit: str) -> list[str]:
    """``lines`` with :func:`stamp_line` under every ``## `` heading (``benchmarks.run``)."""
    out: list[str] = []
    for line in lines:
        out.append(line)
        if line.startswith("## "):
            out += ["", stamp_line(commit)]
    return out


def head_commit(root: Path = ROOT) -> str:
    """The short hash of HEAD ('' outside a git checkout)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, check=False)  # fmt: skip
    except OSError:
        return ""
    return proc.stdout.strip()


@dataclass(frozen=True)
class Verdict:
    """One section's state: its stamp, the last change to its paths, and whether it is stale."""

    section: str
    stamp: str | None
    last_change: str
    stale: bool
    why: str


def sections(text: str) -> list[tuple[str, str | None]]:
    """(``## `` title, stamp commit or None) for every level-2 section of RESULTS.md."""
    out: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            out.append((line[3:].strip(), None))
        elif out and out[-1][1] is None and (m := STAMP.match(line.strip())):
            out[-1] = (out[-1][0], m.group(1))
    return out


def paths_for(title: str) -> tuple[str, ...]:
    """The paths :data:`SECTIONS` names for ``title`` (the longest matching prefix)."""
    keys = [k for k in SECTIONS if title.startswith(k) or title == k.strip()]
    if not keys:
        raise KeyError(
            f"benchmarks/check.py: section {title!r} of RESULTS.md has no entry in SECTIONS; "
            "add the code paths it measures"
        )
    return SECTIONS[max(keys, key=len)]


def _git(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def judge(title: str, stamp: str | None, root: Path = ROOT) -> Verdict:
    """Whether ``title`` (measured at ``stamp``) predates the last change to its paths."""
    paths = paths_for(title)
    last = _git("log", "-1", "--format=%h", "--", *paths, root=root).stdout.strip()
    if stamp is None:
        return Verdict(title, None, last, True, "no 'Measured at git `...`.' line")
    if _git("cat-file", "-e", f"{stamp}^{{commit}}", root=root).returncode != 0:
        return Verdict(title, stamp, last, True, f"commit {stamp} is not in this repository")
    if not last:
        return Verdict(title, stamp, last, False, "no commit touches its paths")
    fresh = _git("merge-base", "--is-ancestor", last, stamp, root=root).returncode == 0
    why = "fresh" if fresh else f"{', '.join(paths)} changed at {last} after {stamp}"
    return Verdict(title, stamp, last, not fresh, why)


def check(text: str, root: Path = ROOT) -> list[Verdict]:
    """A verdict for every ``## `` section of ``text``."""
    return [judge(title, stamp, root) for title, stamp in sections(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.check",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.results.is_file():
        sys.stderr.write(f"bench-check: {args.results} does not exist; pass --results PATH\n")
        return 2
    try:
        verdicts = check(args.results.read_text())
    except KeyError as err:
        sys.stderr.write(f"{err.args[0]}\n")
        return 2
    for v in verdicts:
        state = "STALE" if v.stale else "ok"
        sys.stdout.write(f"{state:5}  {v.section[:60]:60}  measured {v.stamp or '-':9}  "
                         f"last change {v.last_change or '-':9}  {v.why}\n")  # fmt: skip
    stale = [v for v in verdicts if v.stale]
    sys.stdout.write(f"{len(stale)} of {len(verdicts)} sections stale\n")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
