"""Environment checks of ``plip-nn doctor``: Python and package versions against
``constraints.txt``, the torch build, the devices torch sees with their free memory, the
bubblewrap sandbox (whether ``executes`` is measured) and ``rustc``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from experiments.doctor import FAIL, OK, WARN, Check

__all__ = ["CONSTRAINTS", "STACK", "check_environment", "read_constraints"]

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
"""The versions plip-nn was tested with (``pkg==version`` lines)."""

STACK = ("torch", "nnsight", "transformers")
"""Packages without which no model runs (a missing one is a FAIL; the model checks are skipped)."""
_ALSO = ("tree-sitter", "tree-sitter-rust")
_MIN_PYTHON = (3, 10)
_GIB = 1024**3


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``{normalised package name: pinned version}`` from a constraints file (``{}`` if absent)."""
    if not path.is_file():
        return {}
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_environment(device: str) -> list[Check]:
    """Every environment check, in print order."""
    checks = [_python(), *_packages(read_constraints())]
    if any(c.status == FAIL and c.name in STACK for c in checks):
        return checks
    checks += [_torch_build(device), *_devices(device), _sandbox(), _rustc()]
    return checks


def _python() -> Check:
    v = sys.version_info
    text = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if (v.major, v.minor) < _MIN_PYTHON:
        return Check("python", FAIL, text, "use Python >= 3.10 (pyproject requires-python)")
    return Check("python", OK, text)


def _packages(pins: dict[str, str]) -> list[Check]:
    out = []
    where = CONSTRAINTS.name if pins else "no constraints.txt found"
    for name in (*STACK, *_ALSO):
        pin = pins.get(_norm(name))
        try:
            have = version(name)
        except PackageNotFoundError:
            status = FAIL if name in STACK else WARN
            fix = f"pip install -c constraints.txt {name}" + (f"=={pin}" if pin else "")
            what = "needed to run any model" if name in STACK else "needed to parse Rust"
            out.append(Check(name, status, f"not installed ({what})", fix))
            continue
        if pin is None:
            out.append(Check(name, OK, f"{have} (not pinned in {where})"))
        elif have.split("+")[0] == pin:
            out.append(Check(name, OK, f"{have} (= {pin} in {where})"))
        else:
            out.append(
                Check(
                    name,
                    WARN,
                    f"{have}, but plip-nn was tested with {pin} ({where})",
                    f"pip install -c constraints.txt {name}=={pin}",
                )
            )
    return out


def _torch_build(device: str) -> Check:
    import torch

    cuda = torch.version.cuda
    hip = getattr(torch.version, "hip", None)
    if cuda:
        build = f"CUDA {cuda} build"
    elif hip:
        build = f"ROCm {hip} build"
    else:
        build = "CPU-only build"
    text = f"torch {torch.__version__}: {build}"
    wants_gpu = device.startswith("cuda")
    if wants_gpu and not (cuda or hip):
        fix = (
            f"install a CUDA build of torch {torch.__version__.split('+')[0]} "
            "(https://pytorch.org/get-started/locally/) or pass --device cpu"
        )
        return Check("torch build", FAIL, f"{text}, but --device {device} was asked for", fix)
    return Check("torch build", OK, text)


def _cpu_memory() -> str:
    total = avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    kib = int(rest.split()[0]) * 1024
                    total, avail = (kib, avail) if key == "MemTotal" else (total, kib)
    except OSError:
        pass
    if total is None or avail is None:
        return "free memory unknown"
    return f"{avail / _GIB:.1f} GiB free of {total / _GIB:.1f} GiB"


def _devices(device: str) -> list[Check]:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = [Check("device cpu", OK, f"{cores} cores usable, {_cpu_memory()}")]
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for i in range(n_cuda):
        name = torch.cuda.get_device_name(i)
        free, total = torch.cuda.mem_get_info(i)
        out.append(
            Check(
                f"device cuda:{i}",
                OK,
                f"{name}, {free / _GIB:.1f} GiB free of {total / _GIB:.1f} GiB",
            )
        )
    chosen = "cuda" if device == "auto" and n_cuda else ("cpu" if device == "auto" else device)
    kind, _, index = chosen.partition(":")
    if kind == "cuda":
        idx = int(index) if index.isdigit() else 0
        if idx >= n_cuda:
            seen = f"{n_cuda} CUDA device(s) visible" if n_cuda else "no CUDA device visible"
            fix = "check nvidia-smi and CUDA_VISIBLE_DEVICES, or pass --device cpu"
            out.append(Check("device chosen", FAIL, f"--device {device}: {seen}", fix))
            return out
    elif kind not in ("cpu", "mps"):
        fix = "pass --device auto, cpu, cuda or cuda:N"
        out.append(Check("device chosen", FAIL, f"--device {device} is not a device", fix))
        return out
    elif kind == "mps" and not torch.backends.mps.is_available():
        out.append(
            Check("device chosen", FAIL, "--device mps: MPS is not available", "pass --device cpu")
        )
        return out
    note = (
        " (no GPU visible: the study runs on the CPU)"
        if chosen == "cpu" and device == "auto"
        else ""
    )
    out.append(Check("device chosen", OK, f"{chosen}{note}"))
    return out


def _sandbox() -> Check:
    from analysis.sandbox import INSTALL_HINT, unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        bwrap = shutil.which("bwrap") or "bwrap"
        return Check("bubblewrap", OK, f"sandbox works ({bwrap}): `executes` is measured")
    return Check(
        "bubblewrap",
        WARN,
        f"{reason.split(';')[0]}: `executes` is left empty (--execute auto)",
        INSTALL_HINT,
    )


def _rustc() -> Check:
    path = shutil.which("rustc")
    fix = "install Rust (https://rustup.rs or apt-get install rustc) to run Rust tests"
    if path is None:
        return Check("rustc", WARN, "not found: Rust `executes` is not measured", fix)
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return Check("rustc", WARN, f"{path} does not run ({err})", fix)
    if out.returncode != 0:
        return Check("rustc", WARN, f"{path} --version exited {out.returncode}", fix)
    return Check("rustc", OK, f"{out.stdout.strip()} ({path})")
