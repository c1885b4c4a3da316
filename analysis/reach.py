"""Does an edit reach the output? The KL noise floor and the reach gate.

The floor is the largest KL between two unedited passes over identical inputs in different
batch compositions (``noise_floor.parquet``, experiments.floor). A scope's edit **does not
reach the output** when it leaves at least ``1 − MAX_CHANGED`` of the generations
token-identical to baseline *and* its next-token distribution at the prediction did not move:
its median KL stays at or below the floor, or not one prompt's top-1 prediction changed. Then
the manipulation failed, and no preservation result there may be read as "no effect".

Why top-1 too: on a deterministic CPU the floor is near 0 (two compositions agree to ~1e-12
nats), so a KL of 1e-8 nats is numerically "above the floor" while changing nothing the model
does; an edit that changes no prediction and no generation has not reached the behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MAX_CHANGED", "Reach", "kl_floor", "reach", "token_identical"]

MAX_CHANGED = 0.05
"""At most this share of generations may differ from baseline for "does not reach"."""


@dataclass(frozen=True, kw_only=True)
class Reach:
    """How far one scope's edit got, in one language.

    Attributes:
        floor: the KL noise floor (nats); NaN when the run has none.
        median_kl: median KL at the prediction position over the scope's records.
        above_floor: share of those records with a KL above the floor.
        n_kl: records behind the two figures above.
        top1_changed: share of those records whose top-1 prediction changed (NaN: unknown).
        changed: share of generations whose tokens differ from baseline (NaN: none).
        n_gen: generations behind ``changed``.
        reached: False when the edit stays at the floor and moves almost no generation.
    """

    floor: float
    median_kl: float
    above_floor: float
    n_kl: int
    top1_changed: float
    changed: float
    n_gen: int
    reached: bool

    @property
    def words(self) -> str:
        kl = (
            f"median KL {self.median_kl:.2g} nats vs floor {self.floor:.2g}, "
            f"{100 * self.above_floor:.0f}% of {self.n_kl} prompts above it"
            + ("" if math.isnan(self.top1_changed)
               else f", top-1 changed in {100 * self.top1_changed:.0f}%")
            if self.n_kl
            else "no KL records"
        )  # fmt: skip
        gen = (
            f"{100 * self.changed:.0f}% of {self.n_gen} generations changed"
            if self.n_gen
            else "no generations"
        )
        return f"{kl}; {gen}"


def kl_floor(noise: pd.DataFrame | None, model: str | None = None) -> float:
    """The largest noise KL of ``model`` (all models when None); NaN without a floor table."""
    if noise is None or not len(noise):
        return math.nan
    sub = noise if model is None or "model" not in noise else noise[noise["model"] == model]
    return float(sub["kl"].max()) if len(sub) else math.nan


def token_identical(gens: pd.DataFrame, condition: str) -> pd.Series:
    """Per sample: whether ``condition``'s generated tokens equal baseline's (text if no
    tokens column). Only samples with both rows are kept."""
    col = "tokens" if "tokens" in gens else "text"
    base = gens[gens["condition"] == "baseline"].set_index("sample_id")[col]
    cond = gens[gens["condition"] == condition].set_index("sample_id")[col]
    both = base.index.intersection(cond.index)
    return pd.Series({s: _same(base[s], cond[s]) for s in both}, dtype=bool, name="identical")


def _same(a: object, b: object) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def reach(
    kl: pd.Series | np.ndarray,
    identical: pd.Series | None,
    floor: float,
    top1_same: pd.Series | np.ndarray | None = None,
) -> Reach:
    """The reach of one scope's edit: its KLs and top-1 agreement at the prediction, and its
    generations' identity with baseline."""
    k = np.asarray(kl, dtype=np.float64)
    k = k[~np.isnan(k)]
    med = float(np.median(k)) if k.size else math.nan
    above = float((k > floor).mean()) if k.size and not math.isnan(floor) else math.nan
    n_gen = 0 if identical is None else len(identical)
    changed = (
        math.nan if identical is None or not n_gen else float((~identical.astype(bool)).mean())
    )
    top = None if top1_same is None else np.asarray(top1_same, dtype=bool)
    top1_changed = math.nan if top is None or not top.size else float((~top).mean())
    at_floor = bool(k.size) and not math.isnan(floor) and med <= floor
    unmoved = at_floor or top1_changed == 0.0
    still = n_gen == 0 or changed <= MAX_CHANGED
    reached = not (unmoved and still)
    return Reach(floor=floor, median_kl=med, above_floor=above, n_kl=int(k.size),
                 top1_changed=top1_changed, changed=changed, n_gen=n_gen,
                 reached=reached)  # fmt: skip
