"""The NDIF key is sent to NDIF and written nowhere: a ``--remote ndif`` run against a fake NDIF.

The fake replaces nnsight 0.8.1's network layer, nothing above it: ``websocket.create_connection``
(the ``/subscribe`` socket) and ``httpx.Client`` (``POST /request``) record every URL and header
and answer like the server (session id, RECEIVED, COMPLETED). The "server" computes the job with
nnsight's own ``LocalSimulationBackend`` on the trace that ``RemoteBackend._serialize`` was
given (a spy that only remembers it), so the run finishes and writes its whole directory.

Then every byte on disk that the run could have touched is searched for the key: the run
directory, ``$HOME`` (a fresh one), nnsight's user config file, ``$TMPDIR`` (a fresh one), and
the captured stdout/stderr/logs. The leak tests change the code to write the key (nnsight's
``CONFIG.save()``, a log line, the manifest) and check the detector reports it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from nnsight import CONFIG
from nnsight.intervention.backends.local import LocalSimulationBackend
from nnsight.intervention.backends.remote import RemoteBackend
from nnsight.modeling.mixins.remotable import Remotable
from study_fixtures import write_corpus, write_model_dir

from experiments import cli

KEY = "ndif-test-key-4b1d9e07c3a2"
HEADER = "ndif-api-key"


@dataclass
class FakeNDIF:
    """Records what nnsight sends; runs each job locally with nnsight's simulation backend."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    pending: list[tuple[Any, Any]] = field(default_factory=list)  # (model, tracer)
    jobs: int = 0

    def run_pending(self) -> None:
        model, tracer = self.pending.pop()
        LocalSimulationBackend(model)(tracer)  # saves land in the caller's frame
        self.jobs += 1


class _FakeSocket:
    def __init__(self, fake: FakeNDIF) -> None:
        self.fake = fake
        self.sent_session = False

    def recv(self) -> str:
        if not self.sent_session:
            self.sent_session = True
            return json.dumps({"session_id": "fake-session"})
        return json.dumps({"id": "job-1", "status": "COMPLETED", "data": None})

    def settimeout(self, _: float) -> None:
        pass

    def close(self) -> None:
        pass


class _FakeClient:
    def __init__(self, fake: FakeNDIF) -> None:
        self.fake = fake

    def __enter__(self) -> _FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def post(self, url: str, *, headers: dict[str, str], **_: Any) -> httpx.Response:
        self.fake.requests.append(("POST", url, dict(headers)))
        self.fake.run_pending()
        body = json.dumps({"id": "job-1", "status": "RECEIVED"})
        return httpx.Response(200, text=body, request=httpx.Request("POST", url))


@pytest.fixture
def fake_ndif(monkeypatch: pytest.MonkeyPatch) -> FakeNDIF:
    fake = FakeNDIF()

    def create_connection(url: str, header: dict[str, str] | None = None, **_: Any) -> Any:
        fake.requests.append(("WS", url, dict(header or {})))
        return _FakeSocket(fake)

    monkeypatch.setattr(websocket, "create_connection", create_connection)
    monkeypatch.setattr(httpx, "Client", lambda *a, **k: _FakeClient(fake))

    real_backend = Remotable._remote_backend

    def remote_backend(self: Any, *args: Any, **kwargs: Any) -> Any:
        backend = real_backend(self, *args, **kwargs)
        backend._fake_model = self
        return backend

    real_serialize = RemoteBackend._serialize

    def serialize(self: Any, tracer: Any) -> bytes:
        fake.pending.append((self._fake_model, tracer))
        return real_serialize(self, tracer)

    monkeypatch.setattr(Remotable, "_remote_backend", remote_backend)
    # NDIF addresses hub models by name; the test model is a local directory.
    monkeypatch.setattr(Remotable, "to_model_key", lambda self: "fake-org/tiny-test-model")
    monkeypatch.setattr(RemoteBackend, "_serialize", serialize)
    return fake


@dataclass
class NdifRun:
    code: int
    run_dir: Path
    roots: list[Path]
    texts: dict[str, str]


def files_containing(key: str, roots: list[Path], texts: dict[str, str]) -> list[str]:
    """Every file under ``roots`` (and every named text) that holds ``key``."""
    found = [name for name, text in texts.items() if key in text]
    for root in roots:
        paths = [root] if root.is_file() else root.rglob("*") if root.exists() else []
        for p in paths:
            if p.is_file() and not p.is_symlink() and key.encode() in p.read_bytes():
                found.append(str(p))
    return found


@pytest.fixture
def ndif_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    fake_ndif: FakeNDIF,
) -> Iterator[Callable[[], NdifRun]]:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    nnsight_config = home / ".config" / "nnsight" / "config.yaml"
    for var, value in {
        "HOME": home,
        "XDG_CONFIG_HOME": home / ".config",
        "TMPDIR": tmp,
        "NDIF_API_KEY": KEY,
    }.items():
        monkeypatch.setenv(var, str(value))
    monkeypatch.delenv("NNSIGHT_CONFIG", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(CONFIG.API, "APIKEY", CONFIG.API.APIKEY)  # restored afterwards
    model = write_model_dir(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.json")
    out = tmp_path / "run"

    def go() -> NdifRun:
        argv = ["knockout", "--model", str(model), "--corpus", str(corpus), "--out", str(out),
                "--no-progress", "--remote", "ndif", "--layer", "1", "--limit", "1"]  # fmt: skip
        with caplog.at_level(logging.DEBUG):
            code = cli.main(argv)
        cap = capsys.readouterr()
        texts = {"stdout": cap.out, "stderr": cap.err, "logs": caplog.text}
        return NdifRun(code, out, [out, home, nnsight_config, tmp], texts)

    yield go


def test_key_sent_in_header_and_written_nowhere(
    ndif_run: Callable[[], NdifRun], fake_ndif: FakeNDIF
) -> None:
    run = ndif_run()
    assert run.code == 0, run.texts["stderr"]
    assert fake_ndif.jobs >= 1 and (run.run_dir / "records.parquet").exists()
    kinds = {kind for kind, _, _ in fake_ndif.requests}
    assert kinds == {"WS", "POST"}
    for kind, url, headers in fake_ndif.requests:
        assert headers.get(HEADER) == KEY, (kind, url)
        assert KEY not in url
    assert any(p.is_file() for p in run.run_dir.rglob("*"))
    assert files_containing(KEY, run.roots, run.texts) == []
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["remote"] == "ndif"


def test_detector_catches_nnsight_config_save(
    ndif_run: Callable[[], NdifRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If configure_remote persisted the key (nnsight's set_default_api_key), the test fails."""
    import plip_nn.trace as trace

    real = trace.configure_remote

    def leaky(remote: str) -> Any:
        arg = real(remote)
        if remote == "ndif":
            CONFIG.set_default_api_key(CONFIG.API.APIKEY)  # writes ~/.config/nnsight/config.yaml
        return arg

    monkeypatch.setattr(trace, "configure_remote", leaky)
    run = ndif_run()
    assert run.code == 0, run.texts["stderr"]
    leaks = files_containing(KEY, run.roots, run.texts)
    assert any(p.endswith("nnsight/config.yaml") for p in leaks), leaks


def test_detector_catches_key_in_logs_and_manifest(
    ndif_run: Callable[[], NdifRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    import plip_nn.runs as runs
    import plip_nn.trace as trace

    real = trace.configure_remote

    def chatty(remote: str) -> Any:
        logging.getLogger("plip_nn.trace").warning("using key %s", CONFIG.API.APIKEY)
        return real(remote)

    monkeypatch.setattr(trace, "configure_remote", chatty)
    monkeypatch.setattr(
        runs,
        "_scrub",
        lambda obj: {**obj, "key": KEY} if isinstance(obj, dict) and "status" in obj else obj,
    )
    run = ndif_run()
    leaks = files_containing(KEY, run.roots, run.texts)
    assert "logs" in leaks
    assert str(run.run_dir / "manifest.json") in leaks
