"""Route choice: which in-trace route edits a pass (softmax on eager attention, or the additive
mask that SDPA and eager both take), and whether its edits allow that route.

The route names are :data:`plip_nn.kernels.ROUTE_SOFTMAX` and :data:`plip_nn.kernels.ROUTE_MASK`
(docs/CONTRACT.md, "Modes").
"""

from __future__ import annotations

from collections.abc import Sequence

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, EditSpecError, Inert, SetValue
from plip_nn.models import ModelHandle

__all__ = ["ROUTES", "item_route", "needs_probs", "resolve_route", "validate_edits"]

ROUTES = (kernels.ROUTE_SOFTMAX, kernels.ROUTE_MASK)


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
    when an edit is a SetValue or an Inert or the handle runs eager, else the mask route. ``run`` and
    ``generate`` switch the model's implementation per pass / batch
    (:meth:`ModelHandle.use_route`). Other values are checked and returned.
    """
    if route == "auto":
        return handle.route_for(needs_probs=any(needs_probs(e) for e in edits))
    if route not in ROUTES:
        raise EditSpecError(f"route={route!r}; use 'auto', 'softmax' or 'mask'")
    return route


def needs_probs(edit: AttentionEdit) -> bool:
    """Whether ``edit`` writes probabilities (SetValue, Inert): only the softmax route can."""
    return isinstance(edit.op, (SetValue, Inert))


def validate_edits(
    handle: ModelHandle, sample_id: str, edits: Sequence[AttentionEdit], seq_len: int, route: str
) -> None:
    """Check every edit against the model and sequence; SetValue and Inert need the softmax
    route."""
    for edit in edits:
        edit.validate(
            n_layers=handle.n_layers,
            n_heads=handle.n_heads,
            seq_len=seq_len,
            sample=sample_id,
            sliding_windows=handle.sliding_windows,
        )
        if needs_probs(edit) and route == kernels.ROUTE_MASK:
            name = "SetValue" if isinstance(edit.op, SetValue) else "Inert"
            raise EditSpecError(
                f"sample {sample_id!r}: {name} edits probabilities directly and needs "
                "the softmax route with eager attention; load the model with "
                "attn_implementation='eager'"
            )
