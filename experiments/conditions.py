"""The study's conditions: arms × scopes, built into edits from a sample's token positions.

An *arm* is what a condition does (``knockout``, ``random_control``, ``scale_2``,
``scale_calibrated``, ``set_value_calibrated``, ...); its *scope* (:mod:`plip_nn.scope`) says
which query rows, which key columns and which layers. A condition is an arm in a scope
(``knockout@marker_span/identifiers/all``); a random control also has a draw (``#0``, ``#1``,
...). :func:`build` turns one into the edits of one sample.

``random_control`` knocks out *other* keys of the same rows at the same layers: for each
edited layer its own set of keys from :meth:`plip_nn.positions.TokenPositions.control_pool`
(before every row, outside the function's signature and every target), as many as the
targets where that matches, else as many as it takes, matched on the attention mass the
knockout removes at that layer (:func:`match_keys`, measured by :mod:`experiments.control`),
so "removing attention to the function" can be told apart from "removing this much
attention". It renormalises the rows through softmax, so it also *raises* the targets'
attention: a compared row. ``inert_control`` (the deciding control) edits the same keys of the
same draw with :class:`plip_nn.edits.Inert`: they read 0 and their mass goes to the other
non-target keys, so the targets' attention stays at baseline (checked, 2% relative).

The head-level arms (:mod:`experiments.heads`) edit only some (layer, head) pairs, per
sample (:class:`HeadSets`, chosen on the other half of the samples, over every layer): one edit
per layer with that layer's heads. ``knockout_topk`` knocks out the top-k heads' edges,
``random_heads`` (with a draw) as many other heads matched on mass, ``steer_topk`` scales the
top-k heads' edges (PASTA-style). Their names do not start with ``scale_``, which names the
dose-response arms.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from plip_nn.edits import AttentionEdit, Condition, Inert, Knockout, Operation, Scale, SetValue
from plip_nn.scope import (
    BASELINE,
    CHOSEN,
    DEFAULT_ROWS,
    DEFAULT_TARGETS,
    EVERY,
    PLIP_ROWS,
    PLIP_TARGETS,
    Scope,
    condition_name,
    window_label,
    windows,
)

if TYPE_CHECKING:
    import numpy as np

if TYPE_CHECKING:  # study imports nothing from here; the annotation is all that is needed
    from experiments.study import Prepared

__all__ = [
    "ALL_LAYERS",
    "CONTROL",
    "CONTROL_ARMS",
    "DECIDING_DOSES",
    "DOSE_FACTORS",
    "HEAD_ARMS",
    "INERT_CONTROL",
    "KNOCKOUT",
    "RANDOM_HEADS",
    "SCALE_CALIBRATED",
    "SCALE_CALIBRATED_X2",
    "SET_VALUE_CALIBRATED",
    "STEERING_FACTORS",
    "TOPK_KNOCKOUT",
    "TOPK_STEER",
    "Arm",
    "Calibration",
    "ControlKeys",
    "ControlMatch",
    "HeadSets",
    "Unit",
    "build",
    "condition_op",
    "control_draws",
    "knockout_arms",
    "match_keys",
    "plan_units",
    "scale_name",
    "steering_arms",
    "steering_scopes",
]

ALL_LAYERS = -1
KNOCKOUT = "knockout"
CONTROL = "random_control"
INERT_CONTROL = "inert_control"
CONTROL_ARMS = (CONTROL, INERT_CONTROL)
SCALE_CALIBRATED = "scale_calibrated"
SCALE_CALIBRATED_X2 = "scale_calibrated_x2"
SET_VALUE_CALIBRATED = "set_value_calibrated"
TOPK_KNOCKOUT = "knockout_topk"
RANDOM_HEADS = "random_heads"
TOPK_STEER = "steer_topk"
HEAD_ARMS = (TOPK_KNOCKOUT, RANDOM_HEADS, TOPK_STEER)
DOSE_FACTORS = (0.5, 2.0, 3.0, 4.0, 6.0)
"""Scale factors of the dose-response (H2), besides the calibrated factor and twice it."""
STEERING_FACTORS = (0.5, 2.0, 4.0)
"""Scale factors of the steering dose series (the triangle runs them at the chosen layer)."""
DECIDING_DOSES = (SCALE_CALIBRATED, SCALE_CALIBRATED_X2, SET_VALUE_CALIBRATED)
"""The steering doses beside the fixed factors: calibrated, twice it, SetValue (the triangle
generates the first two: :data:`experiments.triangle.GENERATED_DOSES`)."""

#: (sample id, rows, targets, layer, draw) -> the control's keys at that layer.
ControlKeys = Mapping[tuple[str, str, str, int, int], tuple[int, ...]]


@dataclass(frozen=True)
class Calibration:
    """The calibrated steering at one layer (``calibration.json``; experiments.calibrate).

    Attributes:
        set_value: the Python level (per target edge, head-mean) in the default scope.
        scale_factor: the Scale factor that lifts the median Rust sample to that level.
    """

    set_value: float
    scale_factor: float


@dataclass(frozen=True)
class HeadSets:
    """The heads of the head-level arms, per sample (:mod:`experiments.heads`).

    Attributes:
        top: sample id -> the top-k ``(layer, head)`` pairs, chosen on the other half.
        random: (sample id, draw) -> as many other ``(layer, head)`` pairs, matched on mass.
        factor: the Scale factor of ``steer_topk``.
    """

    top: Mapping[str, tuple[tuple[int, int], ...]]
    random: Mapping[tuple[str, int], tuple[tuple[int, int], ...]]
    factor: float


@dataclass(frozen=True)
class Arm:
    """A condition template: an arm in a scope, with its control draw (None otherwise)."""

    arm: str
    scope: Scope | None = None
    draw: int | None = None

    @property
    def name(self) -> str:
        return condition_name(self.arm, self.scope, self.draw)


BASELINE_ARM = Arm(BASELINE)


def scale_name(factor: float) -> str:
    """``scale_2`` for 2.0, ``scale_0.5`` for 0.5."""
    return f"scale_{factor:g}"


def knockout_arms(
    *,
    rows: Sequence[str],
    targets: str,
    layer_scopes: Sequence[str],
    n_layers: int,
    window: int,
    stride: int,
    plip: bool,
    draws: int,
    window_rows: Sequence[str] | None = None,
) -> list[Arm]:
    """The knockouts of the study and, right after each, its controls: ``random_control``
    draws ``0..draws-1`` then ``inert_control`` draws ``0..draws-1`` (draw ``d`` of both edits
    the same keys).

    ``layer_scopes`` holds ``layer`` (the chosen layer), ``all`` and ``window`` (the sweep,
    whose windows are :func:`plip_nn.scope.windows`, in each of ``window_rows``: default the
    first of ``rows``); ``plip`` adds the PLIP-rs scope (``marker`` rows, ``plip`` targets)
    at the chosen layer and at all layers.
    """
    scopes: list[Scope] = []
    for r in rows:
        if "layer" in layer_scopes:
            scopes.append(Scope(r, targets, CHOSEN))
        if "all" in layer_scopes:
            scopes.append(Scope(r, targets, EVERY))
    sweep_rows = list(rows[:1]) if window_rows is None else list(window_rows)
    if "window" in layer_scopes:
        for r in sweep_rows:
            for w in windows(n_layers, window, stride):
                scopes.append(Scope(r, targets, window_label(w[0], w[-1])))
    if plip:
        for name, lay in (("layer", CHOSEN), ("all", EVERY)):
            if name in layer_scopes:
                scopes.append(Scope(PLIP_ROWS, PLIP_TARGETS, lay))
    out: list[Arm] = []
    for s in dict.fromkeys(scopes):
        out.append(Arm(KNOCKOUT, s))
        for arm in CONTROL_ARMS:
            out.extend(Arm(arm, s, d) for d in range(draws))
    return out


def control_draws(arms: Sequence[Arm], draws: int) -> list[Arm]:
    """``arms`` with the control arms' draws cut to ``0..draws-1`` (generation's fewer draws:
    the same keys as the single passes' first draws)."""
    return [a for a in arms if a.arm not in CONTROL_ARMS or (a.draw or 0) < draws]


def steering_arms(
    factors: Sequence[float], *, rows: str = DEFAULT_ROWS, targets: str = DEFAULT_TARGETS,
    calibrated: bool = True, scopes: Sequence[Scope] | None = None,
) -> list[Arm]:  # fmt: skip
    """Scale at each factor, then the calibrated Scale, twice it and SetValue, in each of
    ``scopes`` in turn (default: the chosen layer of ``rows``/``targets``)."""
    arms: list[Arm] = []
    for scope in dict.fromkeys(scopes or [Scope(rows, targets, CHOSEN)]):
        arms += [Arm(scale_name(f), scope) for f in factors]
        if calibrated:
            arms += [Arm(a, scope) for a in DECIDING_DOSES]
    return arms


def steering_scopes(
    rows: Sequence[str], targets: str, layer_scopes: Sequence[str], window: str | None = None
) -> list[Scope]:
    """The deciding knockout scopes that get steering: each of ``rows`` at the chosen layer
    and at all layers (as ``layer_scopes`` has them), then the chosen ``window`` (the window
    label with the largest knockout effect, in the first of ``rows``) when given."""
    out = [
        Scope(r, targets, lay)
        for r in rows
        for name, lay in (("layer", CHOSEN), ("all", EVERY))
        if name in layer_scopes
    ]
    if window is not None and rows:
        out.append(Scope(rows[0], targets, window))
    return out


def _rng(sample_id: str, seed: int, *extra: int) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(sample_id.encode("utf-8")), *extra])


class ControlMatch(NamedTuple):
    """The mass-matched control keys of one sample at one layer and how well they match.

    ``target_mass`` / ``control_mass``: baseline head-mean attention of the rows (mean over
    rows) summed over the knockout's targets / the control's keys (the mass each knockout
    removes); ``ratio`` = control / target (NaN when the target mass is 0); ``within``:
    |ratio − 1| is within the tolerance; ``count_ok``: as many keys as targets (False when
    the pool is smaller than the targets, or when only another number of keys matches the
    mass).
    """

    keys: tuple[int, ...]
    target_mass: float
    control_mass: float
    ratio: float
    within: bool
    count_ok: bool


def match_keys(
    pool: Sequence[int],
    key_mass: Mapping[int, float],
    n_targets: int,
    target_mass: float,
    rng: np.random.Generator,
    *,
    tolerance: float = 0.10,
    restarts: int = 16,
) -> ControlMatch:
    """Keys of ``pool`` whose summed ``key_mass`` is closest to ``target_mass``: ``n_targets``
    of them when that count can match, else as many as the mass needs.

    From a random draw of keys (``rng``), repeatedly make the single swap (one chosen key out,
    one pool key in) that brings the control's mass closest to the goal, until it is within
    ``tolerance`` (relative) or no swap improves; up to ``restarts`` draws, keeping the first
    within tolerance or else the closest. When no set of ``n_targets`` keys gets within the
    tolerance (the targets hold more attention than any as many other keys), the count is
    freed (:func:`_free_count`: a random greedy fill, then single adds, drops and swaps) and
    the closer of the two sets is kept. A pool smaller than ``n_targets`` gives every pool
    key (``count_ok`` False); the freed search never takes every key of a pool of two or more.

    Raises:
        ValueError: an empty pool, or a pool key without a mass.
    """
    import numpy as np

    if not pool:
        raise ValueError("the control's key pool is empty: no key before the rows is outside "
                         "the signature; the sample is too short for a random control")  # fmt: skip
    missing = [k for k in pool if k not in key_mass]
    if missing:
        raise ValueError(f"key_mass has no mass for pool keys {missing[:5]}")
    n = min(n_targets, len(pool))
    w = np.asarray([float(key_mass[c]) for c in pool], dtype=np.float64)
    goal = float(target_mass)
    tol = tolerance * goal
    best: tuple[float, np.ndarray] | None = None
    order = np.argsort(w, kind="stable")
    heavy, light = order[len(w) - n :], order[:n]
    for ends, out_of_reach in (
        (heavy, lambda m: m < goal - tol),
        (light, lambda m: m > goal + tol),
    ):
        total = float(w[ends].sum())
        if out_of_reach(total):  # the heaviest (lightest) n keys are the closest set
            best = (abs(total - goal), np.isin(np.arange(len(w)), ends))
    for _ in range(0 if best is not None else restarts):
        inside = np.zeros(len(w), dtype=bool)
        inside[rng.choice(len(w), size=n, replace=False)] = True
        total = float(w[inside].sum())
        while abs(total - goal) > tol and not inside.all():
            ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
            new = total - w[ins][:, None] + w[outs][None, :]  # swap ins[i] out, outs[j] in
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
    if best[0] > tol and len(w) > 1:
        free = _free_count(w, goal, tol, rng, restarts)
        if abs(float(w[free].sum()) - goal) < best[0]:
            best = (abs(float(w[free].sum()) - goal), free)
    keys = tuple(sorted(pool[int(k)] for k in np.flatnonzero(best[1])))
    control = float(sum(float(key_mass[k]) for k in keys))
    ratio = control / goal if goal > 0 else math.nan
    within = abs(control - goal) <= tol if goal > 0 else control == 0
    return ControlMatch(keys, goal, control, ratio, bool(within), len(keys) == n_targets)


def _free_count(w: np.ndarray, goal: float, tol: float, rng: np.random.Generator,
                restarts: int) -> np.ndarray:  # fmt: skip
    """A bool mask over keys of weights ``w`` (at most all but one) whose sum is closest to
    ``goal``: per restart, add keys in a random order while the sum stays <= goal + tol, then
    take the single add, drop or swap that brings it closest, until within ``tol`` or none
    improves; the first restart within ``tol`` wins, else the closest."""
    import numpy as np

    cap = len(w) - 1
    lightest = int(np.argmin(w))
    if float(w.sum() - w[lightest]) < goal - tol:  # out of reach: all but the lightest
        return np.arange(len(w)) != lightest
    if float(w[lightest]) > goal + tol:  # any key overshoots: the lightest alone
        return np.arange(len(w)) == lightest
    best: tuple[float, np.ndarray] | None = None
    for _ in range(restarts):
        inside = np.zeros(len(w), dtype=bool)
        total = 0.0
        for i in rng.permutation(len(w)):
            if inside.sum() < cap and total + w[i] <= goal + tol:
                inside[i], total = True, total + float(w[i])
        while abs(total - goal) > tol:
            ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
            moves: list[tuple[float, int, int]] = [
                (abs(total - float(w[i]) - goal), int(i), -1) for i in ins if len(ins) > 1
            ]
            if len(ins) < cap:
                moves += [(abs(total + float(w[j]) - goal), -1, int(j)) for j in outs]
            if len(ins) and len(outs):
                swap = total - w[ins][:, None] + w[outs][None, :]
                a, b = np.unravel_index(np.argmin(np.abs(swap - goal)), swap.shape)
                moves.append((abs(float(swap[a, b]) - goal), int(ins[a]), int(outs[b])))
            if not moves:
                break
            gap, out_k, in_k = min(moves)
            if gap >= abs(total - goal):
                break
            if out_k >= 0:
                inside[out_k], total = False, total - float(w[out_k])
            if in_k >= 0:
                inside[in_k], total = True, total + float(w[in_k])
        if best is None or abs(total - goal) < best[0]:
            best = (abs(total - goal), inside.copy())
        if abs(total - goal) <= tol:
            break
    assert best is not None
    return best[1]


def control_rng(sample_id: str, seed: int, scope_rows: str, targets: str, layer: int, draw: int):
    """The seeded generator of one control draw (reruns and resumed runs draw the same keys)."""
    tag = zlib.crc32(f"{scope_rows}/{targets}".encode())
    return _rng(sample_id, seed, tag, layer, draw)


@dataclass(frozen=True)
class Unit:
    """One row to compute: a prepared sample under one condition.

    Attributes:
        sample: the sample (:class:`experiments.study.Prepared`).
        condition: the edits to apply (none for ``baseline``).
        record_layer: the row's ``layer`` value (:meth:`plip_nn.scope.Scope.record_layer`;
            the chosen layer for ``baseline``).
        order: the condition's place in the experiment's list (``condition_order``).
        arm: the condition template (arm, scope, draw).
    """

    sample: Prepared
    condition: Condition
    record_layer: int
    order: int
    arm: Arm = BASELINE_ARM

    @property
    def key(self) -> str:
        """``sample/condition/layer``: unique within a table; part keys are built from it."""
        return f"{self.sample.id}|{self.condition.name}|{self.record_layer}"


def build(
    arm: Arm,
    p: Prepared,
    *,
    layer: int,
    n_layers: int,
    calibration: Calibration | None = None,
    controls: ControlKeys | None = None,
    heads: HeadSets | None = None,
) -> Condition | None:
    """The condition of ``arm`` for sample ``p`` edited at chosen ``layer``, or None when the
    arm cannot be built for it (SetValue with ``v·|T| ≥ 1``; a head-level arm for a sample
    without a head set).

    Raises:
        ValueError: an unknown arm, a calibrated arm without a calibration, or a control
            without its keys.
    """
    if arm.arm == BASELINE:
        return Condition(name=BASELINE)
    scope = arm.scope
    assert scope is not None
    pos = p.positions
    sources = pos.rows(scope.rows)
    targets = pos.target_set(scope.targets)
    # (sources, targets) groups: one unless a target (a mention) lies after the first row
    edges = pos.edges(scope.rows, scope.targets)
    layers = scope.layer_indices(layer, n_layers)
    if arm.arm == KNOCKOUT:
        return _cond(arm.name, [(layers, s, t, Knockout()) for s, t in edges])
    if arm.arm in CONTROL_ARMS:
        if controls is None or arm.draw is None:
            raise ValueError(f"{arm.name}: a control needs matched keys (run control)")
        ctl_op: Operation = Knockout() if arm.arm == CONTROL else Inert(protect=targets)
        parts = []
        for lay in layers:
            key = (p.id, scope.rows, scope.targets, lay, arm.draw)
            if key not in controls:
                raise ValueError(f"sample {p.id!r} has no control keys for {key[1:]}")
            parts.append(((lay,), sources, controls[key], ctl_op))
        return _cond(arm.name, parts)
    if arm.arm in HEAD_ARMS:
        if heads is None:
            raise ValueError(f"{arm.name}: a head-level arm needs head sets (experiments.heads)")
        if arm.arm == RANDOM_HEADS:
            chosen = heads.random.get((p.id, arm.draw or 0))
        else:
            chosen = heads.top.get(p.id)
        if chosen is None:
            return None
        op_h: Knockout | Scale = Scale(factor=heads.factor) if arm.arm == TOPK_STEER else Knockout()
        edits = tuple(  # one edit per layer of the set, with that layer's heads
            AttentionEdit(layers=(lay,), heads=tuple(h for la, h in chosen if la == lay),
                          sources=sources, targets=targets, op=op_h)
            for lay in sorted({la for la, _ in chosen})
        )  # fmt: skip
        return Condition(name=arm.name, edits=edits)
    if arm.arm in (SCALE_CALIBRATED, SCALE_CALIBRATED_X2, SET_VALUE_CALIBRATED):
        if calibration is None or not math.isfinite(calibration.scale_factor):
            raise ValueError(f"{arm.arm} needs a calibration at layer {layer}; run calibrate")
        if arm.arm == SET_VALUE_CALIBRATED:
            if calibration.set_value * len(targets) >= 1.0:
                return None
            op: Operation = SetValue(value=calibration.set_value)
        else:
            mult = 2.0 if arm.arm == SCALE_CALIBRATED_X2 else 1.0
            op = Scale(factor=mult * calibration.scale_factor)
        return _cond(arm.name, [(layers, s, t, op) for s, t in edges])
    if arm.arm.startswith("scale_"):
        try:
            factor = float(arm.arm.removeprefix("scale_"))
        except ValueError:
            raise ValueError(f"arm {arm.arm!r}: expected scale_<factor>, e.g. scale_2") from None
        return _cond(arm.name, [(layers, s, t, Scale(factor=factor)) for s, t in edges])
    raise ValueError(
        f"unknown arm {arm.arm!r}; use baseline, knockout, random_control, inert_control, "
        "scale_<factor>, "
        f"{SCALE_CALIBRATED}, {SCALE_CALIBRATED_X2} or {SET_VALUE_CALIBRATED}"
    )


def check_arm(name: str) -> None:
    """Raise ValueError for an unknown arm name (before anything runs)."""
    if name in (BASELINE, KNOCKOUT, CONTROL, INERT_CONTROL, SCALE_CALIBRATED,
                SCALE_CALIBRATED_X2, SET_VALUE_CALIBRATED):  # fmt: skip
        return
    if name.startswith("scale_"):
        try:
            f = float(name.removeprefix("scale_"))
        except ValueError:
            f = math.nan
        if math.isfinite(f) and f > 0:
            return
    raise ValueError(
        f"unknown arm {name!r}; use baseline, knockout, random_control, inert_control, "
        "scale_<factor> with "
        f"factor > 0, {SCALE_CALIBRATED}, {SCALE_CALIBRATED_X2} or {SET_VALUE_CALIBRATED}"
    )


def plan_units(
    samples: Sequence[Prepared],
    arms: Sequence[Arm],
    *,
    layer_of: Mapping[str, int] | int,
    n_layers: int,
    calibration: Mapping[int, Calibration] | None = None,
    controls: ControlKeys | None = None,
    heads: HeadSets | None = None,
) -> list[Unit]:
    """A :class:`Unit` for every sample and arm, samples outer, arms inner.

    ``layer_of``: the chosen layer, or sample id -> the layer chosen for that sample (the
    cross-fitted choice of :mod:`experiments.calibrate`). ``calibration``: layer -> its
    calibrated steering; ``heads``: the head sets of the head-level arms. An arm that cannot
    be built for a sample (SetValue with ``v·|T| ≥ 1``, a sample without a head set) is left
    out for that sample.
    """
    units = []
    for p in samples:
        lay = layer_of if isinstance(layer_of, int) else layer_of[p.id]
        cal = None if calibration is None else calibration.get(lay)
        for order, arm in enumerate(arms):
            cond = build(arm, p, layer=lay, n_layers=n_layers, calibration=cal, controls=controls,
                         heads=heads)  # fmt: skip
            if cond is None:
                continue
            rec_layer = lay if arm.scope is None else arm.scope.record_layer(lay)
            units.append(Unit(p, cond, rec_layer, order, arm))
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
    if isinstance(op, Inert):
        return "inert", math.nan
    return "knockout", math.nan


def _cond(
    name: str,
    parts: Sequence[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], Operation]],
) -> Condition:
    edits = tuple(
        AttentionEdit(layers=layers, sources=sources, targets=targets, op=op)
        for layers, sources, targets, op in parts
    )
    return Condition(name=name, edits=edits)
