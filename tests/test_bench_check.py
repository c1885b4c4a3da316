"""``make bench-check`` (benchmarks.check) on a scratch git repository: a section is stale once
a path it measures changes after the commit it carries, fresh otherwise; no stamp is stale."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import check


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def _commit(root: Path, path: str, text: str) -> str:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", path)
    return _git(root, "rev-parse", "--short", "HEAD")


def _results(stamps: dict[str, str | None]) -> str:
    out = ["# plip-nn benchmarks", ""]
    for title, commit in stamps.items():
        out += [f"## {title}", ""] + ([check.stamp_line(commit), ""] if commit else []) + ["x", ""]
    return "\n".join(out)


def test_sections_are_stale_after_a_change_to_their_paths(tmp_path, monkeypatch):
    _git(tmp_path, "init", "-q")
    measured = _commit(tmp_path, "benchmarks/heads.py", "1")
    monkeypatch.setattr(check, "SECTIONS", {"Heads step": ("benchmarks/heads.py",),
                                            "P1 ": ("plip_nn/", ":(exclude)plip_nn/x.py")})  # fmt: skip
    _commit(tmp_path, "plip_nn/kernels.py", "1")
    _commit(tmp_path, "plip_nn/x.py", "1")  # excluded from P1's paths
    p1 = _git(tmp_path, "log", "-1", "--format=%h", "--", "plip_nn/kernels.py")
    text = _results({"Heads step (issue 22)": measured, "P1 intervened forward": p1})
    assert [v.stale for v in check.check(text, tmp_path)] == [False, False]
    changed = _commit(tmp_path, "benchmarks/heads.py", "2")
    [heads, p1v] = check.check(text, tmp_path)
    assert heads.stale and heads.last_change == changed and changed in heads.why
    assert not p1v.stale
    [none] = check.check(_results({"Heads step": None}), tmp_path)
    assert none.stale and "no 'Measured at git" in none.why
    with pytest.raises(KeyError, match="has no entry in SECTIONS"):
        check.check(_results({"P99 new": measured}), tmp_path)


def test_every_section_of_results_md_has_paths_and_a_stamp():
    text = check.RESULTS.read_text()
    titles = check.sections(text)
    assert len(titles) >= 12
    for title, stamp in titles:
        assert check.paths_for(title), title
        assert stamp is not None, f"section {title!r} of RESULTS.md carries no commit"


def test_stamped_puts_the_commit_under_every_section():
    lines = check.stamped(["# t", "", "## A", "x", "## B", "y"], "abc1234")
    assert check.sections("\n".join(lines)) == [("A", "abc1234"), ("B", "abc1234")]
