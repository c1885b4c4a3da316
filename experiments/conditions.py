"""The study's conditions, built from a sample's token positions.

Every condition edits the edges from the marker token (source) to the function's tokens
(targets) at one layer, a window of layers, or all layers -- except ``random_control``, which
knocks out the same number of *other* causally valid keys of the marker row (seeded per sample),
so that "removing attention to the function" can be told apart from "removing any attention".
Given the marker row's baseline attention per key (``experiments.control`` measures it), the
control is also matched on removed attention mass (:func:`mass_matched_targets`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from plip_nn.edits import AttentionEdit, Condition, Knockout, Scale, SetValue

if TYPE_CHECKING:  # study imports this module; the annotation is all that is needed here
    from experiments.study import Prepared

__all__ = [
    "ALL_LAYERS",
    "DOSE_FACTORS",
    "STUDY_CONDITIONS",
    "ControlMatch",
    "Positions",
    "Unit",
    "build",
    "condition_op",
    "mass_matched_targets",
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


@dataclass(frozen=True)
class Unit:
    """One row to compute: a prepared sample under one condition.

    Attributes:
        sample: the sample (:class:`experiments.study.Prepared`).
        condition: the edits to apply (none for ``baseline``).
        record_layer: the row's ``layer`` value: the edited layer, or ``-1`` (:data:`ALL_LAYERS`)
            for a condition on every layer (see :func:`build`).
        order: the condition's place in the experiment's list (``condition_order``).
    """

    sample: Prepared
    condition: Condition
    record_layer: int
    order: int

    @property
    def key(self) -> str:
        """``sample/condition/layer``: unique within a table; part keys are built from it."""
        return f"{self.sample.id}/{self.condition.name}/{self.record_layer}"


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
    candidates = _candidates(pos)
    n = len(pos.targets)
    chosen = _rng(pos, seed).choice(len(candidates), size=n, replace=False)
    return tuple(sorted(candidates[i] for i in chosen))


class ControlMatch(NamedTuple):
    """The mass-matched control keys of one sample and how well they match.

    ``target_mass`` / ``control_mass``: baseline head-mean attention of the marker row summed
    over the knockout's targets / the control's keys (the mass each knockout removes);
    ``ratio`` = control / target (NaN when the target mass is 0); ``within``: |ratio − 1| is
    within the tolerance.
    """

    keys: tuple[int, ...]
    target_mass: float
    control_mass: float
    ratio: float
    within: bool


def _candidates(pos: Positions) -> list[int]:
    candidates = [t for t in range(pos.source) if t not in set(pos.targets)]
    if len(candidates) < len(pos.targets):
        raise ValueError(
            f"sample {pos.sample_id!r}: only {len(candidates)} non-target keys before the marker, "
            f"need {len(pos.targets)} for the random-edge control; lengthen the sample or drop it"
        )
    return candidates


def _rng(pos: Positions, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(pos.sample_id.encode("utf-8"))])


def mass_matched_targets(
    pos: Positions,
    key_mass: Sequence[float],
    seed: int,
    *,
    tolerance: float = 0.10,
    restarts: int = 16,
) -> ControlMatch:
    """Non-target keys, as many as targets, whose baseline mass matches the targets' mass.

    ``key_mass[j]`` is the marker row's baseline head-mean attention on key ``j`` (``j <
    source``). Search: from a seeded random draw of keys, repeatedly make the single swap
    (one chosen key out, one candidate in) that brings the control's mass closest to the
    targets' mass, until it is within ``tolerance`` (relative) or no swap improves; up to
    ``restarts`` seeded draws, keeping the first within tolerance or else the closest. When
    the targets' mass exceeds the heaviest (or is below the lightest) achievable set, the
    search ends at that set, which is then the closest achievable exactly.

    Raises:
        ValueError: too few candidates, or ``key_mass`` shorter than the marker position.
    """
    candidates = _candidates(pos)
    if len(key_mass) < pos.source:
        raise ValueError(
            f"sample {pos.sample_id!r}: key_mass has {len(key_mass)} entries, need one per key "
            f"before the marker ({pos.source})"
        )
    n = len(pos.targets)
    w = np.asarray([float(key_mass[c]) for c in candidates], dtype=np.float64)
    goal = float(sum(float(key_mass[t]) for t in pos.targets))
    tol = tolerance * goal
    rng = _rng(pos, seed)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(restarts):
        inside = np.zeros(len(w), dtype=bool)
        inside[rng.choice(len(w), size=n, replace=False)] = True
        total = float(w[inside].sum())
        while abs(total - goal) > tol and not inside.all():
            ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
            # New total after swapping ins[i] out and outs[j] in.
            new = total - w[ins][:, None] + w[outs][None, :]
            i, j = np.unravel_index(np.argmin(np.abs(new - goal)), new.shape)
            if abs(new[i, j] - goal) >= abs(total - goal):
                break
            inside[ins[i]], inside[outs[j]] = False, True
            total = float(new[i, j])
        if best is None or abs(total - goal) < best[0]:
            best = (abs(total - goal), inside.copy())
        if abs(total - goal) <= tol:
            break
    assert best is not None
    keys = tuple(sorted(candidates[k] for k in np.flatnonzero(best[1])))
    control = float(sum(float(key_mass[k]) for k in keys))
    ratio = control / goal if goal > 0 else math.nan
    within = abs(control - goal) <= tol if goal > 0 else control == 0
    return ControlMatch(keys, goal, control, ratio, bool(within))


def build(
    name: str,
    pos: Positions,
    *,
    layer: int,
    n_layers: int,
    seed: int = 0,
    set_value: float | None = None,
    window: int = 1,
    control: tuple[int, ...] | None = None,
) -> tuple[Condition, int]:
    """The condition called ``name`` for one sample, and the record's ``layer`` value.

    Names: ``baseline``, ``knockout``, ``knockout_all_layers``, ``knockout_window``,
    ``random_control``, ``scale_<f>`` (e.g. ``scale_2``, ``scale_0.5``), ``set_value_calibrated``
    (needs ``set_value``). The returned layer is ``-1`` for all layers and ``layer`` otherwise
    (also for a window, whose exact layers are in the edit JSON). ``control``: the
    ``random_control`` keys (mass-matched, :func:`mass_matched_targets`); without it the
    control is matched on edge count only (:func:`random_targets`).
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
        keys = control if control is not None else random_targets(pos, seed)
        return _cond(name, one, src, keys, Knockout()), layer
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
    samples: Sequence[Prepared],
    names: Sequence[str],
    *,
    layer: int,
    n_layers: int,
    set_value: float | None,
    seed: int,
    controls: dict[str, tuple[int, ...]] | None = None,
) -> list[Unit]:
    """A :class:`Unit` for every sample and condition name, samples outer, names inner.

    A sample whose targets cannot all receive ``set_value`` (``value * |T| >= 1``) gets no
    SetValue unit (calibration.json lists such samples as ``set_value_infeasible``).
    ``controls`` maps sample id -> the mass-matched ``random_control`` keys
    (``experiments.control``); a sample missing from it raises, so a study never mixes matched
    and unmatched controls.
    """
    units = []
    for p in samples:
        for order, name in enumerate(names):
            if name == "set_value_calibrated" and (
                set_value is None or set_value * len(p.positions.targets) >= 1.0
            ):
                continue
            control = None
            if name == "random_control" and controls is not None:
                if p.id not in controls:
                    raise ValueError(f"sample {p.id!r} has no mass-matched control keys")
                control = controls[p.id]
            cond, rec_layer = build(
                name, p.positions, layer=layer, n_layers=n_layers, seed=seed,
                set_value=set_value, control=control,
            )  # fmt: skip
            units.append(Unit(p, cond, rec_layer, order))
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
