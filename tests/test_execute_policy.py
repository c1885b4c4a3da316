"""``--execute {auto,sandbox,off,unsafe}`` on generate and triangle (docs/CONTRACT.md, "Metrics")."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from sandbox_marks import needs_sandbox
from study_fixtures import write_corpus, write_model_dir

from analysis import preservation, sandbox
from experiments import cli

NO_SANDBOX = "sandbox tools not found: bwrap; " + sandbox.INSTALL_HINT


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("execute")
    return {
        "model": str(write_model_dir(root / "model")),
        "corpus": str(write_corpus(root / "corpus.json")),
    }


def _generate(env: dict[str, str], out: Path, *flags: str) -> list[str]:
    return [
        "generate",
        "--model", env["model"], "--corpus", env["corpus"], "--out", str(out),
        "--no-progress", "--layer", "1", "--limit", "1", "--max-new-tokens", "4",
        "--conditions", "baseline", "knockout", *flags,
    ]  # fmt: skip


@pytest.fixture
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "unavailable_reason", lambda: NO_SANDBOX)


def test_resolve_execute_policy(no_sandbox: None) -> None:
    assert preservation.resolve_execute("off") == ("off", "")
    mode, note = preservation.resolve_execute("auto")
    assert mode == "off" and "no sandbox" in note and "apt-get install bubblewrap" in note
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        preservation.resolve_execute("sandbox")
    mode, note = preservation.resolve_execute("unsafe")
    assert mode == "unsafe" and "WITHOUT a sandbox" in note
    with pytest.raises(ValueError, match="--execute 'yes'"):
        preservation.resolve_execute("yes")


@needs_sandbox
def test_resolve_execute_uses_sandbox_when_present() -> None:
    assert preservation.resolve_execute("auto") == ("sandbox", "")
    assert preservation.resolve_execute("sandbox") == ("sandbox", "")


def test_execute_sandbox_required_exits_2_and_writes_nothing(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_sandbox: None
) -> None:
    out = tmp_path / "run"
    code = cli.main(_generate(env, out, "--execute", "sandbox"))
    err = capsys.readouterr().err
    assert code == 2
    assert "apt-get install bubblewrap" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_execute_value_exits_2(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(_generate(env, tmp_path / "run", "--execute", "yes"))
    assert code == 2 and "--execute" in capsys.readouterr().err


def test_auto_without_sandbox_leaves_executes_empty_and_says_so(
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    no_sandbox: None,
) -> None:
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        code = cli.main(_generate(env, out))
    assert code == 0, capsys.readouterr().err
    warnings = [r for r in caplog.records if "executes not measured" in r.getMessage()]
    assert len(warnings) == 1
    stdout = capsys.readouterr().out.strip().splitlines()
    assert stdout[-2].startswith("Note: executes not measured (no sandbox")
    assert "apt-get install bubblewrap" in stdout[-2] and stdout[-1] == str(out)
    gens = pd.read_parquet(out / "generations.parquet")
    assert len(gens) > 0 and gens["executes"].isna().all()
    man = json.loads((out / "manifest.json").read_text())
    assert man["execute"]["requested"] == "auto" and man["execute"]["mode"] == "off"
    assert "no sandbox" in man["execute"]["note"]
    from analysis.report import analyze

    report = analyze(out).read_text()
    assert "executes not measured (no sandbox" in report


@needs_sandbox
def test_auto_with_sandbox_executes(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = cli.main(_generate(env, out))
    assert code == 0, capsys.readouterr().err
    gens = pd.read_parquet(out / "generations.parquet")
    valid = gens[gens["valid"]]
    # Every valid generated test was run (True/False); invalid ones are False, never empty.
    assert gens["executes"].notna().all()
    assert set(valid["executes"].map(bool)) <= {True, False}
    man = json.loads((out / "manifest.json").read_text())
    assert man["execute"] == {"requested": "auto", "mode": "sandbox", "note": ""}
    assert "Note:" not in capsys.readouterr().out


def test_unsafe_is_recorded(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_sandbox: None
) -> None:
    out = tmp_path / "run"
    code = cli.main(_generate(env, out, "--execute", "unsafe"))
    assert code == 0, capsys.readouterr().err
    man = json.loads((out / "manifest.json").read_text())
    assert man["execute"]["mode"] == "unsafe" and "WITHOUT a sandbox" in man["execute"]["note"]


def test_triangle_config_validates_execute() -> None:
    from experiments.study import ConfigError
    from experiments.triangle import Config

    with pytest.raises(ConfigError, match="--execute"):
        Config(execute="yes")
    assert Config().execute == "auto"


def test_execute_notes_of_one_run_and_of_several(tmp_path: Path) -> None:
    from analysis.report import execute_notes

    def run(path: Path, note: str) -> Path:
        path.mkdir(parents=True)
        execute = {"requested": "auto", "mode": "off" if note else "sandbox", "note": note}
        (path / "manifest.json").write_text(json.dumps({"execute": execute}))
        return path

    assert execute_notes(run(tmp_path / "one", NO_SANDBOX)) == [NO_SANDBOX]
    assert execute_notes(run(tmp_path / "fine", "")) == []
    several = tmp_path / "several"
    run(several / "model_a", NO_SANDBOX)
    run(several / "model_b", "")
    assert execute_notes(several) == [f"[model_a] {NO_SANDBOX}"]


def test_each_distinct_continuation_is_scored_once(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Running a generated test costs ~50 ms in the sandbox; conditions that leave a
    # continuation as baseline's must not run it again. Scoring is a function of the sample
    # and the scored text, so the table is the same as scoring every row.
    from experiments import generate as gen_mod

    calls: list[tuple[str, str]] = []
    real = gen_mod._preservation

    def counting(p, text, execute):  # type: ignore[no-untyped-def]
        calls.append((p.id, text))
        return real(p, text, execute)

    monkeypatch.setattr(gen_mod, "_preservation", counting)
    out = tmp_path / "run"
    flags = _generate(env, out, "--execute", "off")
    i = flags.index("knockout")  # a control and a mild Scale: often baseline's text
    flags[i : i + 1] = ["random_control", "scale_2"]
    assert cli.main(flags) == 0, capsys.readouterr().err
    gens = pd.read_parquet(out / "generations.parquet")
    distinct = set(zip(gens["sample_id"], gens["text"], strict=True))
    assert sorted(calls) == sorted(distinct) and len(calls) < len(gens)
    from plip_nn.corpus.io import load_corpus

    samples = {s.id: s for s in load_corpus(env["corpus"]).samples}
    for _, r in gens.iterrows():
        s = samples[r["sample_id"]]
        fresh = preservation.score(s.language, s.code, r["text"], function_name=s.function.name,
                                   arity=s.function.arity, function_source=s.function.source,
                                   execute="off")  # fmt: skip
        assert bool(r["preserved"]) == fresh.preserved and bool(r["valid"]) == fresh.valid
