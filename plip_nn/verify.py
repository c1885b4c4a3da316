"""Stats checks: whether a verified edit group achieved what its edit requested.

The in-trace code (:mod:`plip_nn.kernels`) returns one stats row per verified group (the
``kernels.ST_*`` slots); :class:`EditStats` names them and :func:`check_stats` turns a bad row
into an error that names the sample, condition and layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from plip_nn import kernels
from plip_nn.edits import (
    INERT_TARGET_TOLERANCE,
    AttentionEdit,
    CausallyMaskedEdgeError,
    EditVerificationError,
    Inert,
    Knockout,
)

__all__ = ["EditStats", "check_stats", "missing_reading"]


class EditStats(NamedTuple):
    """One verified group's stats row (the ``kernels.ST_*`` slots, by name)."""

    level_before: float
    level_after: float
    mass_before: float
    mass_after: float
    max_error: float
    error_ratio: float
    n_bad: float
    target_rel_dev: float = math.nan  # Inert only: largest relative change of a protected key

    @classmethod
    def from_row(cls, row: Sequence[float]) -> EditStats:
        return cls(*(float(x) for x in row[: kernels.N_STATS]))


def check_stats(stats: EditStats, edit: AttentionEdit, where: str, sample: str) -> None:
    """Raise unless a verified group achieved what ``edit`` requested.

    ``where`` names the sample, condition, layer (and step) for the message.
    """
    if stats.n_bad > 0:
        if isinstance(edit.op, Knockout):
            raise EditVerificationError(
                f"{where}: knockout would leave a query row with no allowed key, or an edge was "
                "already masked (e.g. by a sliding window or padding); remove those edges"
            )
        if isinstance(edit.op, Inert):
            raise EditVerificationError(
                f"{where}: inert control would leave a query row with no allowed key outside "
                "the removed and protected keys to take the removed mass, or a removed key was "
                "already masked; draw fewer control keys or use rows with more context"
            )
        raise CausallyMaskedEdgeError(
            sample=sample,
            source=edit.sources[0],
            target=edit.targets[0],
            reason=f"{where}: masked in the model's attention mask, or no other key left",
        )
    if not stats.error_ratio <= 1.0:
        raise EditVerificationError(
            f"{where}: {edit.op.kind} -- the attention the model consumed deviates from the "
            f"request by {stats.max_error:.3g} ({stats.error_ratio:.3g}x the tolerance for its "
            "value and dtype); the edit did not take effect as specified"
        )
    if isinstance(edit.op, Inert) and not stats.target_rel_dev <= INERT_TARGET_TOLERANCE:
        raise EditVerificationError(
            f"{where}: inert control moved a protected target's attention by "
            f"{stats.target_rel_dev:.3g} (relative; at most {INERT_TARGET_TOLERANCE} allowed); "
            "the removed mass reached the targets, so the control is not inert"
        )


def missing_reading(where: str, edit_index: int, layer: int) -> EditVerificationError:
    """The error for a requested (edit, layer) that came back without a verified reading."""
    return EditVerificationError(
        f"{where}: edit {edit_index} at layer {layer} came back without a verified reading; "
        "the edit was not applied where it was requested"
    )
