"""The study's conditions, built from a sample's token positions.

Every condition edits the edges from the marker token (source) to the function's tokens
(targets) at one layer, a window of layers, or all layers -- except ``random_control``, which
knocks out the same number of *other* causally valid keys of the marker row (seeded per sample),
so that "removing attention to the function" can be told apart from "removing any attention".
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plip_nn.edits import AttentionEdit, Condition, Knockout, Scale, SetValue

__all__ = [
    "ALL_LAYERS",
    "DOSE_FACTORS",
    "STUDY_CONDITIONS",
    "Positions",
    "build",
    "condition_op",
    "plan_units",
    "random_targets",
]

ALL_LAYERS = -1
STUDY_CONDITIONS = (
    "baseline",
    "knockout",
    "knockout_all_layers",
    "random_control",
    "scale_2",
    "set_value_calibrated",
    "scale_6",
)
DOSE_FACTORS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


@dataclass(frozen=True)
class Positions:
    """Token positions of one sample (absolute, unpadded)."""

    sample_id: str
    source: int
    targets: tuple[int, ...]


def scale_name(factor: float) -> str:
    """``scale_2`` for 2.0, ``scale_0.5`` for 0.5."""
    return f"scale_{factor:g}"


def random_targets(pos: Positions, seed: int) -> tuple[int, ...]:
    """As many causally valid non-target keys of the marker row as there are targets.

    Candidates are the positions ``0 .. source - 1`` that are not targets (the marker's own
    token is excluded so the row keeps the key it always has). Seeded by ``seed`` and the
    sample id, so reruns and resumed runs pick the same edges.

    Raises:
        ValueError: fewer candidates than targets (the prompt is too short for a control).
    """
    candidates = [t for t in range(pos.source) if t not in set(pos.targets)]
    n = len(pos.targets)
    if len(candidates) < n:
        raise ValueError(
            f"sample {pos.sample_id!r}: only {len(candidates)} non-target keys before the marker, "
            f"need {n} for the random-edge control; lengthen the sample or drop it"
        )
    rng = np.random.default_rng([seed, zlib.crc32(pos.sample_id.encode("utf-8"))])
    chosen = rng.choice(len(candidates), size=n, replace=False)
    return tuple(sorted(candidates[i] for i in chosen))


def build(
    name: str,
    pos: Positions,
    *,
    layer: int,
    n_layers: int,
    seed: int = 0,
    set_value: float | None = None,
    window: int = 1,
) -> tuple[Condition, int]:
    """The condition called ``name`` for one sample, and the record's ``layer`` value.

    Names: ``baseline``, ``knockout``, ``knockout_all_layers``, ``knockout_window``,
    ``random_control``, ``scale_<f>`` (e.g. ``scale_2``, ``scale_0.5``), ``set_value_calibrated``
    (needs ``set_value``). The returned layer is ``-1`` for all layers and ``layer`` otherwise
    (also for a window, whose exact layers are in the edit JSON).
    """
    src = (pos.source,)
    tgt = pos.targets
    one = (layer,)
    if name == "baseline":
        return Condition(name=name), layer
    if name == "knockout":
        return _cond(name, one, src, tgt, Knockout()), layer
    if name == "knockout_all_layers":
        return _cond(name, tuple(range(n_layers)), src, tgt, Knockout()), ALL_LAYERS
    if name == "knockout_window":
        layers = tuple(range(max(0, layer - window), min(n_layers, layer + window + 1)))
        return _cond(name, layers, src, tgt, Knockout()), layer
    if name == "random_control":
        return _cond(name, one, src, random_targets(pos, seed), Knockout()), layer
    if name == "set_value_calibrated":
        if set_value is None or not math.isfinite(set_value):
            raise ValueError("set_value_calibrated needs a calibrated value; run calibrate first")
        return _cond(name, one, src, tgt, SetValue(value=set_value)), layer
    if name.startswith("scale_"):
        try:
            factor = float(name.removeprefix("scale_"))
        except ValueError:
            raise ValueError(f"condition {name!r}: expected scale_<factor>, e.g. scale_2") from None
        return _cond(name, one, src, tgt, Scale(factor=factor)), layer
    raise ValueError(
        f"unknown condition {name!r}; use one of {', '.join(KNOWN_CONDITIONS)} or scale_<factor>"
    )


KNOWN_CONDITIONS = (*STUDY_CONDITIONS, "knockout_window")


def check_names(names: Sequence[str]) -> None:
    """Raise ValueError for an unknown condition name (before anything runs)."""
    for name in names:
        if name in KNOWN_CONDITIONS:
            continue
        if name.startswith("scale_"):
            try:
                f = float(name.removeprefix("scale_"))
            except ValueError:
                f = math.nan
            if math.isfinite(f) and f > 0:
                continue
        raise ValueError(
            f"unknown condition {name!r}; use one of {', '.join(KNOWN_CONDITIONS)} or "
            "scale_<factor> with factor > 0"
        )


def plan_units(
    samples: Sequence[Any],
    names: Sequence[str],
    *,
    layer: int,
    n_layers: int,
    set_value: float | None,
    seed: int,
) -> list[tuple[Any, Condition, int, int]]:
    """``(sample, condition, record layer, condition order)`` for every sample and name.

    ``samples`` are :class:`experiments.study.Prepared`. A sample whose targets cannot all
    receive ``set_value`` (``value * |T| >= 1``) gets no SetValue unit (calibration.json lists
    such samples as ``set_value_infeasible``).
    """
    units = []
    for p in samples:
        for order, name in enumerate(names):
            if name == "set_value_calibrated" and (
                set_value is None or set_value * len(p.positions.targets) >= 1.0
            ):
                continue
            cond, rec_layer = build(
                name, p.positions, layer=layer, n_layers=n_layers, seed=seed, set_value=set_value
            )
            units.append((p, cond, rec_layer, order))
    return units


def condition_op(cond: Condition) -> tuple[str, float]:
    """``(op, factor)`` columns of a record: op name and Scale factor / SetValue value / NaN."""
    if not cond.edits:
        return "none", math.nan
    op = cond.edits[0].op
    if isinstance(op, Scale):
        return "scale", op.factor
    if isinstance(op, SetValue):
        return "set_value", op.value
    return "knockout", math.nan


def _cond(
    name: str,
    layers: tuple[int, ...],
    sources: tuple[int, ...],
    targets: tuple[int, ...],
    op: Knockout | Scale | SetValue,
) -> Condition:
    edit = AttentionEdit(layers=layers, sources=sources, targets=targets, op=op)
    return Condition(name=name, edits=(edit,))
