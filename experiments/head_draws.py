"""The random heads of the held-out top-K test: distinct sets matched on mass.

Per sample, ``draws`` sets of K (layer, head) pairs outside the top-K whose summed
marker->function mass lies within ±:data:`HEADS_TOLERANCE` of the top-K's, **no two draws
the same set** (:func:`distinct_draws`). Small pools are searched exhaustively, so the number
of matched sets is exact; a pool with fewer matched sets than draws gives the closest other
sets, marked outside the tolerance. Used by :mod:`experiments.heads`.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HEADS_TOLERANCE", "MAX_ENUMERATED", "HeadDraw", "Pair", "distinct_draws", "head_rng"]

HEADS_TOLERANCE = 0.25
"""Random heads match the top-K's marker->function mass within ±25% (relative)."""
MAX_ENUMERATED = 200_000
"""Pools with at most this many K-subsets are searched exhaustively (else by random search)."""

Pair = tuple[int, int]


@dataclass(frozen=True)
class HeadDraw:
    """One random-heads draw: its (layer, head) pairs, their summed mass and the match."""

    heads: tuple[Pair, ...]
    mass: float
    ratio: float
    within: bool


def head_rng(sample_id: str, seed: int) -> np.random.Generator:
    """The seeded generator of one sample's random-heads draws (reruns draw the same heads)."""
    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(sample_id.encode("utf-8")),
                                  zlib.crc32(b"random_heads")])  # fmt: skip


def _candidates(n_pool: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """K-subsets of ``range(n_pool)`` as index rows: all of them when there are at most
    :data:`MAX_ENUMERATED`, else that many random ones (duplicates removed)."""
    import numpy as np

    if math.comb(n_pool, k) <= MAX_ENUMERATED:
        return np.asarray(list(itertools.combinations(range(n_pool), k)), dtype=np.int64)
    picks = np.argsort(rng.random((MAX_ENUMERATED, n_pool)), axis=1)[:, :k]
    return np.unique(np.sort(picks, axis=1), axis=0)


def distinct_draws(
    pool: Sequence[Pair], mass: dict[Pair, float], k: int, goal: float, draws: int,
    rng: np.random.Generator, *, tolerance: float = HEADS_TOLERANCE,
) -> tuple[list[HeadDraw], int]:  # fmt: skip
    """``draws`` distinct sets of ``k`` pairs of ``pool`` matched on summed ``mass``.

    The sets within ``tolerance`` (relative) of ``goal`` are drawn in a seeded random order;
    when fewer than ``draws`` match, the rest are the closest other sets (``within`` False).
    Returns the draws and the number of matched sets found (all of them for a pool of at most
    :data:`MAX_ENUMERATED` subsets).

    Raises:
        ValueError: the pool has fewer than ``draws`` distinct sets of ``k`` pairs.
    """
    import numpy as np

    if len(pool) < k or math.comb(len(pool), k) < draws:
        raise ValueError(
            f"random heads: {len(pool)} other heads give fewer than {draws} distinct sets of "
            f"{k}; use a smaller --heads or --heads-draws"
        )
    w = np.asarray([mass[h] for h in pool], dtype=np.float64)
    sets = _candidates(len(pool), k, rng)
    total = w[sets].sum(axis=1)
    off = np.abs(total - goal)
    inside = np.flatnonzero(off <= tolerance * goal) if goal > 0 else np.flatnonzero(total == 0)
    order = list(rng.permutation(inside))
    if len(order) < draws:
        outside = np.setdiff1d(np.arange(len(sets)), inside)
        order += list(outside[np.argsort(off[outside], kind="stable")][: draws - len(order)])
    out = []
    for i in order[:draws]:
        heads = tuple(sorted(pool[int(j)] for j in sets[i]))
        m = float(total[i])
        out.append(HeadDraw(heads=heads, mass=m, ratio=m / goal if goal > 0 else math.nan,
                            within=bool(off[i] <= tolerance * goal) if goal > 0 else m == 0))  # fmt: skip
    return out, len(inside)
