"""``--resume`` refuses to mix code versions unless ``--allow-code-change`` (then recorded)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from study_fixtures import write_corpus, write_model_dir

from experiments import cli
from plip_nn import runs
from plip_nn.runs import RunDir, RunDirError

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def _code(monkeypatch: pytest.MonkeyPatch, commit: str, version: str = "0.1.0") -> None:
    monkeypatch.setattr(runs, "_git_commit", lambda: commit)
    real = runs.package_versions

    def versions() -> dict[str, str]:
        return {**real(), "plip-nn": version}

    monkeypatch.setattr(runs, "package_versions", versions)


def _part(n: int) -> pd.DataFrame:
    return pd.DataFrame({"k": [n], "v": [float(n)]})


def test_resume_same_code_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _code(monkeypatch, COMMIT_A)
    run = RunDir.open(tmp_path / "r", {"x": 1}, resume=False, manifest={})
    run.write_part("t", "p0", _part(0))
    run = RunDir.open(tmp_path / "r", {"x": 1}, resume=True, manifest={})
    run.write_part("t", "p1", _part(1))
    sessions = json.loads((tmp_path / "r" / "manifest.json").read_text())["code_versions"]
    assert [s["git_commit"] for s in sessions] == [COMMIT_A, COMMIT_A]
    assert [s["parts"] for s in sessions] == [{"t": ["p0"]}, {"t": ["p1"]}]


@pytest.mark.parametrize(
    ("second", "named"),
    [((COMMIT_B, "0.1.0"), COMMIT_B), ((COMMIT_A, "0.2.0"), "0.2.0")],
    ids=["commit", "version"],
)
def test_resume_other_code_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: tuple[str, str], named: str
) -> None:
    _code(monkeypatch, COMMIT_A, "0.1.0")
    run = RunDir.open(tmp_path / "r", {"x": 1}, resume=False, manifest={})
    run.write_part("t", "p0", _part(0))
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    _code(monkeypatch, *second)
    with pytest.raises(RunDirError, match="--allow-code-change") as exc:
        RunDir.open(tmp_path / "r", {"x": 1}, resume=True, manifest={})
    first = COMMIT_A if named == COMMIT_B else "0.1.0"
    assert first in str(exc.value) and named in str(exc.value)
    after = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert after == before  # nothing touched


def test_allow_code_change_records_each_commit_per_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _code(monkeypatch, COMMIT_A)
    run = RunDir.open(tmp_path / "r", {"x": 1}, resume=False, manifest={})
    run.write_part("t", "p0", _part(0))
    run.write_part("u", "q0", _part(0))
    _code(monkeypatch, COMMIT_B)
    run = RunDir.open(tmp_path / "r", {"x": 1}, resume=True, manifest={}, allow_code_change=True)
    run.write_part("t", "p1", _part(1))
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["git_commit"] == COMMIT_B
    sessions = man["code_versions"]
    assert [(s["git_commit"], s["parts"]) for s in sessions] == [
        (COMMIT_A, {"t": ["p0"], "u": ["q0"]}),
        (COMMIT_B, {"t": ["p1"]}),
    ]
    # A further plain resume compares with the latest code (B), so it is accepted.
    RunDir.open(tmp_path / "r", {"x": 1}, resume=True, manifest={})


def test_cli_resume_with_other_commit_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(write_model_dir(tmp_path / "model"))
    corpus = str(write_corpus(tmp_path / "corpus.json"))
    out = tmp_path / "run"
    argv = ["scan", "--model", model, "--corpus", corpus, "--out", str(out), "--no-progress",
            "--limit", "1"]  # fmt: skip
    _code(monkeypatch, COMMIT_A)
    assert cli.main(argv) == 0
    capsys.readouterr()
    _code(monkeypatch, COMMIT_B)
    assert cli.main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert COMMIT_A in err and COMMIT_B in err and len(err.strip().splitlines()) == 1
    assert cli.main([*argv, "--resume", "--allow-code-change"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert [s["git_commit"] for s in man["code_versions"]] == [COMMIT_A, COMMIT_B]
    assert man["code_versions"][0]["parts"]  # the first session wrote the scan parts
