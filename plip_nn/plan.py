"""Plans for traced passes and generation: plain data, padding, validation, remote setup.

Both :mod:`plip_nn.trace` and :mod:`plip_nn.generate` turn edit specs into the plain lists the
in-trace code (:mod:`plip_nn.kernels`) consumes, left-pad batches, validate edits against the
model, register the package for NDIF and check the verification stats that come back. That
shared knowledge lives here. The plain layouts and their slot names are documented in
:mod:`plip_nn.kernels`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from plip_nn import kernels
from plip_nn.edits import (
    AttentionEdit,
    CausallyMaskedEdgeError,
    EditSpecError,
    EditVerificationError,
    Knockout,
    Scale,
    SetValue,
)
from plip_nn.models import ModelHandle

__all__ = [
    "REMOTES",
    "ROUTES",
    "Edges",
    "EditStats",
    "LayerPlan",
    "RemoteConfigError",
    "build_plan",
    "check_stats",
    "configure_remote",
    "generation_row",
    "item_route",
    "missing_reading",
    "opcode",
    "pad_batch",
    "pad_id",
    "plain_plan",
    "plain_sites",
    "register_for_remote",
    "resolve_route",
    "validate_edits",
]

REMOTES = ("none", "local", "ndif")
ROUTES = (kernels.ROUTE_SOFTMAX, kernels.ROUTE_MASK)

Edges = tuple[int, tuple[int, ...], tuple[int, ...]]  # (layer, sources, targets), unpadded


class RemoteConfigError(ValueError):
    """Remote execution was requested but cannot be configured (e.g. no API key)."""


class EditStats(NamedTuple):
    """One verified group's stats row (the ``kernels.ST_*`` slots, by name)."""

    level_before: float
    level_after: float
    mass_before: float
    mass_after: float
    max_error: float
    error_ratio: float
    n_bad: float

    @classmethod
    def from_row(cls, row: Sequence[float]) -> EditStats:
        return cls(*(float(x) for x in row[: kernels.N_STATS]))


def opcode(op: Knockout | Scale | SetValue) -> tuple[int, float]:
    """The in-trace opcode and parameter of an operation."""
    if isinstance(op, Knockout):
        return kernels.KNOCKOUT, 0.0
    if isinstance(op, Scale):
        return kernels.SCALE, op.factor
    return kernels.SET_VALUE, op.value


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
                lp.groups.append([*group, code, param])
                lp.group_tags.append((r, e_idx))
        for edges in dict.fromkeys(reads):
            layer, sources, targets = edges
            lp = plan.setdefault(layer, LayerPlan())
            lp.reads.append([r, [s + off for s in sources], [t + off for t in targets]])
            lp.read_tags.append((r, edges))
    return plan


def generation_row(
    edits: Sequence[AttentionEdit], offset: int, policy: str, markers: Sequence[Sequence[int]]
) -> dict[str, Any]:
    """One batch row of a generation (the ``ROW_*`` layout of :mod:`plip_nn.kernels`): the
    edits with their targets and sources shifted by the row's pad ``offset``, the source
    ``policy`` (an engine policy name, already checked) and the marker token sequences (none
    when the row has no edit)."""
    plain = []
    sources: set[int] = set()
    for e in edits:
        code, param = opcode(e.op)
        edit: list[Any] = [None] * 5
        edit[kernels.E_LAYERS] = list(e.layers)
        edit[kernels.E_HEADS] = None if e.heads is None else list(e.heads)
        edit[kernels.E_TARGETS] = [t + offset for t in e.targets]
        edit[kernels.E_OP] = code
        edit[kernels.E_PARAM] = param
        plain.append(edit)
        sources.update(s + offset for s in e.sources)
    return {
        kernels.ROW_EDITS: plain,
        kernels.ROW_SOURCES: sorted(sources),
        kernels.ROW_POLICY: policy,
        kernels.ROW_MARKERS: [list(m) for m in markers] if plain else [],
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


def pad_batch(
    seqs: Sequence[tuple[int, ...]], pad: int, device: torch.device | str
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Left-pad ``seqs`` with token ``pad``; returns model inputs and each row's pad offset."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    offsets = []
    for r, s in enumerate(seqs):
        off = width - len(s)
        ids[r, off:] = torch.tensor(s, dtype=torch.long)
        mask[r, off:] = 1
        offsets.append(off)
    # Explicit position ids: left padding must not shift absolute positions.
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    inputs = {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": position_ids.to(device),
    }
    return inputs, offsets


def pad_id(handle: ModelHandle) -> int:
    """The pad token of the model's tokenizer (its EOS if it has none, else 0)."""
    tok = handle.tokenizer
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tok, attr, None) if tok is not None else None
        if v is not None:
            return int(v)
    return 0


def resolve_route(handle: ModelHandle, route: str) -> str:
    """The route inside a trace that is already open (:func:`plip_nn.intervene`): ``"auto"`` ->
    softmax when the model runs eager now, mask otherwise; other values are checked."""
    if route == "auto":
        return (
            kernels.ROUTE_SOFTMAX if handle.attn_implementation == "eager" else kernels.ROUTE_MASK
        )
    if route not in ROUTES:
        raise EditSpecError(f"route={route!r}; use 'auto', 'softmax' or 'mask'")
    return route


def item_route(handle: ModelHandle, edits: Sequence[AttentionEdit], route: str) -> str:
    """The route of one forward pass or generation row with ``edits``.

    ``"auto"``: the handle's choice (:meth:`ModelHandle.route_for`): the softmax route (eager)
    when an edit is a SetValue or the handle runs eager, else the mask route. ``run`` and
    ``generate`` switch the model's implementation per pass / batch
    (:meth:`ModelHandle.use_route`). Other values are checked and returned.
    """
    if route == "auto":
        return handle.route_for(needs_probs=any(isinstance(e.op, SetValue) for e in edits))
    if route not in ROUTES:
        raise EditSpecError(f"route={route!r}; use 'auto', 'softmax' or 'mask'")
    return route


def validate_edits(
    handle: ModelHandle, sample_id: str, edits: Sequence[AttentionEdit], seq_len: int, route: str
) -> None:
    """Check every edit against the model and sequence; SetValue needs the softmax route."""
    for edit in edits:
        edit.validate(
            n_layers=handle.n_layers,
            n_heads=handle.n_heads,
            seq_len=seq_len,
            sample=sample_id,
            sliding_windows=handle.sliding_windows,
        )
        if isinstance(edit.op, SetValue) and route == kernels.ROUTE_MASK:
            raise EditSpecError(
                f"sample {sample_id!r}: SetValue edits probabilities directly and needs "
                "the softmax route with eager attention; load the model with "
                "attn_implementation='eager'"
            )


def configure_remote(remote: str) -> Any:
    """Translate ``remote`` into nnsight's ``remote=`` argument; set the NDIF key in memory only."""
    if remote not in REMOTES:
        raise RemoteConfigError(f"remote={remote!r}; use one of {', '.join(REMOTES)}")
    if remote == "none":
        return False
    if remote == "local":
        return "local"
    key = os.environ.get("NDIF_API_KEY", "").strip()
    if not key:
        raise RemoteConfigError(
            "--remote ndif needs an API key: export NDIF_API_KEY=... (it is read from the "
            "environment and never written anywhere)"
        )
    from nnsight import CONFIG

    CONFIG.API.APIKEY = key  # in memory only; never CONFIG.save() / set_default_api_key
    return True


def register_for_remote() -> None:
    """Register this package with nnsight so the in-trace code ships to the server."""
    import nnsight

    import plip_nn

    nnsight.register(plip_nn)


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


def missing_reading(where: str, edit_index: int, layer: int) -> EditVerificationError:
    """The error for a requested (edit, layer) that came back without a verified reading."""
    return EditVerificationError(
        f"{where}: edit {edit_index} at layer {layer} came back without a verified reading; "
        "the edit was not applied where it was requested"
    )
