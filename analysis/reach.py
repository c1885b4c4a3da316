"""Does an edit reach the output? The reach gate.

A cell decides only if its edit moves the output by a stated practical amount
(docs/CONTRACT.md, "Reach"): the median over prompts of the call-site ``|Δlog p|`` of the gold
name token is at least :data:`REACH_NATS`, **or** at least :data:`MIN_CHANGED` of its
generations differ from baseline. Below both, the cell **does not reach the output**; "no
effect" and "epiphenomenal" never come from such a cell.

Old runs (records without the call-site readout) fall back to the previous rule, said so in
:attr:`Reach.basis`: an edit does not reach when at most :data:`MAX_CHANGED` of generations
changed *and* its KL at the prediction stayed at the noise floor or no top-1 changed. The KL
floor (``noise_floor.parquet``) is still reported: on a deterministic CPU it is ~1e-12 nats, so
any edit clears it, which is why it no longer gates a run that has the call-site readout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "MAX_CHANGED", "MIN_CHANGED", "REACH_NATS", "Reach", "kl_floor", "reach", "token_identical",
]  # fmt: skip

MAX_CHANGED = 0.05
"""Old runs only: at most this share of generations may differ for "does not reach"."""
REACH_NATS = 0.05
"""Median call-site |Δlog p| (nats) at or above which an edit reaches the output (CONTRACT)."""
MIN_CHANGED = 0.10
"""Share of generations changed at or above which an edit reaches the output."""


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
        reached: whether the edit moved the output by the stated practical amount.
        median_abs_dlogp: median call-site |Δlog p| (nats) over prompts (NaN: old run).
        n_call: prompts behind it.
        basis: ``call-site`` (the gate of docs/CONTRACT.md) or ``legacy`` (old runs).
    """

    floor: float
    median_kl: float
    above_floor: float
    n_kl: int
    top1_changed: float
    changed: float
    n_gen: int
    reached: bool
    median_abs_dlogp: float = math.nan
    n_call: int = 0
    basis: str = "legacy"

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
        if self.basis == "call-site":
            call = (
                f"median call-site |Δlog p| {self.median_abs_dlogp:.3g} nats over "
                f"{self.n_call} prompts (gate {REACH_NATS} nats)"
            )
            return f"{call}; {gen} (gate {100 * MIN_CHANGED:.0f}%); {kl}"
        return f"{kl}; {gen} (old run: no call-site readout, legacy gate)"


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
    dlogp: pd.Series | np.ndarray | None = None,
) -> Reach:
    """The reach of one scope's edit (module docstring).

    Args:
        kl / top1_same: KL and top-1 agreement at the prediction (reported; they gate old runs).
        identical: per sample, whether the generation equals baseline's (None: no generations).
        floor: the KL noise floor (NaN: none).
        dlogp: the call-site Δlog p of the gold token per prompt (None or empty: an old run).
    """
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
    dl = np.empty(0) if dlogp is None else np.asarray(dlogp, dtype=np.float64)
    dl = dl[~np.isnan(dl)]
    if dl.size:
        med_dl = float(np.median(np.abs(dl)))
        gen_moved = n_gen > 0 and changed >= MIN_CHANGED
        return Reach(floor=floor, median_kl=med, above_floor=above, n_kl=int(k.size),
                     top1_changed=top1_changed, changed=changed, n_gen=n_gen,
                     reached=bool(med_dl >= REACH_NATS or gen_moved), median_abs_dlogp=med_dl,
                     n_call=int(dl.size), basis="call-site")  # fmt: skip
    at_floor = bool(k.size) and not math.isnan(floor) and med <= floor
    unmoved = at_floor or top1_changed == 0.0
    still = n_gen == 0 or changed <= MAX_CHANGED
    reached = not (unmoved and still)
    return Reach(floor=floor, median_kl=med, above_floor=above, n_kl=int(k.size),
                 top1_changed=top1_changed, changed=changed, n_gen=n_gen,
                 reached=reached)  # fmt: skip
