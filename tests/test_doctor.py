"""``plip-nn doctor``: its local checks, ``--remote local`` and ``--remote ndif`` against fakes.

No network: NDIF is faked at nnsight 0.8.1's HTTP layer, nothing above it. ``httpx.get`` answers
``/status`` and ``/env`` (what ``nnsight.compare()`` and the doctor's server check read);
``websocket.create_connection`` and ``httpx.Client`` answer the job (session id, RECEIVED,
then COMPLETED carrying the result blob, or ERROR). The fake server *runs* the job: it
deserializes the request nnsight sent with ``RequestModel.deserialize`` against a real
embedded model (as NDIF does against its loaded model) and executes the block, so the
achieved value the doctor prints came from the model. ``nnsight.is_model_running`` is
replaced (it canonicalises names through the HF Hub).

A planted key must appear in no output, no log and no file under the test's HOME and TMPDIR.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nnsight
import nnsight.ndif
import pytest
import torch
import websocket
from nnsight import CONFIG
from nnsight.modeling.mixins.remotable import Remotable
from nnsight.schema.request import RequestModel
from nnsight.schema.response import ResponseModel, Status

from experiments import cli
from experiments.doctor import FAIL, OK, WARN, Check, engine, environment, exit_code, format_check
from plip_nn.embedded import EMBEDDED_MODEL_DIR

KEY = "sk-PLANTED-1234567890abcdef-doctor"
MODEL = "fake-org/tiny-qwen2"  # the name NDIF "hosts"; its config is the embedded model's


# -- pure pieces -----------------------------------------------------------------------------


def test_format_and_exit_code() -> None:
    ok = Check("torch", OK, "2.13.0", "never shown")
    warn = Check("rustc", WARN, "not found", "install Rust")
    fail = Check("ndif key", FAIL, "NDIF_API_KEY is not set", "export NDIF_API_KEY=...")
    assert format_check(ok) == "ok    torch            2.13.0"
    assert format_check(warn).endswith("not found -> fix: install Rust")
    assert format_check(fail).startswith("FAIL  ndif key ")
    assert exit_code([ok, warn]) == 0 and exit_code([ok, warn, fail]) == 2
    with pytest.raises(ValueError, match="status"):
        Check("x", "fine", "")


def test_constraints_parsed(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("# tested\ntorch==2.13.0\nTree_Sitter == 0.23.1  # note\nbad line\n")
    assert environment.read_constraints(path) == {"torch": "2.13.0", "tree-sitter": "0.23.1"}
    pins = environment.read_constraints()
    assert pins["nnsight"] == "0.8.1" and "torch" in pins


def test_version_mismatch_and_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = environment.version

    def version(name: str) -> str:
        if name == "nnsight":
            raise environment.PackageNotFoundError(name)
        return "0.0.1" if name == "transformers" else real(name)

    monkeypatch.setattr(environment, "version", version)
    checks = {c.name: c for c in environment.check_environment("cpu")}
    assert checks["nnsight"].status == FAIL and "not installed" in checks["nnsight"].detail
    assert checks["transformers"].status == WARN
    assert "transformers==5.24.0" in checks["transformers"].fix
    assert "device cpu" not in checks  # no model stack: the rest is skipped


def test_missing_device_and_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(environment.shutil, "which", lambda name: None)
    import analysis.sandbox as sandbox

    monkeypatch.setattr(sandbox, "unavailable_reason", lambda: "sandbox tools not found: bwrap; x")
    checks = {c.name: c for c in environment.check_environment("cuda:1")}
    assert checks["device chosen"].status == FAIL
    assert "no CUDA device visible" in checks["device chosen"].detail
    assert checks["rustc"].status == WARN and checks["bubblewrap"].status == WARN
    assert "executes" in checks["bubblewrap"].detail
    assert exit_code(checks.values()) == 2
    assert environment.check_environment("cpu")[-3].status == OK  # device chosen: cpu


def test_architecture_on_meta_device(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100,
    )  # fmt: skip
    cfg.save_pretrained(tmp_path / "llama")
    ok = engine.check_architecture(str(tmp_path / "llama"))
    assert [c.status for c in ok] == [OK, OK], ok
    assert "all 3 layers" in ok[1].detail and "llama is verified" in ok[1].detail
    missing = engine.check_architecture("no-such-org/no-such-model-xyz")
    assert missing[0].status == FAIL and "not in the local HF cache" in missing[0].detail
    assert "huggingface-cli download no-such-org/no-such-model-xyz config.json" in missing[0].fix


# -- the CLI on this machine -----------------------------------------------------------------


def _lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"(ok|warn|FAIL)\s+(\S+(?: \S+)?)\s{2,}|(ok|warn|FAIL)\s+(\S.{15})", line)
        if m:
            out[line[6:22].strip()] = line
    return out


def test_doctor_remote_local(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["doctor", "--remote", "local", "--device", "cpu"])
    out = capsys.readouterr().out
    lines = _lines(out)
    assert code == 0, out
    for name in ("torch", "nnsight", "self-check", "knockout", "set value", "local trace"):
        assert lines[name].startswith("ok"), (name, out)
    assert "-> 0.0000 (requested 0" in lines["knockout"]
    assert "-> 0.3000 (requested 0.3" in lines["set value"]
    assert "mask route (sdpa)" in lines["knockout"]
    assert "softmax route (eager)" in lines["set value"]
    m = re.search(r"([\d,]+) bytes returned, ([\d.]+) s wall", lines["local trace"])
    assert m and int(m.group(1).replace(",", "")) > 0
    assert out.splitlines()[-1].startswith("doctor: ")


# -- NDIF, faked -----------------------------------------------------------------------------


@dataclass
class FakeNDIF:
    """The server: ``/status``, ``/env`` and a job runner on a real model."""

    real: Any  # the embedded model's nnsight wrapper (what the server has loaded)
    running: bool = True
    env: dict[str, Any] = field(default_factory=dict)
    get_error: Exception | None = None
    job_error: str | None = None
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    result: bytes | None = None

    def status(self) -> dict[str, Any]:
        state = "RUNNING" if self.running else "NOT_STARTED"
        level = "HOT" if self.running else "COLD"
        return {"deployments": {MODEL: {"repo_id": MODEL, "application_state": state,
                                        "deployment_level": level}}}  # fmt: skip

    def run_job(self, blob: bytes, compress: bool) -> None:
        if self.job_error is not None:
            return
        tracer = RequestModel.deserialize(
            blob, self.real._remoteable_persistent_objects(), compress
        )
        tracer.execute(tracer.info.code)
        saves = {k: v for k, v in tracer.info.frame.f_locals.items() if isinstance(v, torch.Tensor)}
        buffer = io.BytesIO()
        torch.save(saves, buffer)
        data = buffer.getvalue()
        if compress:
            import zstandard as zstd

            data = zstd.ZstdCompressor().compress(data)
        self.result = data


class _Socket:
    def __init__(self, fake: FakeNDIF) -> None:
        self.fake, self.sent = fake, 0

    def recv(self) -> str | bytes:
        self.sent += 1
        if self.sent == 1:
            return json.dumps({"session_id": "s-1"})
        if self.fake.job_error is not None:
            return json.dumps({"id": "j-1", "status": "ERROR", "description": self.fake.job_error})
        return ResponseModel(id="j-1", status=Status.COMPLETED, data=self.fake.result).pickle()

    def settimeout(self, _: float) -> None:
        pass

    def close(self) -> None:
        pass


class _Client:
    def __init__(self, fake: FakeNDIF) -> None:
        self.fake = fake

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def post(self, url: str, *, data: dict, files: dict, headers: dict, **_: Any) -> httpx.Response:
        self.fake.requests.append(("POST", url, dict(headers)))
        compress = json.loads(data["data"]).get("compress", False)
        self.fake.run_job(files["blob"][1], compress)
        body = json.dumps({"id": "j-1", "status": "RECEIVED"})
        return httpx.Response(200, text=body, request=httpx.Request("POST", url))


@pytest.fixture
def fake_ndif(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNDIF:
    from nnsight import TransformersModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(EMBEDDED_MODEL_DIR, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)
    fake = FakeNDIF(real=TransformersModel(hf, tokenizer=tokenizer))
    fake.env = nnsight.ndif.get_local_env()  # same versions as here unless a test changes them

    def get(url: str, **kwargs: Any) -> httpx.Response:
        fake.requests.append(("GET", url, dict(kwargs.get("headers") or {})))
        if fake.get_error is not None:
            raise fake.get_error
        body = fake.status() if url.endswith("/status") else fake.env
        return httpx.Response(200, json=body, request=httpx.Request("GET", url))

    def create_connection(url: str, header: dict | None = None, **_: Any) -> _Socket:
        fake.requests.append(("WS", url, dict(header or {})))
        return _Socket(fake)

    monkeypatch.setattr(httpx, "get", get)
    monkeypatch.setattr(httpx, "Client", lambda *a, **k: _Client(fake))
    monkeypatch.setattr(websocket, "create_connection", create_connection)
    monkeypatch.setattr(
        nnsight, "is_model_running", lambda repo, **_: fake.running and repo == MODEL
    )
    monkeypatch.setattr(nnsight.ndif, "_REMOTE_ENV", None)
    monkeypatch.setattr(Remotable, "to_model_key", lambda self: f"x:{MODEL}")
    # NDIF addresses hub models by name; here the name's config is the embedded model's.
    for loader in ("load_config", "load_tokenizer"):
        real = getattr(engine, loader)
        monkeypatch.setattr(
            engine, loader, lambda n, real=real: real(str(EMBEDDED_MODEL_DIR) if n == MODEL else n)
        )
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    for var, value in {"HOME": home, "XDG_CONFIG_HOME": home / ".config", "TMPDIR": tmp}.items():
        monkeypatch.setenv(var, str(value))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("NDIF_API_KEY", KEY)
    monkeypatch.setattr(CONFIG.API, "APIKEY", CONFIG.API.APIKEY)  # restored afterwards
    return fake


@dataclass
class Doctor:
    code: int
    out: str
    lines: dict[str, str]


@pytest.fixture
def doctor(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Doctor]:
    import experiments.doctor as doc

    # The NDIF checks do not depend on the local ones: run those once (the CLI test above).
    monkeypatch.setattr(environment, "check_environment", lambda device: [])
    monkeypatch.setattr(engine, "embedded_self_check", lambda device: (None, []))
    del doc  # run_checks imports the patched modules

    def go(*extra: str) -> Doctor:
        with caplog.at_level(logging.DEBUG):
            code = cli.main(["doctor", "--remote", "ndif", "--model", MODEL, *extra])
        cap = capsys.readouterr()
        text = cap.out + cap.err + caplog.text
        leaks = [
            str(p) for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()
        ]
        assert KEY not in text and not leaks, ("the key leaked", leaks)
        return Doctor(code, cap.out, _lines(cap.out))

    return go


def test_ndif_all_ok(fake_ndif: FakeNDIF, doctor: Callable[..., Doctor]) -> None:
    run = doctor()
    assert run.code == 0, run.out
    assert f"({len(KEY)} characters; never printed)" in run.lines["ndif key"]
    for name in ("ndif server", "ndif versions", "ndif model", "ndif trace", "edit site"):
        assert run.lines[name].startswith("ok"), run.out
    assert "-> 0.0000 (requested 0)" in run.lines["ndif trace"]
    m = re.search(r"([\d,]+) bytes returned", run.lines["ndif trace"])
    assert m is not None and fake_ndif.result is not None
    # what came over the wire (before decompression)
    assert int(m.group(1).replace(",", "")) == len(fake_ndif.result)
    sent = [h for kind, _, h in fake_ndif.requests if kind in ("WS", "POST")]
    assert sent and all(h.get("ndif-api-key") == KEY for h in sent)  # the key travels, only there
    assert all("ndif-api-key" not in h for kind, _, h in fake_ndif.requests if kind == "GET")


def test_no_key(
    fake_ndif: FakeNDIF, doctor: Callable[..., Doctor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NDIF_API_KEY")
    run = doctor()
    assert run.code == 2
    assert run.lines["ndif key"].startswith(
        "FAIL  ndif key         NDIF_API_KEY is not set -> fix: export"
    )
    assert run.lines["ndif trace"].startswith("warn") and "needs the key" in run.lines["ndif trace"]
    assert run.lines["ndif server"].startswith("ok")  # /status needs no key


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (httpx.ConnectError("[Errno -2] Name or service not known"), "cannot reach"),
        (httpx.ReadTimeout("timed out"), "did not answer within 15 s"),
    ],
)
def test_server_unreachable_or_timing_out(
    fake_ndif: FakeNDIF, doctor: Callable[..., Doctor], error: Exception, words: str
) -> None:
    fake_ndif.get_error = error
    run = doctor()
    assert run.code == 2
    assert run.lines["ndif server"].startswith("FAIL") and words in run.lines["ndif server"]
    assert [k for k in run.lines if run.lines[k].startswith("FAIL")] == ["ndif server"]
    assert not any(kind in ("WS", "POST") for kind, _, _ in fake_ndif.requests)


def test_version_mismatch(fake_ndif: FakeNDIF, doctor: Callable[..., Doctor]) -> None:
    packages = dict(fake_ndif.env["packages"], torch="2.8.0", einops="0.0.1")
    fake_ndif.env = {**fake_ndif.env, "packages": packages}
    run = doctor()
    assert run.code == 2
    line = run.lines["ndif versions"]
    local = torch.__version__
    assert line.startswith(
        f"FAIL  ndif versions    critical mismatch: torch {local} here vs 2.8.0 on NDIF"
    )
    assert "pip install torch==2.8.0" in line


def test_model_not_running(fake_ndif: FakeNDIF, doctor: Callable[..., Doctor]) -> None:
    fake_ndif.running = False
    run = doctor()
    assert run.code == 0  # deployed (COLD) but not running: a warning, the job would queue
    assert (
        run.lines["ndif model"].startswith("warn") and "COLD/NOT_STARTED" in run.lines["ndif model"]
    )
    fake_ndif.status = lambda: {"deployments": {}}  # type: ignore[method-assign]
    run = doctor()
    assert run.code == 2
    assert run.lines["ndif model"].startswith(
        f"FAIL  ndif model       {MODEL} is not running on NDIF"
    )
    assert run.lines["ndif trace"].startswith("warn")


def test_remote_error_inside_trace(fake_ndif: FakeNDIF, doctor: Callable[..., Doctor]) -> None:
    fake_ndif.job_error = "ImportError: import of 'json' is not allowed in the NDIF sandbox"
    run = doctor()
    assert run.code == 2
    assert run.lines["ndif trace"].startswith(
        "FAIL  ndif trace       the trace failed: RemoteError: ImportError: import of 'json'"
    )


def test_leak_detector_catches_a_printed_key(
    fake_ndif: FakeNDIF, doctor: Callable[..., Doctor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a check printed the key, every NDIF test above would fail."""
    from experiments.doctor import ndif

    monkeypatch.setattr(ndif, "_key_check", lambda: Check("ndif key", OK, f"key {KEY}"))
    with pytest.raises(AssertionError, match="the key leaked"):
        doctor()


def test_trace_body_calls_only_the_torch_and_math_kernels() -> None:
    """What runs on NDIF is the body of the ``model.trace`` block: it may reach only
    :mod:`plip_nn.kernels` (torch and math, checked by test_remote_sandbox) and plain values."""
    import ast

    # Read the file itself: an in-process deserialize (the fake server) rewrites linecache.
    module = ast.parse(Path(engine.__file__).read_text(encoding="utf-8"))
    tree = next(
        n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "trace_check"
    )
    blocks = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.With)
        and any("trace" in ast.unparse(item.context_expr) for item in node.items)
    ]
    assert len(blocks) == 1
    names = {n.id for stmt in blocks[0].body for n in ast.walk(stmt) if isinstance(n, ast.Name)}
    assert names == {"kernels", "model", "site", "groups", "verify", "route", "stats", "_"}
    calls = {
        ast.unparse(n.func)
        for stmt in blocks[0].body
        for n in ast.walk(stmt)
        if isinstance(n, ast.Call)
    }
    assert calls == {"kernels.edit_site", "stats.cpu", "stats.cpu().save"}
    assert "from plip_nn import kernels" in ast.unparse(tree)


def test_cuda_devices_listed_with_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: torch's CUDA queries are faked to check the lines the doctor prints."""
    gib = 1024**3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H100 #{i}")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: ((70 + i) * gib, 80 * gib))
    checks = {c.name: c for c in environment._devices("auto")}
    assert checks["device cuda:1"].detail == "NVIDIA H100 #1, 71.0 GiB free of 80.0 GiB"
    assert checks["device chosen"].status == OK and checks["device chosen"].detail == "cuda"
    assert environment._devices("cuda:2")[-1].status == FAIL
    assert environment._devices("tpu")[-1].status == FAIL
