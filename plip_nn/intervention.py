"""Attention edits inside the user's own nnsight trace: :func:`intervene`.

``run()`` and ``generate()`` own their traces. :func:`intervene` applies the same
:class:`~plip_nn.edits.AttentionEdit` specs inside a trace the user opened on ``handle.nn``
(``trace``, a ``session``'s traces, ``generate``), so that the edits compose with the user's own
activation patches, reads and logit lens in one forward pass::

    with handle.nn.trace(ids) as tr:
        edited = plip_nn.intervene(handle, [edit])
        h = handle.nn.model.layers[1].output.save()
    edited.value  # {(edit, layer): (EditReading per batch row, ...)}, verified

It calls the engine's single in-trace edit site, :func:`plip_nn.kernels.edit_site` (the same
function ``run()`` and ``generate()`` call), layer by layer in layer order, with groups built by
:func:`plip_nn.plan.build_plan` (as ``run()`` builds them) and checked on the host by
:func:`plip_nn.plan.check_stats` into :func:`plip_nn.trace.edit_reading` (as ``run()`` does).

Positions are indices into the traced ``input_ids`` as given (no padding is added or removed),
and every edit is applied to every batch row. Under ``generate`` the call edits the pass it is
issued in (the prefill, outside ``tracer.iter``/``all``); the cached decode steps have one query
row and cannot hold the prompt's source rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, EditSpecError, EditVerificationError
from plip_nn.models import ModelHandle
from plip_nn.plan import (
    EditStats,
    build_plan,
    check_stats,
    missing_reading,
    plain_plan,
    plain_sites,
    resolve_route,
    validate_edits,
)
from plip_nn.trace import EditReading, edit_reading

__all__ = ["Intervention", "InterventionOrderError", "intervene"]


class InterventionOrderError(EditSpecError):
    """:func:`intervene` was called after the trace already ran past one of its layers."""


class Intervention:
    """What :func:`intervene` applied in a trace; read it after the trace has run.

    Attributes:
        edits: the edits, in the order given.
        stats: layer -> saved ``[groups, N_STATS]`` stats (plain tensors after the trace).
        tags: layer -> ``(batch row, edit index)`` of each stats row.
    """

    def __init__(self, edits: Sequence[AttentionEdit], verify: bool, layers: Sequence[int]) -> None:
        self.edits = tuple(edits)
        self.verify = verify
        self.layers = tuple(layers)
        self.stats: dict[int, Any] = {}
        self.tags: dict[int, list[tuple[int, int]]] = {}
        self._checked: dict[tuple[int, int], tuple[EditReading, ...]] | None = None

    def check(self) -> dict[tuple[int, int], tuple[EditReading, ...]]:
        """Check every (edit, layer) on every batch row; raise ``EditVerificationError`` on a
        missing or wrong reading. Returns :attr:`value`."""
        if self._checked is not None:
            return self._checked
        if not self.verify:
            raise EditVerificationError(
                "intervene(..., verify=False) recorded no verification; call it with verify=True "
                "to read achieved levels"
            )
        per: dict[tuple[int, int], dict[int, EditReading]] = {}
        n_rows = 0
        for layer, tags in self.tags.items():
            rows = _plain_rows(self.stats[layer])
            if len(rows) != len(tags):
                raise missing_reading(f"intervene, layer {layer}", tags[0][1] if tags else 0, layer)
            for (row, e_idx), vals in zip(tags, rows, strict=True):
                n_rows = max(n_rows, row + 1)
                st = EditStats.from_row(vals)
                edit = self.edits[e_idx]
                where = f"intervene, batch row {row}, edit {e_idx}, layer {layer}"
                check_stats(st, edit, where, f"row {row}")
                per.setdefault((e_idx, layer), {})[row] = edit_reading(edit, e_idx, layer, st)
        out = {}
        for e_idx, edit in enumerate(self.edits):
            for layer in sorted(set(edit.layers) & set(self.layers)):
                got = per.get((e_idx, layer), {})
                if n_rows == 0 or len(got) != n_rows:
                    raise missing_reading("intervene", e_idx, layer)
                out[(e_idx, layer)] = tuple(got[r] for r in range(n_rows))
        self._checked = out
        return out

    @property
    def value(self) -> dict[tuple[int, int], tuple[EditReading, ...]]:
        """``(edit index, layer) -> one EditReading per batch row``, checked on first access."""
        return self.check()


def _plain_rows(t: Any) -> list[list[float]]:
    return t.tolist() if hasattr(t, "tolist") else [list(r) for r in t]


def _is_out_of_order(err: BaseException) -> bool:
    return type(err).__name__ == "OutOfOrderError"


def intervene(
    handle: ModelHandle,
    edits: Sequence[AttentionEdit],
    *,
    verify: bool = True,
    route: str = "auto",
    layers: Sequence[int] | None = None,
) -> Intervention:
    """Apply ``edits`` inside the nnsight trace the caller has open on ``handle.nn``.

    Call it where nnsight's execution order allows: after your accesses to modules that run
    before the first edited layer's attention, and before your accesses to anything from there
    on up to the last edited layer (later accesses may follow it).
    The stats are saved in the trace; read :attr:`Intervention.value` after it.

    Args:
        handle: the loaded model whose ``handle.nn`` the trace was opened on.
        edits: the edits; positions index the traced ``input_ids``; every batch row is edited.
        verify: verify and record the achieved attention (default); ``False`` only edits.
        route: ``"auto"``, ``"softmax"`` or ``"mask"``, as in :func:`plip_nn.run`.
        layers: apply only the edits' layers among these (default: all of them). One call
            touches all its layers in order, so your accesses to modules at or below the last
            of them must come before it; to read between edited layers, split the edits into
            several calls (``layers=[0, 1]``, your read at layer 1, ``layers=[2, 3]``).

    Raises:
        EditSpecError: an invalid edit (layer/head/position out of range, SetValue on the mask
            route).
        InterventionOrderError: the trace already ran past an edited layer (reorder the calls).
    """
    edits = tuple(edits)
    if not edits:
        raise EditSpecError("intervene needs at least one AttentionEdit")
    for e in edits:
        if not isinstance(e, AttentionEdit):
            raise EditSpecError(f"intervene: {e!r} is not an AttentionEdit")
    route = resolve_route(handle, route)
    if route == kernels.ROUTE_SOFTMAX:
        handle.require_eager("intervene on the softmax route")
    all_layers = sorted({layer for e in edits for layer in e.layers})
    if layers is None:
        layers = all_layers
    else:
        wanted = {int(x) for x in layers}
        layers = [x for x in all_layers if x in wanted]
        if not layers:
            raise EditSpecError(
                f"intervene(layers={sorted(wanted)}): none of the edits' layers {all_layers}; "
                "pass some of those layers"
            )
    result = Intervention(edits, verify, layers)
    model = handle.nn
    sites = plain_sites(handle)
    for e in edits:  # layers and heads first: nothing in the trace is touched yet
        e.validate(
            n_layers=handle.n_layers,
            n_heads=handle.n_heads,
            seq_len=1 + max((*e.sources, *e.targets)),
            sample="intervene",
            sliding_windows=handle.sliding_windows,
        )
    first = layers[0]
    try:
        hidden = _attention_input(model, sites[first])
        n_rows, q_len = int(hidden.shape[0]), int(hidden.shape[1])
        need = 1 + max(p for e in edits for p in (*e.sources, *e.targets))
        if q_len < need:
            raise EditSpecError(
                f"intervene: the edits reach position {need - 1} but this forward pass has "
                f"{q_len} query rows (positions index the traced input_ids). Under generate, "
                "call intervene outside tracer.iter/tracer.all: it edits the prefill pass; a "
                "cached decode step has one query row"
            )
        validate_edits(handle, "intervene", edits, q_len, route)
        plan = build_plan([(edits, ())] * n_rows, [0] * n_rows)
        plain = plain_plan(plan)
        for layer in layers:
            lp = plain[layer]
            verify_groups = lp[kernels.PLAN_VERIFY] if verify else []
            stats, _ = kernels.edit_site(
                model, sites[layer], lp[kernels.PLAN_EDITS], verify_groups, [], route
            )
            if stats is not None:
                result.stats[layer] = stats.cpu().save()
                result.tags[layer] = list(plan[layer].group_tags)
    except Exception as err:
        if _is_out_of_order(err):
            raise InterventionOrderError(
                f"plip_nn.intervene edits layers {layers}, but the trace already ran past layer "
                f"{first}'s attention when it was called: an access to a later module (e.g. a "
                f"later layer's output) came first. nnsight serves accesses in the order the "
                f"model runs: call plip_nn.intervene before your accesses to layers >= {first} "
                f"(accesses to layers < {first} may stay before it)"
            ) from None
        raise
    import nnsight

    return nnsight.save(result)


def _attention_input(model: Any, site: tuple) -> Any:
    """In-trace: the hidden states entering the layer's attention module ``[B, Q, hidden]``."""
    args, kwargs = model.get(site[kernels.SITE_PATH]).inputs
    return args[0] if args else kwargs["hidden_states"]
