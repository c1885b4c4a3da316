"""Attention edits inside the user's own nnsight trace: :func:`intervene`.

``run()`` and ``generate()`` own their traces. :func:`intervene` applies the same
:class:`~plip_nn.edits.AttentionEdit` specs inside a trace the user opened on ``handle.nn``
(``trace``, a ``session``'s traces, ``generate``), so that the edits compose with the user's own
activation patches, reads and logit lens in one forward pass::

    with handle.nn.trace(ids) as tr:
        edited = plip_nn.intervene(handle, [edit])
        h = handle.nn.model.layers[1].output.save()
    edited.value  # {(edit, layer): (EditReading per batch row, ...)}, verified
    # a failed check raises EditVerificationError as the `with` block is left, read or not

It calls the engine's single in-trace edit site, :func:`plip_nn.kernels.edit_site` (the same
function ``run()`` and ``generate()`` call), layer by layer in layer order, with groups built by
:func:`plip_nn.plan.build_plan` (as ``run()`` builds them) and checked on the host by
:func:`plip_nn.verify.check_stats` into :func:`plip_nn.trace.edit_reading` (as ``run()`` does).

Positions are indices into the traced ``input_ids`` as given (no padding is added or removed),
shifted per batch row by ``offsets`` (each row's left padding) when given, and every edit is
applied to every batch row.

**Inside the user's ``generate``** (``steps=tracer.iter[...]``) the edits stay on at every
step, as in :func:`plip_nn.generate` (one implementation: :func:`plip_nn.kernels.walk_steps`
runs :func:`plip_nn.kernels.step_edits`, the per-step body of
:func:`plip_nn.kernels.generation_pass`, with the one definition of the source policies,
:func:`plip_nn.kernels.policy_rows`). Loop over the returned :class:`Intervention`: each
step's edits run first, then your loop body (a logit lens, a steering patch, a save)::

    with handle.nn.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=True) as tracer:
        edited = plip_nn.intervene(handle, [edit], steps=tracer.iter[:n],
                                   source_policy="continuation")
        tops = list().save()
        for step in edited:
            tops.append(handle.nn.lm_head.output[:, -1].argmax(-1))
    edited.value  # {(edit, layer, step, batch row): EditReading}, verified

At step 0 (the prefill) the prompt's source rows are edited, at a later step the new token's
row when the policy says so (``"markers"``: a generated marker, ``"continuation"``: always).
Without ``steps`` a call under ``generate`` edits only the pass it is issued in (the prefill,
outside ``tracer.iter``/``all``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, EditSpecError, EditVerificationError
from plip_nn.generate import call_watch, embed_path, resolve_source_policy
from plip_nn.models import ModelHandle
from plip_nn.plan import build_plan, generation_row, plain_plan, plain_sites
from plip_nn.routes import resolve_route, validate_edits
from plip_nn.trace import EditReading, edit_reading
from plip_nn.verify import EditStats, check_stats, missing_reading

__all__ = ["Intervention", "InterventionOrderError", "intervene"]


class InterventionOrderError(EditSpecError):
    """:func:`intervene` was called after the trace already ran past one of its layers."""


class Intervention:
    """What :func:`intervene` applied in a trace; read it after the trace has run.

    Under ``generate`` with ``steps`` it is also the loop over the steps: iterate it inside
    the trace (``for step in edited: ...``); each step's edits run before the loop body.

    Attributes:
        edits: the edits, in the order given.
        stats: layer -> saved ``[groups, N_STATS]`` stats (plain tensors after the trace);
            with ``steps``: ``"steps"`` -> the saved ``[groups, GEN_STATS + N_STATS]``
            tensors, each row ``[step, batch row, layer, edit, *stats]``.
        tags: layer -> ``(batch row, edit index)`` of each stats row (without ``steps``).
        schedule: with ``steps``: step -> per batch row the query rows edited at that step
            (prompt positions at step 0; ``[0]`` at a later step is the new token's row).
    """

    def __init__(
        self,
        edits: Sequence[AttentionEdit],
        verify: bool,
        layers: Sequence[int],
        walk: dict[str, Any] | None = None,
    ) -> None:
        self.edits = tuple(edits)
        self.verify = verify
        self.layers = tuple(layers)
        self.stats: dict[Any, Any] = {}
        self.tags: dict[int, list[tuple[int, int]]] = {}
        self.schedule: dict[int, list[list[int]]] = {}
        self.generation = walk is not None
        self._walk = walk  # in-trace only: what the step loop needs; dropped once it has run
        self._walked = False
        self._checked: dict[Any, Any] | None = None

    def __iter__(self) -> Iterator[int]:
        """Walk the ``steps`` given to :func:`intervene` inside the ``generate`` trace, editing
        each step before yielding its index (once per Intervention)."""
        walk = self._walk
        if walk is None:
            raise EditSpecError(
                "this Intervention has no steps to walk: "
                + (
                    "it walked them already (iterate it once)"
                    if self._walked
                    else "call plip_nn.intervene(handle, edits, steps=tracer.iter[:n]) "
                    "inside a generate trace to keep the edits on at every step"
                )
            )
        self._walked = True
        self.stats["steps"] = []
        try:
            yield from kernels.walk_steps(
                walk["model"], walk["sites"], walk["embed_path"], walk["rows"], list(self.layers),
                walk["steps"], walk["need"], walk["route"], self.verify, self.schedule,
                self.stats["steps"],
            )  # fmt: skip
            if self.verify:
                self.check()  # the loop cannot end without the check (nothing needs to be read)
        except Exception as err:
            if _is_out_of_order(err):
                first = self.layers[0]
                raise InterventionOrderError(
                    f"plip_nn.intervene(steps=...) edits layers {list(self.layers)} at every step, "
                    f"but the trace already ran past a step's embedding or layer {first}'s "
                    f"attention when the loop reached it: iterate the Intervention as the loop "
                    f"over the steps and put your per-step accesses inside its body (they run "
                    f"after that step's edits)"
                ) from None
            raise
        finally:
            self._walk = None  # never carry the model out of the trace

    def check(self) -> dict[Any, Any]:
        """Check every (edit, layer) on every batch row (and step, under ``generate`` with
        ``steps``); raise ``EditVerificationError`` on a missing or wrong reading. Returns
        :attr:`value`.

        It runs by itself where the edits end (after the last edited layer; with ``steps``,
        when the loop over the steps ends), so a wrong edit raises when the ``with`` block is
        left, whether or not anything is read; calling it again re-checks :attr:`stats`."""
        if not self.verify:
            raise EditVerificationError(
                "intervene(..., verify=False) recorded no verification; call it with verify=True "
                "to read achieved levels"
            )
        if self.generation:
            self._checked = self._check_steps()
            return self._checked
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

    def _check_steps(self) -> dict[tuple[int, int, int, int], EditReading]:
        if not self.schedule:
            raise EditVerificationError(
                "intervene(steps=...): no step was edited; loop over the Intervention inside "
                "the generate trace (`for step in edited: ...`)"
            )
        got: dict[tuple[int, int, int, int], list[float]] = {}
        for t in self.stats.get("steps", []):
            for vals in _plain_rows(t):
                key = (
                    int(vals[kernels.GEN_EDIT]),
                    int(vals[kernels.GEN_LAYER]),
                    int(vals[kernels.GEN_STEP]),
                    int(vals[kernels.GEN_ROW]),
                )
                got[key] = vals
        out: dict[tuple[int, int, int, int], EditReading] = {}
        for step, active in sorted(self.schedule.items()):
            for row, edited_rows in enumerate(active):
                if not edited_rows:
                    continue
                for e_idx, edit in enumerate(self.edits):
                    for layer in sorted(set(edit.layers) & set(self.layers)):
                        key = (e_idx, layer, step, row)
                        where = f"intervene, step {step}, batch row {row}"
                        if key not in got:
                            raise missing_reading(where, e_idx, layer)
                        st = EditStats.from_row(got[key][kernels.GEN_STATS :])
                        check_stats(st, edit, f"{where}, edit {e_idx}, layer {layer}", f"row {row}")
                        out[key] = edit_reading(edit, e_idx, layer, st)
        extra = sorted(set(got) - set(out))
        if extra:
            e_idx, layer, step, row = extra[0]
            raise EditVerificationError(
                f"intervene: a reading for edit {e_idx} at layer {layer}, step {step}, batch row "
                f"{row} came back for a row the source policy did not edit"
            )
        return out

    @property
    def value(self) -> dict[Any, Any]:
        """``(edit index, layer) -> one EditReading per batch row``; under ``generate`` with
        ``steps``: ``(edit index, layer, step, batch row) -> EditReading`` for every row the
        source policy edited. Checked when the edits end (see :meth:`check`)."""
        return self._checked if self._checked is not None else self.check()


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
    offsets: Sequence[int] | None = None,
    steps: Iterable[int] | None = None,
    source_policy: str = "markers",
    marker_token_seqs: Sequence[Sequence[int]] = (),
    call_name: str | None = None,
    language: str | None = None,
) -> Intervention:
    """Apply ``edits`` inside the nnsight trace the caller has open on ``handle.nn``.

    Call it where nnsight's execution order allows: after your accesses to modules that run
    before the first edited layer's attention, and before your accesses to anything from there
    on up to the last edited layer (later accesses may follow it).
    The stats are saved in the trace; read :attr:`Intervention.value` after it.

    Inside ``handle.nn.generate(...)``, pass ``steps=tracer.iter[...]`` (the steps to edit:
    ``[:n]`` for all of ``max_new_tokens=n``, ``[a:b]`` for a range) and loop over the
    returned :class:`Intervention` instead of ``tracer.iter``: at every step the rows the
    ``source_policy`` names are edited (as :func:`plip_nn.generate` edits them), then your loop
    body runs. Without ``steps`` only the pass the call is issued in is edited.

    Args:
        handle: the loaded model whose ``handle.nn`` the trace was opened on.
        edits: the edits; positions index the traced ``input_ids`` (plus ``offsets``); every
            batch row is edited.
        verify: verify and record the achieved attention (default): a failed check raises
            ``EditVerificationError`` when the trace's ``with`` block is left, nothing needs to
            be read; ``False`` only edits (the explicit opt-out).
        route: ``"auto"``, ``"softmax"`` or ``"mask"``, as in :func:`plip_nn.run`.
        layers: apply only the edits' layers among these (default: all of them). One call
            touches all its layers in order, so your accesses to modules at or below the last
            of them must come before it; to read between edited layers, split the edits into
            several calls (``layers=[0, 1]``, your read at layer 1, ``layers=[2, 3]``).
            With ``steps``, your loop body runs after every edited layer of the step.
        offsets: one left-pad offset per batch row, added to every position of the edits
            (the positions are then those of each row's unpadded prompt, as in
            :func:`plip_nn.generate`); default 0 for every row.
        steps: under ``generate``: the user's ``tracer.iter[...]``, the steps to edit.
        source_policy: with ``steps``: ``"markers"`` (default: the prompt's sources, then
            every generated marker's row) or ``"continuation"`` (every row from the first
            source on, generated rows included), or a row scope name (``marker``,
            ``marker_span``, ``continuation``); see :mod:`plip_nn.generate`.
        marker_token_seqs: with ``steps`` and ``"markers"``: token sequences that form a
            marker when generated (:func:`plip_nn.generate.marker_token_sequences`).
        call_name, language: with ``steps`` and ``"to_call"``: the function whose first call
            ends the editing, and the language (how the first test ends); see
            :mod:`plip_nn.generate`.

    Raises:
        EditSpecError: an invalid edit (layer/head/position out of range, SetValue on the mask
            route), or an argument that does not fit (``source_policy``, ``offsets``).
        InterventionOrderError: the trace already ran past an edited layer (reorder the calls).
        EditVerificationError: (at the end of the ``with`` block) an edit did not take effect
            as specified, or a reading is missing.
    """
    edits = tuple(edits)
    if not edits:
        raise EditSpecError("intervene needs at least one AttentionEdit")
    for e in edits:
        if not isinstance(e, AttentionEdit):
            raise EditSpecError(f"intervene: {e!r} is not an AttentionEdit")
    policy = resolve_source_policy(source_policy)
    if steps is None and (policy != kernels.POLICY_MARKERS or marker_token_seqs):
        raise EditSpecError(
            f"intervene(source_policy={source_policy!r}, marker_token_seqs=...) choose the rows "
            "of generated tokens: pass steps=tracer.iter[:n] inside a generate trace as well"
        )
    offs = [0] if offsets is None else [int(o) for o in offsets]
    if not offs or min(offs) < 0:
        raise EditSpecError(
            f"intervene(offsets={offsets!r}): give one left-pad offset >= 0 per batch row"
        )
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
    model = handle.nn
    sites = plain_sites(handle)
    # Layers, heads, causality and the route first: nothing in the trace is touched yet. The
    # prompt's length is checked against ``need`` where the pass (or step 0) shows it.
    need = 1 + max(p + o for e in edits for p in (*e.sources, *e.targets) for o in offs)
    validate_edits(handle, "intervene", edits, need, route)
    if steps is not None:
        call = call_watch(policy, call_name, language, handle.tokenizer, "intervene")
        walk = {
            "model": model,
            "sites": sites,
            "embed_path": embed_path(handle),
            "rows": [generation_row(edits, off, policy, marker_token_seqs, call) for off in offs],
            "steps": steps,
            "need": need,
            "route": route,
        }
        import nnsight

        return nnsight.save(Intervention(edits, verify, layers, walk))
    result = Intervention(edits, verify, layers)
    first = layers[0]
    try:
        hidden = _attention_input(model, sites[first])
        n_rows, q_len = int(hidden.shape[0]), int(hidden.shape[1])
        if offsets is not None and len(offs) != n_rows:
            raise EditSpecError(
                f"intervene(offsets={list(offs)}): {len(offs)} offsets for a batch of {n_rows} "
                "rows; give one left-pad offset per batch row"
            )
        if q_len < need:
            raise EditSpecError(
                f"intervene: the edits reach position {need - 1} but this forward pass has "
                f"{q_len} query rows (positions index the traced input_ids). Under generate, "
                "pass steps=tracer.iter[:n] and loop over the Intervention to edit every step, "
                "or call intervene outside tracer.iter/tracer.all to edit the prefill pass only "
                "(a cached decode step has one query row)"
            )
        plan = build_plan([(edits, ())] * n_rows, offs if offsets is not None else [0] * n_rows)
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
        if verify:
            result.check()  # the trace cannot end without the check (nothing needs to be read)
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
