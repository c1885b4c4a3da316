"""P6: peak resident memory of an intervened forward vs a plain eager forward.

Each measurement is a fresh subprocess (``python -m benchmarks.memory MODE ...``) that builds
the same model, wraps it with nnsight (so imports and weights are alike), runs one forward of
its mode under ``torch.inference_mode()`` and reports its peak resident set.

The peak is ``VmHWM`` from ``/proc/self/status`` (the high-water mark of this process's own
address space). ``getrusage(RUSAGE_SELF).ru_maxrss`` is also recorded but not used: on Linux it
keeps the maximum over the address spaces a process had, and a forked child starts as a copy of
its parent, so after ``exec`` it still reports the (larger) benchmark parent's RSS.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import median

log = logging.getLogger(__name__)

MODES = ("plain", "engine_knockout_1", "engine_scale_all")
ROOT = Path(__file__).resolve().parent.parent
# glibc settings for peak-memory figures: small tensors from mmap (freed at once) and a single
# arena, so the high-water mark is the process's own need, not allocator slack.
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only)")


def child(mode: str, quick: bool, batch: int, seq: int) -> dict[str, Any]:
    """Run one forward of ``mode`` in this process and report memory (KiB)."""
    from benchmarks import models, workload
    from plip_nn import kernels

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    bm = models.larger(models.LARGER_QUICK if quick else models.LARGER)
    h = bm.handle
    prompts = models.random_prompts(bm.vocab, batch, seq, seed=51)
    inputs, offsets = workload.batch_inputs(h, prompts)
    sites = workload.sites_of(h)
    plans = {
        "engine_knockout_1": lambda: workload.plan_for(
            prompts, offsets, lambda n: workload.knockout_one(h, n)
        ),
        "engine_scale_all": lambda: workload.plan_for(
            prompts, offsets, lambda n: workload.scale_all(h, n)
        ),
    }
    plan = plans[mode]() if mode != "plain" else None
    before = _status_kib("VmRSS")
    with torch.inference_mode():
        if plan is None:
            out = h.hf(**inputs).logits
            del out
        else:
            res = kernels.traced_pass(h.nn, inputs, sites, plan, None, False, False)
            del res
    return {
        "mode": mode,
        "rss_before_kib": before,
        "peak_rss_kib": _status_kib("VmHWM"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def measure(mode: str, *, quick: bool, batch: int, seq: int) -> dict[str, Any]:
    """Run :func:`child` for ``mode`` in a fresh subprocess (:data:`MEMORY_ENV` on top of this
    environment)."""
    cmd = [sys.executable, "-m", "benchmarks.memory", mode, "--batch", str(batch)]
    cmd += ["--seq", str(seq)] + (["--quick"] if quick else [])
    env = {**os.environ, **MEMORY_ENV}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {mode} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def p6(*, quick: bool, batch: int, seq: int, repeats: int) -> dict[str, Any]:
    """Peak RSS (median over ``repeats`` subprocesses per mode, interleaved) and ratios."""
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for _ in range(repeats):
        for mode in MODES:
            runs[mode].append(measure(mode, quick=quick, batch=batch, seq=seq))
    peak = {m: median([float(r["peak_rss_kib"]) for r in rs]) for m, rs in runs.items()}
    added = {
        m: median([float(r["peak_rss_kib"] - r["rss_before_kib"]) for r in rs])
        for m, rs in runs.items()
    }
    ratios = {f"{m}_peak_rss": peak[m] / peak["plain"] for m in MODES if m != "plain"}
    ratios.update(
        {f"{m}_forward_added_rss": added[m] / added["plain"] for m in MODES if m != "plain"}
    )
    return {
        "model": "larger",
        "batch": batch,
        "seq": seq,
        "repeats": repeats,
        "peak_rss_mib": {m: v / 1024 for m, v in peak.items()},
        "forward_added_rss_mib": {m: v / 1024 for m, v in added.items()},
        "runs": runs,
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one P6 memory measurement (internal)")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    args = parser.parse_args(argv)
    result = child(args.mode, args.quick, args.batch, args.seq)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
