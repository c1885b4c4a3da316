"""The plip-nn CLI: bad input -> one line + exit 2 and nothing written; faults; kill + resume;
the NDIF key never reaches disk or logs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from study_fixtures import corpus_dict, write_corpus, write_model_dir

from experiments import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {
        "model": str(write_model_dir(root / "model")),
        "corpus": str(write_corpus(root / "corpus.json")),
    }


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _base(env, out, cmd="knockout"):
    return [cmd, "--model", env["model"], "--corpus", env["corpus"], "--out", out, "--no-progress"]


def _masked_corpus(tmp_path):
    data = corpus_dict()
    s = data["python_doctest"][0]
    s["marker_char_pos"] = 0  # the marker before every target: causally masked
    s["target_char_positions"] = [4, 8]
    return write_corpus(tmp_path / "masked.json", data)


def _empty_corpus(tmp_path):
    data = {k: ([] if isinstance(v, list) else v) for k, v in corpus_dict().items()}
    return write_corpus(tmp_path / "empty.json", data)


def _unversioned_corpus(tmp_path):
    data = corpus_dict()
    del data["_format_version"]
    return write_corpus(tmp_path / "unversioned.json", data)


def _test_before_function_corpus(tmp_path):
    # PLIP-rs's generation prompts put the test in doc comments above the function.
    data = corpus_dict()
    code = "/// #[test]\n/// fn t() { add(1, 2); }\nfn add(a: i32, b: i32) -> i32 {"
    data["rust_generation"] = [{
        "id": "doc_first", "code": code, "marker_char_pos": 4, "marker_pattern": "#[test]",
        "target_char_positions": [code.index("fn add"), code.index("add(a")],
    }]  # fmt: skip
    return write_corpus(tmp_path / "doc_first.json", data)


BAD_INPUTS = {
    "corpus without a version": lambda env, tmp: ["--corpus", str(_unversioned_corpus(tmp))],
    "test before the function": lambda env, tmp: [
        "--corpus",
        str(_test_before_function_corpus(tmp)),
        "--kinds",
        "generation",
    ],
    "unknown model path": lambda env, tmp: ["--model", str(tmp / "no-such-model")],
    "layer out of range": lambda env, tmp: ["--layer", "99"],
    "negative layer": lambda env, tmp: ["--layer", "-1"],
    "masked corpus": lambda env, tmp: ["--corpus", str(_masked_corpus(tmp))],
    "empty corpus": lambda env, tmp: ["--corpus", str(_empty_corpus(tmp))],
    "missing corpus": lambda env, tmp: ["--corpus", str(tmp / "nope.json")],
    "malformed corpus": lambda env, tmp: [
        "--corpus",
        str((tmp / "bad.json").write_text("{not json") and tmp / "bad.json"),
    ],
    "batch size 0": lambda env, tmp: ["--batch-size", "0"],
    "bad remote": lambda env, tmp: ["--remote", "cloud"],
    "bad dtype": lambda env, tmp: ["--dtype", "int8"],
    "negative limit": lambda env, tmp: ["--limit", "-3"],
    "bad language": lambda env, tmp: ["--languages", "go"],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_and_writes_nothing(env, tmp_path, capsys, monkeypatch, case):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    out = tmp_path / "run"
    argv = _base(env, out) + BAD_INPUTS[case](env, tmp_path)
    code, _, err = _run(capsys, *argv)
    assert code == 2, (case, err)
    lines = [line for line in err.strip().splitlines() if not line.startswith("plip-nn: WARNING")]
    assert len(lines) == 1 and "error" in lines[0], err
    assert not out.exists(), f"{case}: {out} was created"


def test_bad_corpus_messages_name_the_problem_and_the_fix(env, tmp_path, capsys):
    code, _, err = _run(capsys, *_base(env, tmp_path / "a", "scan"), "--corpus",
                        _unversioned_corpus(tmp_path))  # fmt: skip
    assert code == 2 and '"_format_version": "2.0"' in err and "prompts" not in err.split(";")[0]
    code, _, err = _run(capsys, *_base(env, tmp_path / "b", "scan"), "--corpus",
                        _test_before_function_corpus(tmp_path), "--kinds", "generation")  # fmt: skip
    assert code == 2 and "'doc_first'" in err and "comes before the function" in err


def test_analyze_loads_no_model_stack():
    code = (
        "import sys\n"
        "from experiments.cli import main\n"
        "try:\n    main(['analyze', '--help'])\nexcept SystemExit:\n    pass\n"
        "main(['analyze', '/no/such/run'])\n"
        "bad = [m for m in ('torch', 'transformers', 'nnsight') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_every_flag_builds_without_the_model_stack_or_pandas():
    """The command table imports every experiment module; none loads torch or pandas at import."""
    code = (
        "import sys\n"
        "from experiments.cli import build_parser\n"
        "build_parser()\n"
        "bad = [m for m in ('torch', 'transformers', 'nnsight', 'pandas') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_ndif_without_key(env, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    out = tmp_path / "run"
    code, _, err = _run(capsys, *_base(env, out), "--remote", "ndif")
    assert code == 2 and "NDIF_API_KEY" in err and not out.exists()


def test_unknown_condition_and_layer_all_misuse(env, tmp_path, capsys):
    out = tmp_path / "g"
    code, _, err = _run(capsys, *_base(env, out, "generate"), "--conditions", "baseline", "nope")
    assert code == 2 and "'nope'" in err and not out.exists()
    code, _, err = _run(capsys, *_base(env, out, "steer"), "--layer", "all")
    assert code == 2 and "--layer all" in err and not out.exists()
    code, _, err = _run(capsys, *_base(env, out), "--layer", "two")
    assert code == 2 and "invalid layer 'two'" in err


def test_existing_out_without_resume_and_changed_config(env, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*_base(env, out), "--layer", "1", "--limit", "1", "--languages", "python"]
    assert _run(capsys, *argv)[0] == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "--resume" in err
    code, _, err = _run(
        capsys, *argv[:-4], "--layer", "0", "--resume", "--limit", "1", "--languages", "python"
    )
    assert code == 2 and "layer" in err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after  # nothing touched


def test_corrupt_part_on_resume(env, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*_base(env, out), "--layer", "1", "--limit", "1"]
    assert _run(capsys, *argv)[0] == 0
    part = sorted((out / "parts" / "records").glob("*.parquet"))[0]
    part.write_bytes(b"PAR1 garbage")
    code, _, err = _run(capsys, *argv, "--resume")
    assert code == 2 and part.name in err and "delete" in err


def test_read_only_out_dir_is_environment_fault(env, tmp_path, capsys, monkeypatch):
    # Simulated with the error a read-only filesystem raises (the tests may run as root,
    # which ignores directory permissions).
    ro = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if str(self).startswith(str(ro)):
            raise PermissionError(13, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = _run(capsys, *_base(env, ro / "run"))
    assert code == 1 and "environment error" in err and "Read-only" in err
    assert not ro.exists()


def test_failing_writer_leaves_no_partial_file(env, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real = pd.DataFrame.to_parquet

    def disk_full(self, path, *a, **k):
        if "parts" in str(path):
            Path(path).write_bytes(b"half a file")  # what a full disk leaves behind
            raise OSError(28, "No space left on device")
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    code, _, err = _run(capsys, *_base(env, out), "--layer", "1", "--limit", "1")
    assert code == 1 and "No space left" in err
    assert not [p for p in (out / "parts").rglob("*") if p.is_file()]
    assert not (out / "records.parquet").exists()


def test_ctrl_c_keeps_finished_parts(env, tmp_path, capsys, monkeypatch):
    import experiments.records as records

    out = tmp_path / "run"
    calls = {"n": 0}
    real = records.record_row

    def interrupt_later(**kw):
        calls["n"] += 1
        if calls["n"] > 8:  # after the first chunk (8 units) was written
            raise KeyboardInterrupt
        return real(**kw)

    monkeypatch.setattr(records, "record_row", interrupt_later)
    code, _, err = _run(capsys, *_base(env, out), "--layer", "1", "--batch-size", "1")
    assert code == 130 and "--resume" in err
    parts = list((out / "parts" / "records").glob("*.parquet"))
    assert len(parts) == 1 and len(pd.read_parquet(parts[0])) == 8
    assert not list(out.rglob("*.tmp-*"))


def _cli(*argv, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *map(str, argv)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def test_sigkill_then_resume_equals_uninterrupted(env, tmp_path):
    args = [
        "knockout",
        "--model",
        env["model"],
        "--corpus",
        env["corpus"],
        "--layer",
        "0",
        "--batch-size",
        "1",
        "--no-progress",
    ]
    ref = _cli(*args, "--out", tmp_path / "ref")
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    out = tmp_path / "killed"
    proc = _cli(*args, "--out", out)
    parts = out / "parts" / "records"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.exists() and len(list(parts.glob("*.parquet"))) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_total = len(list((tmp_path / "ref" / "parts" / "records").glob("*.parquet")))
    assert 2 <= len(list(parts.glob("*.parquet"))) < n_total
    assert not (out / "records.parquet").exists()
    res = _cli(*args, "--out", out, "--resume")
    assert res.wait(timeout=300) == 0, res.stderr.read()
    a = pd.read_parquet(tmp_path / "ref" / "records.parquet")
    b = pd.read_parquet(out / "records.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert not b.duplicated(["sample_id", "condition", "layer"]).any()


def test_console_script_and_module_run_the_same_cli():
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "plip-nn"]
    assert script.value == "experiments.cli:main"
    res = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "knockout", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.startswith("usage: plip-nn knockout")
    assert "--layer" in res.stdout and "--resume" in res.stdout and "--window" in res.stdout


def test_models_lists_embedded_and_architectures(capsys):
    from archs import ARCHS

    code, out, _ = _run(capsys, "models")
    assert code == 0 and "plip-nn/embedded-tiny-qwen2" in out
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    for arch in ARCHS:  # the names the engine tests verify, as users know them
        assert arch in names, arch
    assert "gemma3" in names and "gemma3_text" not in names
    assert "  gemma3  (HF model_type: gemma3_text)\n" in out
