"""The plan of a traced pass: edit specs as the plain lists the in-trace code consumes.

Both :mod:`plip_nn.trace` and :mod:`plip_nn.generate` turn edit specs into plain groups and
reads per layer (:func:`build_plan`, :func:`plain_plan`), shifted by each row's pad offset. The
plain layouts and their slot names are documented in :mod:`plip_nn.kernels`.

The other steps of a pass have their own modules: :mod:`plip_nn.padding` (left padding),
:mod:`plip_nn.routes` (route choice and the edits' check against the model),
:mod:`plip_nn.remote` (nnsight's ``remote=``, the NDIF key) and :mod:`plip_nn.verify` (the
verification stats).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, Inert, Operation, Scale, SetValue
from plip_nn.models import ModelHandle

__all__ = [
    "Edges",
    "LayerPlan",
    "build_plan",
    "generation_row",
    "opcode",
    "plain_plan",
    "plain_sites",
]

Edges = tuple[int, tuple[int, ...], tuple[int, ...]]  # (layer, sources, targets), unpadded


def opcode(op: Operation) -> tuple[int, float]:
    """The in-trace opcode and parameter of an operation."""
    if isinstance(op, Scale):
        return kernels.SCALE, op.factor
    if isinstance(op, SetValue):
        return kernels.SET_VALUE, op.value
    if isinstance(op, Inert):
        return kernels.INERT, 0.0
    return kernels.KNOCKOUT, 0.0


def keep_keys(op: Operation, offset: int) -> list[int]:
    """The protected keys of an Inert (shifted by the pad ``offset``); none for other ops."""
    return [t + offset for t in op.protect] if isinstance(op, Inert) else []


def plain_sites(handle: ModelHandle) -> list[tuple[str, str, str, str, int]]:
    """Every layer's attention site as the plain tuple the in-trace code takes."""
    return [s.plain() for s in handle.sites]


@dataclass
class LayerPlan:
    """One layer of a pass: the groups to edit and the edges to read, with where each goes."""

    groups: list = field(default_factory=list)  # plain groups, knockouts and prob edits
    reads: list = field(default_factory=list)  # [row, sources, targets] (padded)
    group_tags: list = field(default_factory=list)  # (row, edit index) per group
    read_tags: list = field(default_factory=list)  # (row, Edges) per read


def build_plan(
    rows: Sequence[tuple[Sequence[AttentionEdit], Sequence[Edges]]], offsets: Sequence[int]
) -> dict[int, LayerPlan]:
    """Plan a pass: ``rows[r] = (edits to apply, edges to read)``, shifted by each pad offset."""
    plan: dict[int, LayerPlan] = {}
    for r, ((edits, reads), off) in enumerate(zip(rows, offsets, strict=True)):
        for e_idx, edit in enumerate(edits):
            code, param = opcode(edit.op)
            heads = None if edit.heads is None else list(edit.heads)
            group = [r, heads, [s + off for s in edit.sources], [t + off for t in edit.targets]]
            for layer in edit.layers:
                lp = plan.setdefault(layer, LayerPlan())
                lp.groups.append([*group, code, param, keep_keys(edit.op, off)])
                lp.group_tags.append((r, e_idx))
        for edges in dict.fromkeys(reads):
            layer, sources, targets = edges
            lp = plan.setdefault(layer, LayerPlan())
            lp.reads.append([r, [s + off for s in sources], [t + off for t in targets]])
            lp.read_tags.append((r, edges))
    return plan


def generation_row(
    edits: Sequence[AttentionEdit],
    offset: int,
    policy: str,
    markers: Sequence[Sequence[int]],
    call: list | None = None,
) -> dict[str, Any]:
    """One batch row of a generation (the ``ROW_*`` layout of :mod:`plip_nn.kernels`): the
    edits with their targets and sources shifted by the row's pad ``offset``, the source
    ``policy`` (an engine policy name, already checked), the marker token sequences and, for
    ``to_call``, the ``call`` ``[name, language, texts]`` (neither when the row has no
    edit)."""
    plain = []
    sources: set[int] = set()
    for e in edits:
        code, param = opcode(e.op)
        edit: list[Any] = [None] * 6
        edit[kernels.E_LAYERS] = list(e.layers)
        edit[kernels.E_HEADS] = None if e.heads is None else list(e.heads)
        edit[kernels.E_TARGETS] = [t + offset for t in e.targets]
        edit[kernels.E_OP] = code
        edit[kernels.E_PARAM] = param
        edit[kernels.E_KEEP] = keep_keys(e.op, offset)
        plain.append(edit)
        sources.update(s + offset for s in e.sources)
    return {
        kernels.ROW_EDITS: plain,
        kernels.ROW_SOURCES: sorted(sources),
        kernels.ROW_POLICY: policy,
        kernels.ROW_MARKERS: [list(m) for m in markers] if plain else [],
        kernels.ROW_CALL: list(call) if plain and call else [],
    }


def plain_plan(plan: dict[int, LayerPlan]) -> dict[int, dict[str, list]]:
    """The plan as plain dicts/lists (what crosses into the trace, and to NDIF)."""
    return {
        layer: {
            kernels.PLAN_EDITS: lp.groups,
            kernels.PLAN_VERIFY: lp.groups,
            kernels.PLAN_READS: lp.reads,
        }
        for layer, lp in plan.items()
    }
