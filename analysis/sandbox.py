"""Run untrusted (model-generated) code in a bubblewrap sandbox. Torch-free, stdlib only.

What a sandboxed command gets (each enforced, each exercised by ``tests/test_sandbox.py``):

* **Namespaces**: new user, pid, network, ipc, uts, mount (and cgroup where possible) namespaces
  (``bwrap --unshare-user --unshare-pid --unshare-net --unshare-ipc --unshare-uts``). The network
  namespace has only its own loopback, so nothing on the host (not even 127.0.0.1) is reachable.
  The pid namespace hides every host process; ``/proc`` shows the sandbox's processes only.
* **Filesystem**: a fresh root with read-only binds of ``/usr`` (plus the merged-usr links
  ``/bin``, ``/lib``, ``/lib64``), the read-only paths the caller names (the Python prefix, the
  Rust sysroot), a minimal ``/dev``, the sandbox's own ``/proc``, a private size-capped tmpfs
  on ``/tmp`` and the caller's work directory on ``/work`` (read-only unless asked). No
  ``/etc``, no home directory, no host ``/tmp``.
* **Environment**: ``--clearenv`` then ``PATH``, ``HOME=/tmp``, ``TMPDIR=/tmp``, ``LANG``. The
  launcher itself runs with a minimal environment too, so no process in the sandbox (not even
  bwrap's own pid 1, whose ``/proc/1/environ`` is readable from inside) holds a secret.
* **Identity**: uid/gid 65534 inside. When the caller is root, the sandbox runs as host uid
  65534 as well (``setpriv`` after ``unshare --mount`` stages the read-only paths, which may
  live under a private ``/root``): a root-owned sandbox would be exempt from the process limit
  (the kernel never applies ``RLIMIT_NPROC`` to host uid 0).
* **Lifetime**: ``--die-with-parent``, ``--new-session``; the launcher runs in its own process
  group, which is killed with SIGKILL at the wall-clock timeout or when output exceeds its
  cap. Killing bwrap ends its pid namespace, which kills every process inside, including
  double-forked daemons.
* **Limits** (``prlimit`` inside the sandbox, after the user namespace exists, so the process
  count is the sandbox's own): CPU seconds, address space, file size, process count, no core
  files. Output (stdout + stderr) beyond ``Limits.output_bytes`` kills the sandbox.

The availability probe (:func:`unavailable_reason`) runs ``true`` through the whole launcher
once per process; :func:`run` raises :class:`SandboxUnavailable` with an install hint otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "INSTALL_HINT",
    "Limits",
    "SandboxResult",
    "SandboxUnavailable",
    "available",
    "run",
    "unavailable_reason",
]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap) and make sure user namespaces are allowed, or pass --execute off"
)
SANDBOX_UID = 65534  # "nobody": never root, so RLIMIT_NPROC applies
_LAUNCHER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_INNER_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
_MIB = 1024 * 1024


class SandboxUnavailable(RuntimeError):
    """No working sandbox on this machine; the message names the cause and the fix."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits of one sandboxed command.

    Attributes:
        wall_s: wall-clock seconds before the whole process tree is killed.
        cpu_s: CPU seconds (RLIMIT_CPU; SIGXCPU then SIGKILL).
        address_space: bytes of virtual memory per process (RLIMIT_AS).
        file_size: largest file a process may write, bytes (RLIMIT_FSIZE).
        processes: processes + threads of the sandbox user (RLIMIT_NPROC).
        output_bytes: stdout + stderr kept; more kills the sandbox.
        tmpfs_bytes: size of the private /tmp.
    """

    wall_s: float = 10.0
    cpu_s: int = 10
    address_space: int = 1024 * _MIB
    file_size: int = 16 * _MIB
    processes: int = 32
    output_bytes: int = 1 * _MIB
    tmpfs_bytes: int = 64 * _MIB

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "address_space", "file_size", "processes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not value > 0:
                raise ValueError(f"Limits.{name} must be positive; got {value!r}")
        for name in ("output_bytes", "tmpfs_bytes"):
            if getattr(self, name) < 1024:
                raise ValueError(f"Limits.{name} must be >= 1024 bytes; got {getattr(self, name)}")


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed command.

    Attributes:
        returncode: exit status (negative: killed by that signal); None when the sandbox was
            killed for the timeout or the output cap.
        output: stdout + stderr (decoded, at most ``Limits.output_bytes``).
        timed_out: killed at ``Limits.wall_s``.
        output_exceeded: killed because it printed more than ``Limits.output_bytes``.
    """

    returncode: int | None
    output: str
    timed_out: bool = False
    output_exceeded: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self, limits: Limits) -> str:
        """Why it did not succeed, for people ('' when it did)."""
        if self.timed_out:
            return f"timed out after {limits.wall_s:g} s (sandbox killed)"
        if self.output_exceeded:
            return f"printed more than {limits.output_bytes} bytes (sandbox killed)"
        if self.returncode is not None and self.returncode < 0:
            sig = signal.Signals(-self.returncode).name if -self.returncode < 65 else "?"
            return f"killed by {sig} (a resource limit)"
        return "" if self.ok else f"exit {self.returncode}"


def _root_dirs() -> list[str]:
    """bwrap arguments that recreate /bin, /lib, /lib64, /sbin (links or read-only binds)."""
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib64", "/lib32"):
        p = Path(name)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), name]
        elif p.is_dir():
            args += ["--ro-bind", name, name]
    return args


def _prlimit(limits: Limits) -> list[str]:
    return [
        "/usr/bin/prlimit",
        f"--cpu={limits.cpu_s}",
        f"--as={limits.address_space}",
        f"--fsize={limits.file_size}",
        f"--nproc={limits.processes}",
        "--core=0",
        "--",
    ]


def _launcher(
    argv: Sequence[str],
    *,
    workdir: Path,
    writable: bool,
    ro_paths: Sequence[str],
    chdir: str,
    limits: Limits,
    stage: Path | None,
) -> list[str]:
    """The full command line: [unshare/mount/setpriv when root] bwrap ... prlimit ... argv."""
    sources = [str(workdir), *ro_paths]
    # root: bwrap (as uid 65534) binds from world-traversable stage dirs
    staged = sources if stage is None else [str(stage / str(i)) for i in range(len(sources))]
    bwrap = [
        "bwrap",
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        *_root_dirs(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.tmpfs_bytes),
        "--tmpfs",
        "/tmp",
    ]
    for src, dest in zip(staged[1:], ro_paths, strict=True):
        bwrap += ["--ro-bind", src, dest]
    bwrap += ["--bind" if writable else "--ro-bind", staged[0], "/work", "--chdir", chdir]
    bwrap += ["--clearenv"]
    for k, v in _INNER_ENV.items():
        bwrap += ["--setenv", k, v]
    inner = [*bwrap, "--", *_prlimit(limits), *argv]
    if stage is None:
        return inner
    mounts = "".join(
        f"mount --bind -- {shlex.quote(s)} {shlex.quote(d)}\n"
        for s, d in zip(sources, staged, strict=True)
    )
    script = (
        "set -eu\n"
        + mounts
        + f"exec setpriv --reuid={SANDBOX_UID} --regid={SANDBOX_UID} --clear-groups "
        + "--inh-caps=-all --bounding-set=-all -- "
        + shlex.join(inner)
        + "\n"
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]


def _make_stage(sources: Sequence[str]) -> Path:
    stage = Path(tempfile.mkdtemp(prefix="plip_sandbox_stage_"))
    stage.chmod(0o755)
    for i, src in enumerate(sources):
        target = stage / str(i)
        if Path(src).is_dir():
            target.mkdir()
        else:
            target.touch()
        target.chmod(0o755)
    return stage


def _missing_tools() -> list[str]:
    tools = ["bwrap", "prlimit"] + (["unshare", "mount", "setpriv"] if os.geteuid() == 0 else [])
    missing = [t for t in tools if shutil.which(t, path=_LAUNCHER_PATH) is None]
    if "prlimit" not in missing and not Path("/usr/bin/prlimit").exists():
        missing.append("/usr/bin/prlimit")
    return missing


@functools.cache
def unavailable_reason() -> str | None:
    """Why the sandbox cannot be used here (None when it works); probed once per process."""
    missing = _missing_tools()
    if missing:
        return f"sandbox tools not found: {', '.join(missing)}; {INSTALL_HINT}"
    with tempfile.TemporaryDirectory(prefix="plip_sandbox_probe_") as tmp:
        try:
            res = _run(["/bin/true"], Path(tmp), False, (), "/tmp", Limits(wall_s=30, cpu_s=5))
        except OSError as exc:
            return f"sandbox launcher failed to start ({exc}); {INSTALL_HINT}"
    if not res.ok:
        return (
            f"bubblewrap is installed but does not work here ({res.describe(Limits())}: "
            f"{res.output.strip()[-300:]}); user namespaces may be disabled. {INSTALL_HINT}"
        )
    return None


def available() -> bool:
    """Whether :func:`run` works on this machine."""
    return unavailable_reason() is None


def run(
    argv: Sequence[str],
    *,
    workdir: str | Path,
    writable: bool = False,
    ro_paths: Sequence[str | Path] = (),
    chdir: str = "/tmp",
    limits: Limits,
) -> SandboxResult:
    """Run ``argv`` in the sandbox (see the module docstring for what is enforced).

    Args:
        argv: the command; paths are as seen inside (``/work/...``, read-only paths unchanged).
        workdir: host directory mounted on ``/work`` (its files are the command's input).
        writable: mount ``/work`` read-write (e.g. for a compiler's output); else read-only.
        ro_paths: absolute host paths bound read-only at the same place (interpreter prefix,
            toolchain). Each must be readable by uid 65534.
        chdir: working directory inside (``/tmp``: the private tmpfs).
        limits: resource limits.

    Raises:
        SandboxUnavailable: no working sandbox here (the message says how to install one).
    """
    reason = unavailable_reason()
    if reason is not None:
        raise SandboxUnavailable(reason)
    ro = [str(Path(p).resolve()) for p in ro_paths]
    for p in ro:
        if not Path(p).exists():
            raise ValueError(f"sandbox read-only path {p} does not exist")
    return _run(argv, Path(workdir), writable, tuple(ro), chdir, limits)


def _prepare_workdir(workdir: Path, writable: bool) -> None:
    """Make ``workdir`` usable by the sandbox uid when we are root (it is ours to change)."""
    if os.geteuid() != 0:
        return
    for p in [workdir, *workdir.rglob("*")]:
        if writable:
            os.chown(p, SANDBOX_UID, SANDBOX_UID)
        else:
            mode = p.stat().st_mode
            p.chmod(mode | (0o555 if p.is_dir() or mode & 0o100 else 0o444))


def _run(
    argv: Sequence[str],
    workdir: Path,
    writable: bool,
    ro_paths: Sequence[str],
    chdir: str,
    limits: Limits,
) -> SandboxResult:
    workdir = workdir.resolve()
    _prepare_workdir(workdir, writable)
    stage = _make_stage([str(workdir), *ro_paths]) if os.geteuid() == 0 else None
    cmd = _launcher(
        argv,
        workdir=workdir,
        writable=writable,
        ro_paths=ro_paths,
        chdir=chdir,
        limits=limits,
        stage=stage,
    )
    try:
        return _supervise(cmd, limits)
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def _supervise(cmd: list[str], limits: Limits) -> SandboxResult:
    """Start ``cmd`` in its own process group; kill the group at the timeout / output cap."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PATH": _LAUNCHER_PATH, "LANG": "C.UTF-8"},  # nothing secret reaches the sandbox
        start_new_session=True,
        close_fds=True,
        cwd="/",
    )
    buf = bytearray()
    exceeded = threading.Event()

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def drain() -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            room = limits.output_bytes - len(buf)
            buf.extend(chunk[: max(room, 0)])
            if len(chunk) > room:
                exceeded.set()
                kill()
                break

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if timed_out or exceeded.is_set():
            kill()
        proc.wait()
    # Anything still holding the pipe is inside the (now dead) pid namespace; don't wait long.
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    out = bytes(buf).decode("utf-8", "replace")
    if exceeded.is_set():
        return SandboxResult(None, out, output_exceeded=True)
    if timed_out:
        return SandboxResult(None, out, timed_out=True)
    return SandboxResult(proc.returncode, out)
