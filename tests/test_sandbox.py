"""Hostile generated tests are contained by the sandbox (analysis/sandbox.py via preservation).

Each case is a generated doctest or Rust test that tries one escape: write outside its
directory, leave a child running after the timeout, connect to a listener on the host's
127.0.0.1, read the parent's environment (a fake NDIF key) and the user's home, fork-bomb,
allocate far beyond the memory limit, print without end, loop forever. For each one the test
checks the *effect* on the host (file absent, no process with the case's marker, no accepted
connection, key absent from everything that came back) and that the scorer returned
``executes=False`` with a reason. Where cheap, the same case is also run with
``execute="unsafe"`` and shown to escape, so these checks can fail.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_marks import needs_rustc, needs_sandbox

from analysis import sandbox
from analysis.preservation import Preservation, score, score_python, score_rust

pytestmark = needs_sandbox

REPO = Path(__file__).resolve().parents[1]
PY_SRC = 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n'
PY_PROMPT = 'def add(a, b):\n    """Add two numbers.\n\n    >>> '
RS_SRC = "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"
RS_PROMPT = RS_SRC + "\n#[test]\nfn "
FAKE_KEY = "ndif-FAKE-" + uuid.uuid4().hex


def doctest(*lines: str, want: str = "True") -> str:
    """A continuation of ``PY_PROMPT``: a call of ``add`` (only a test that calls the function
    is run), the example lines, the expected output, the close."""
    return "\n    >>> ".join(("_ = add(1, 2)", *lines)) + f"\n    {want}\n    " + '"""'


def py(cont: str, mode: str = "sandbox", timeout: float = 3.0) -> Preservation:
    return score_python(
        PY_PROMPT,
        cont,
        function_name="add",
        arity=2,
        function_source=PY_SRC,
        execute=mode,  # type: ignore[arg-type]
        timeout=timeout,
    )


def rs(body: str, mode: str = "sandbox", timeout: float = 3.0) -> Preservation:
    cont = "hostile() {\n" + body + "\n    assert_eq!(add(1, 2), 3);\n}\n"
    return score_rust(
        RS_PROMPT,
        cont,
        function_name="add",
        arity=2,
        function_source=RS_SRC,
        execute=mode,  # type: ignore[arg-type]
        timeout=timeout,
    )


def processes_with(mark: str, grace_s: float = 5.0) -> list[int]:
    """Host pids whose command line contains ``mark``, after up to ``grace_s`` to die."""
    deadline = time.monotonic() + grace_s
    while True:
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if mark.encode() in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def assert_contained(got: Preservation) -> None:
    assert got.valid, got.reason  # it was run, not rejected by the parser
    assert got.executes is False, got.reason
    assert got.reason


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    yield srv
    srv.close()


def accepted(srv: socket.socket) -> bool:
    try:
        conn, _ = srv.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


# ----------------------------------------------------------------------------- write outside


def test_python_write_outside_contained(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    got = py(doctest(f"open({str(target)!r}, 'w').write('x') == 1"))
    assert_contained(got)
    assert not target.exists()
    assert "Read-only" in got.reason or "No such file" in got.reason


def test_python_write_outside_escapes_when_unsafe(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    got = py(doctest(f"open({str(target)!r}, 'w').write('x') == 1"), mode="unsafe")
    assert got.executes is True and target.read_text() == "x"


@needs_rustc
def test_rust_write_outside_contained(tmp_path: Path) -> None:
    target = tmp_path / "escaped_rs.txt"
    got = rs(f'    std::fs::write({json.dumps(str(target))}, b"x").unwrap();')
    assert_contained(got)
    assert not target.exists()


# ----------------------------------------------------------------------------- orphans


def test_python_child_killed_at_timeout() -> None:
    mark = "plip-orphan-" + uuid.uuid4().hex
    child = f"import time; time.sleep(600)  # {mark}"
    got = py(
        doctest(
            "import subprocess, sys, os, time",
            f"_ = subprocess.Popen([sys.executable, '-c', {child!r}], start_new_session=True)",
            f"_ = os.fork() == 0 and (os.setsid(), os.execv(sys.executable, [sys.executable, '-c', {child!r}]))",
            "time.sleep(60)",
            want="",
        ),
        timeout=2.0,
    )
    assert_contained(got)
    assert "timed out" in got.reason
    assert processes_with(mark) == []


@needs_rustc
def test_rust_child_killed_at_timeout() -> None:
    mark = "plip-orphan-rs-" + uuid.uuid4().hex
    got = rs(
        f'    std::process::Command::new("/bin/sh").args(["-c", "sleep 600; echo {mark}"])'
        ".spawn().unwrap();\n    loop {}",
        timeout=2.0,
    )
    assert_contained(got)
    assert "timed out" in got.reason
    assert processes_with(mark) == []


# ----------------------------------------------------------------------------- network


def test_python_socket_to_host_loopback_refused(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    got = py(doctest(f"import socket; socket.create_connection(('127.0.0.1', {port}), 2) and True"))
    assert_contained(got)
    assert not accepted(listener)


def test_python_socket_connects_when_unsafe(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    got = py(
        doctest(f"import socket; socket.create_connection(('127.0.0.1', {port}), 2) and True"),
        mode="unsafe",
    )
    assert got.executes is True and accepted(listener)


@needs_rustc
def test_rust_socket_to_host_loopback_refused(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    got = rs(f'    std::net::TcpStream::connect(("127.0.0.1", {port})).unwrap();')
    assert_contained(got)
    assert not accepted(listener)


# ----------------------------------------------------------------------------- environ and $HOME

_SCORE_IN_CHILD = """
import json, sys
from analysis.preservation import score
lang, prompt, cont, src, mode = json.loads(sys.stdin.read())
res = score(lang, prompt, cont, function_name="add", arity=2, function_source=src, execute=mode,
            timeout=5.0)
print(json.dumps({"executes": res.executes, "reason": res.reason}))
"""


def score_with_key_in_env(lang: str, cont: str, mode: str, home: Path) -> dict[str, object]:
    """Score in a fresh process whose *initial* environment holds the key (as a user's would:
    /proc/<pid>/environ shows the environment a process was started with)."""
    prompt, src = (PY_PROMPT, PY_SRC) if lang == "python" else (RS_PROMPT, RS_SRC)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "NDIF_API_KEY": FAKE_KEY,
        "PYTHONPATH": str(REPO),
        # rustup finds its toolchains through these (HOME is replaced by the fake one)
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", os.path.expanduser("~/.rustup")),
        "CARGO_HOME": os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SCORE_IN_CHILD],
        input=json.dumps([lang, prompt, cont, src, mode]),
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _home_with_secret(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine ndif password {FAKE_KEY}\n")
    return home


def _py_steal(home: Path) -> str:
    # The generated code never holds the key: it looks for the variable's name and the netrc
    # entry, so whatever comes back (the doctest's "Got:") cannot carry the key either.
    return doctest(
        "import os, glob",
        "def rd(p):\n    ...     try: return open(p, errors='replace').read()\n"
        "    ...     except OSError: return ''",
        "env = rd(f'/proc/{os.getppid()}/environ') + str(os.environ)",
        "env += ''.join(rd(p) for p in glob.glob('/proc/*/environ'))",
        f"home = rd({str(home / '.netrc')!r}) + rd(os.path.expanduser('~/.netrc'))",
        "('NDIF_API_KEY=' in env, 'machine ndif' in home)",
        want="(True, True)",
    )


@pytest.mark.parametrize("mode", ["sandbox", "unsafe"])
def test_python_parent_environ_and_home_not_readable(tmp_path: Path, mode: str) -> None:
    home = _home_with_secret(tmp_path)
    got = score_with_key_in_env("python", _py_steal(home), mode, home)
    if mode == "unsafe":  # the same doctest does find both without the sandbox
        assert got["executes"] is True, got["reason"]
        return
    assert got["executes"] is False
    assert "(False, False)" in str(got["reason"])  # it ran to the end and found neither
    assert FAKE_KEY not in str(got["reason"])


@needs_rustc
@pytest.mark.parametrize("mode", ["sandbox", "unsafe"])
def test_rust_parent_environ_and_home_not_readable(tmp_path: Path, mode: str) -> None:
    home = _home_with_secret(tmp_path)
    body = (
        "    let rd = |p: String| std::fs::read_to_string(p).unwrap_or_default();\n"
        '    let mut env = rd(format!("/proc/{}/environ", std::os::unix::process::parent_id()));\n'
        "    for (k, v) in std::env::vars() { env += &k; env += &v; }\n"
        f"    let home = rd({json.dumps(str(home / '.netrc'))}.to_string());\n"
        '    let found = (env.contains("NDIF_API_KEY"), home.contains("machine ndif"));\n'
        '    println!("found {:?}", found);\n'
        "    assert_eq!(found, (true, true));"
    )
    cont = "hostile() {\n" + body + "\n    assert_eq!(add(1, 2), 3);\n}\n"
    got = score_with_key_in_env("rust", cont, mode, home)
    if mode == "unsafe":
        assert got["executes"] is True, got["reason"]
        return
    assert got["executes"] is False
    assert "(false, false)" in str(got["reason"])
    assert FAKE_KEY not in str(got["reason"])


# ----------------------------------------------------------------------------- fork bomb


def test_python_fork_bomb_contained() -> None:
    mark = "plip-forkbomb-" + uuid.uuid4().hex
    bomb = f"import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n# {mark}"
    got = py(doctest("import subprocess, sys", f"subprocess.run([sys.executable, '-c', {bomb!r}])"))
    assert_contained(got)
    assert "timed out" in got.reason
    assert processes_with(mark) == []


@needs_rustc
def test_rust_fork_bomb_contained() -> None:
    mark = "plip-forkbomb-rs-" + uuid.uuid4().hex
    got = rs(
        "    loop {\n"
        f'        let _ = std::process::Command::new("/bin/sh").args(["-c", "sleep 600; echo {mark}"]).spawn();\n'
        "    }"
    )
    assert_contained(got)
    assert processes_with(mark) == []


# ----------------------------------------------------------------------------- memory


def test_python_huge_allocation_fails() -> None:
    got = py(doctest("len(bytearray(64 * 2**30)) > 0"))
    assert_contained(got)
    assert "MemoryError" in got.reason


@needs_rustc
def test_rust_huge_allocation_fails() -> None:
    got = rs("    let v = vec![1u8; 1 << 36];\n    assert_eq!(v[12345], 1);")
    assert_contained(got)
    assert "SIGABRT" in got.reason or "memory allocation" in got.reason


# ----------------------------------------------------------------------------- output flood


def test_python_endless_output_capped() -> None:
    got = py(doctest("import os", "while True: _ = os.write(1, b'x' * 65536)"), timeout=20.0)
    assert_contained(got)
    assert "printed more than" in got.reason
    assert len(got.reason) < 5000  # the flood is not carried into the record


@needs_rustc
def test_rust_endless_output_capped() -> None:
    got = rs(
        "    use std::io::Write;\n    let mut out = std::io::stdout();\n"
        "    loop { out.write_all(&[b'x'; 65536]).unwrap(); }",
        timeout=20.0,
    )
    assert_contained(got)
    assert "printed more than" in got.reason


# ----------------------------------------------------------------------------- infinite loops


@needs_rustc
def test_rust_infinite_loop_killed() -> None:
    got = rs(
        "    let mut i: u64 = 0;\n    loop { i = i.wrapping_add(1); std::hint::black_box(i); }"
    )
    assert_contained(got)
    assert "timed out" in got.reason


def test_python_infinite_loop_killed() -> None:
    got = py(doctest("while True: pass", want=""), timeout=1.0)
    assert_contained(got)
    assert "timed out" in got.reason


# ----------------------------------------------------------------------------- the run goes on


def test_run_goes_on_after_hostile_cases(tmp_path: Path) -> None:
    hostile = [
        doctest("import os", "while True: _ = os.write(1, b'y' * 65536)"),
        doctest("len(bytearray(64 * 2**30)) > 0"),
        doctest(f"open({str(tmp_path / 'x')!r}, 'w').write('x') == 1"),
    ]
    for cont in hostile:
        assert py(cont).executes is False
    good = score(
        "python",
        PY_PROMPT,
        'add(2, 3)\n    5\n    """',
        function_name="add",
        arity=2,
        function_source=PY_SRC,
    )
    assert good.executes is True, good.reason


# ----------------------------------------------------------------------------- the module itself


def test_limits_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="wall_s"):
        sandbox.Limits(wall_s=0)
    with pytest.raises(ValueError, match="output_bytes"):
        sandbox.Limits(output_bytes=10)


def test_unavailable_sandbox_raises_with_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sandbox, "unavailable_reason", lambda: "bwrap not found; " + sandbox.INSTALL_HINT
    )
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        py(doctest("add(1, 2) == 3"))


def test_sandbox_sees_no_host_files(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("hello")
    res = sandbox.run(
        [
            "/bin/sh",
            "-c",
            "cat /work/in.txt; ls / | tr '\\n' ' '; echo; id -u; ls /proc | grep -c '^[0-9]'",
        ],
        workdir=tmp_path,
        limits=sandbox.Limits(wall_s=10),
    )
    assert res.ok, res.output
    out = res.output.split("\n")
    assert out[0].startswith("hello")
    assert set(out[0][5:].split()) <= {
        "bin",
        "dev",
        "lib",
        "lib32",
        "lib64",
        "proc",
        "sbin",
        "tmp",
        "usr",
        "work",
    }
    assert out[1] == str(sandbox.SANDBOX_UID)
    assert int(out[2]) <= 4  # bwrap's init, sh, ls/grep: no host process is visible
