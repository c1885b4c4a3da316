"""Side-by-side timing: every variant runs once per repeat, round-robin, after a warm-up."""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def time_variants(
    variants: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each variant; the variants alternate so load drift hits all alike."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}; use an int >= 1")
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        for name, fn in variants.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        log.debug("repeat %d: %s", r, {k: round(v[-1], 4) for k, v in times.items()})
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {k: median(v) for k, v in times.items()}
