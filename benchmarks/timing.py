"""Side-by-side timing: every variant runs once per repeat, round-robin, after a warm-up."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from plip_nn.atomic import atomic_write_text

log = logging.getLogger(__name__)


def time_variants(
    variants: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each variant; the variants alternate so load drift hits all alike.

    ``clock``: wall time by default; :func:`time.process_time` counts only this process's CPU
    time, which other jobs on a shared CPU do not inflate (single-threaded torch only).
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats}; use an int >= 1")
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        for name, fn in variants.items():
            gc.collect()
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
        log.debug("repeat %d: %s", r, {k: round(v[-1], 4) for k, v in times.items()})
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {k: median(v) for k, v in times.items()}


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over repeats of ``num / den`` within each round (robust to slow drift)."""
    return median([a / b for a, b in zip(times[num], times[den], strict=True)])


def overhead_parser(description: str) -> argparse.ArgumentParser:
    """The overhead scripts' common flags: --model, --repeats, --threads, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", choices=("embedded", "larger", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the JSON here as well")
    return parser


def write_results(
    results: list[dict[str, Any]],
    *,
    threads: int,
    load_before: float,
    out: str | None,
    line: Callable[[dict[str, Any], str, dict[str, Any]], str],
) -> dict[str, Any]:
    """The overhead scripts' output: the JSON document (to ``out``, atomically, when given)
    and one stdout line per model and case, ``line(result, case_name, case)``."""
    doc = {
        "threads": threads,
        "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    if out:
        atomic_write_text(out, json.dumps(doc, indent=1))
    for r in results:
        for name, case in r["cases"].items():
            sys.stdout.write(line(r, name, case) + "\n")
    sys.stdout.write(f"load {doc['loadavg_1min_before_after']}\n")
    return doc
