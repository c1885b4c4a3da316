"""Run attention edits inside nnsight traces and return small per-item summaries.

One API covers every mode: a single prompt, a left-padded batch, many conditions in one nnsight
session, nnsight's offline remote simulation (``remote="local"``) and NDIF (``remote="ndif"``).
Summaries -- KL to the baseline at the last position, top-1 agreement, the NLL of the sample's
own tokens, attention levels on edited and probed edges -- are computed *inside* the trace, so a
remote run never ships ``[heads, seq, seq]`` tensors back.

Every edited pass proves its edit: the achieved attention is recorded next to the value before
the edit, and a disagreement with the requested operation raises
:class:`~plip_nn.edits.EditVerificationError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, Condition, EditSpecError, Probe
from plip_nn.models import ModelHandle
from plip_nn.padding import pad_batch, pad_id
from plip_nn.plan import Edges, LayerPlan, build_plan, plain_plan, plain_sites
from plip_nn.remote import REMOTES, RemoteConfigError, configure_remote, register_for_remote
from plip_nn.routes import ROUTES, item_route, validate_edits
from plip_nn.verify import EditStats, check_stats, missing_reading

__all__ = [
    "REMOTES",
    "EditReading",
    "Item",
    "ItemResult",
    "Remote",
    "RemoteConfigError",
    "configure_remote",
    "edit_reading",
    "run",
]

log = logging.getLogger(__name__)

Remote = Literal["none", "local", "ndif"]
# (input_ids, predict_at, nll_from, gold_token)
Prompt = tuple[tuple[int, ...], int | None, int | None, int | None]


@dataclass(frozen=True, kw_only=True)
class Item:
    """One forward pass to run: a token sequence under a condition.

    Args:
        key: unique key of the item (e.g. ``"sample/condition"``).
        sample_id: id of the sample, named in errors.
        input_ids: the unpadded token ids.
        condition: the edits to apply (no edits = baseline).
        probe: extra edges whose attention is read at each of ``probe.layers`` (e.g. a layer scan).
        predict_at: the position whose next-token distribution gives KL, top-1 and the greedy
            log-prob change (``None``: the last token), e.g. the token after the marker.
        nll_from: the NLL (perplexity) counts only the tokens after this position (``None``:
            every token); an edit of rows from the marker on changes only those.
        gold_token: a token id whose log p and rank are read at ``predict_at`` in the baseline
            and the edited pass (``None``: not read). At the call it is the token that holds
            the first character of the called name, ``input_ids[predict_at + 1]``.
    """

    key: str
    sample_id: str
    input_ids: tuple[int, ...]
    condition: Condition
    probe: Probe | None = None
    predict_at: int | None = None
    nll_from: int | None = None
    gold_token: int | None = None

    def __post_init__(self) -> None:
        ids = tuple(int(i) for i in self.input_ids)
        if len(ids) < 2:
            raise EditSpecError(
                f"sample {self.sample_id!r}: {len(ids)} tokens; need at least 2 (a source and a target)"
            )
        object.__setattr__(self, "input_ids", ids)
        for name in ("predict_at", "nll_from"):
            v = getattr(self, name)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < len(ids)
            ):
                raise EditSpecError(
                    f"sample {self.sample_id!r}: {name}={v!r} must be a token position in "
                    f"0..{len(ids) - 1} (or None)"
                )
        g = self.gold_token
        if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 0):
            raise EditSpecError(
                f"sample {self.sample_id!r}: gold_token={g!r} must be a token id >= 0 (or None)"
            )

    @property
    def prompt(self) -> Prompt:
        """What a reference row is shared by: the tokens, where they are summarised and the
        gold token read there."""
        return (self.input_ids, self.predict_at, self.nll_from, self.gold_token)


@dataclass(frozen=True)
class EditReading:
    """Attention on one edit's edges at one layer, before and after the edit (head-mean)."""

    edit: int
    layer: int
    op: str
    level_before: float
    level_after: float
    mass_before: float
    mass_after: float
    max_error: float  # largest |consumed - expected| weight on the edited rows
    error_ratio: float = 0.0  # max_error over its tolerance (relative to value and dtype)
    target_rel_dev: float | None = None  # Inert: largest relative change of a protected target


@dataclass(frozen=True)
class ItemResult:
    """Summaries of one item, all computed inside the trace."""

    key: str
    sample_id: str
    condition: str
    kl: float  # KL(P_baseline || P_condition), nats, at the prediction position
    top1_same: bool
    top1_baseline: int
    top1_condition: int
    nll_baseline: float  # sum over the sample's own tokens
    nll_condition: float
    n_tokens: int
    readings: tuple[EditReading, ...]
    probe_baseline: dict[int, tuple[float, float]] = field(
        default_factory=dict
    )  # layer -> (level, mass)
    probe_condition: dict[int, tuple[float, float]] = field(default_factory=dict)
    logprobs: torch.Tensor | None = None  # [vocab] last-position log-probs of the condition
    # (edit index, layer) -> (level, mass) of the edited edges in the unedited pass
    edit_baseline: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    # log p_condition(t) - log p_baseline(t) for the baseline's top-1 token t (0 for baseline)
    dlogp_top1: float = 0.0
    # the readout of Item.gold_token at the prediction position (NaN / -1 without one)
    gold_token: int = -1
    logp_gold_baseline: float = math.nan
    logp_gold_condition: float = math.nan
    rank_gold_baseline: int = -1
    rank_gold_condition: int = -1
    p_top1_baseline: float = math.nan  # baseline probability of the baseline's top-1 token

    @property
    def dlogp_gold(self) -> float:
        """``logp_gold_condition - logp_gold_baseline`` (NaN without a gold token)."""
        return self.logp_gold_condition - self.logp_gold_baseline

    @property
    def ppl_baseline(self) -> float:
        return math.exp(self.nll_baseline / self.n_tokens)

    @property
    def ppl_condition(self) -> float:
        return math.exp(self.nll_condition / self.n_tokens)


def _edge_reads(edits: Sequence[AttentionEdit], probe: Probe | None) -> list[Edges]:
    out = [(layer, e.sources, e.targets) for e in edits for layer in e.layers]
    if probe is not None:
        out += [(layer, probe.sources, probe.targets) for layer in probe.layers]
    return out


def _validate(handle: ModelHandle, item: Item, route: str) -> None:
    n = len(item.input_ids)
    validate_edits(handle, item.sample_id, item.condition.edits, n, route)
    vocab = getattr(handle.config, "vocab_size", None)
    if item.gold_token is not None and vocab is not None and item.gold_token >= int(vocab):
        raise EditSpecError(
            f"sample {item.sample_id!r}: gold_token={item.gold_token} is outside the model's "
            f"vocabulary (0..{int(vocab) - 1})"
        )
    if route == kernels.ROUTE_SOFTMAX and (item.condition.edits or item.probe is not None):
        handle.require_route(route, "the softmax route (editing or reading probabilities)")
    if item.probe is not None:
        for layer in item.probe.layers:
            if layer >= handle.n_layers:
                raise EditSpecError(
                    f"sample {item.sample_id!r}: probe layer {layer} is out of range; the model "
                    f"has {handle.n_layers} layers (0..{handle.n_layers - 1})"
                )
        for p in (*item.probe.sources, *item.probe.targets):
            if p >= n:
                raise EditSpecError(
                    f"sample {item.sample_id!r}: probe position {p} >= sequence length {n}"
                )


def run(
    handle: ModelHandle,
    items: Sequence[Item],
    *,
    batch_size: int = 8,
    remote: str = "none",
    keep_logprobs: bool = False,
    progress: Callable[[int], None] | None = None,
    route: str = "auto",
    session: bool | None = None,
    prompts_per_chunk: int | None = None,
) -> list[ItemResult]:
    """Run ``items`` and return one result per item, in order.

    Each forward pass holds up to ``batch_size`` edited items plus one unedited reference row
    per prompt among them; an edited item's KL, top-1, baseline NLL and baseline attention come
    from its prompt's reference row in the same pass (baseline items are reference rows).
    Prompts are processed in chunks of ``prompts_per_chunk`` prompts (default ``batch_size``);
    a chunk's passes are planned together, and when ``remote`` is not ``"none"`` each chunk is
    one nnsight session (one NDIF job) that log-probs never leave.

    Args:
        handle: the loaded model.
        items: what to run; keys must be unique.
        batch_size: items per forward pass (reference rows come on top).
        prompts_per_chunk: distinct prompts per chunk (one session / NDIF job each when
            remote); ``None``: ``batch_size``.
        remote: ``"none"`` (local), ``"local"`` (nnsight's offline remote simulation) or
            ``"ndif"`` (key from ``NDIF_API_KEY``).
        keep_logprobs: also return each item's last-position log-probs (local debugging/tests).
        progress: called with the number of items finished after each chunk.
        route: ``"softmax"`` edits the probabilities at the attention softmax (eager only);
            ``"mask"`` edits the additive attention mask passed to the attention function
            (Knockout and Scale only; works under SDPA); ``"auto"`` lets the handle choose per
            item (:func:`plip_nn.routes.item_route`; an ``attn="auto"`` handle runs SetValue
            items on eager and the rest on SDPA, in separate passes).
        session: run each chunk's baseline and edited passes in one nnsight session (default:
            only when ``remote`` is not ``"none"``).

    Raises:
        EditSpecError / CausallyMaskedEdgeError: invalid edits (before anything runs).
        EditVerificationError: an edited pass did not achieve the requested attention.
    """
    if batch_size < 1:
        raise EditSpecError(f"batch_size={batch_size}; use an int >= 1")
    chunk_prompts = batch_size if prompts_per_chunk is None else prompts_per_chunk
    if chunk_prompts < 1:
        raise EditSpecError(f"prompts_per_chunk={prompts_per_chunk}; use an int >= 1 (or None)")
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise EditSpecError(f"duplicate item keys {dup[:5]}; every item needs a unique key")
    routes = {it.key: item_route(handle, it.condition.edits, route) for it in items}
    for it in items:
        _validate(handle, it, routes[it.key])
    remote_arg = configure_remote(remote)
    if remote_arg:
        register_for_remote()
    use_session = bool(remote_arg) if session is None else session
    if remote_arg and not use_session:
        raise EditSpecError("remote runs always use a session; leave session=None or True")

    by_prompt: dict[Prompt, list[Item]] = {}
    for it in items:
        by_prompt.setdefault(it.prompt, []).append(it)
    prompts = list(by_prompt)
    results: dict[str, ItemResult] = {}
    for start in range(0, len(prompts), chunk_prompts):
        chunk = {p: by_prompt[p] for p in prompts[start : start + chunk_prompts]}
        for r in ROUTES:  # one group of passes (one session when remote) per route
            part = {p: [it for it in its if routes[it.key] == r] for p, its in chunk.items()}
            part = {p: its for p, its in part.items() if its}
            if not part:
                continue
            with handle.use_route(r):
                for res in _run_chunk(
                    handle, part, batch_size, remote_arg, keep_logprobs, r, use_session
                ):
                    results[res.key] = res
        if progress is not None:
            progress(sum(len(its) for its in chunk.values()))
    return [results[k] for k in keys]


@dataclass
class _Pass:
    """One forward pass: edited rows, then one unedited reference row per prompt."""

    edited: list[Item] = field(default_factory=list)
    refs: list[Prompt] = field(default_factory=list)
    owned: list[Prompt] = field(default_factory=list)  # prompts whose baselines live here

    def size(self) -> int:
        """Items in the pass: edited rows plus reference rows of baseline-only prompts."""
        edited_prompts = {it.prompt for it in self.edited}
        return len(self.edited) + sum(1 for p in self.refs if p not in edited_prompts)


def _plan_passes(
    prompts: list[Prompt], by_prompt: dict[Prompt, list[Item]], batch_size: int
) -> list[_Pass]:
    """Split a chunk into passes of at most ``batch_size`` items plus their reference rows.

    Every edited item shares its pass with an unedited row of its own prompt: KL, top-1, the
    baseline NLL and the baseline reads of an edited row all come from that row of the *same*
    forward pass (same shapes and padding), so batch composition cannot leak into effect
    sizes, and no separate baseline pass is needed. A prompt with only baseline items costs
    one reference row.
    """
    passes: list[_Pass] = [_Pass()]
    for p in prompts:
        items = by_prompt[p]
        edited = [it for it in items if it.condition.edits]
        if not edited:
            if passes[-1].size() >= batch_size:
                passes.append(_Pass())
            passes[-1].refs.append(p)
            passes[-1].owned.append(p)
            continue
        for i, it in enumerate(edited):
            cur = passes[-1]
            if cur.size() >= batch_size:
                passes.append(_Pass())
                cur = passes[-1]
            cur.edited.append(it)
            if p not in cur.refs:
                cur.refs.append(p)
            if i == 0:
                cur.owned.append(p)
    return [ps for ps in passes if ps.refs]


def _run_chunk(
    handle: ModelHandle,
    by_prompt: dict[Prompt, list[Item]],
    batch_size: int,
    remote_arg: Any,
    keep: bool,
    route: str,
    use_session: bool,
) -> Iterable[ItemResult]:
    """Run one chunk: ``by_prompt`` maps each of its prompts to that prompt's items."""
    model = handle.nn
    device = handle.device
    pad = pad_id(handle)
    sites = plain_sites(handle)
    passes = _plan_passes(list(by_prompt), by_prompt, batch_size)

    built = []
    for ps in passes:
        n = len(ps.edited)
        prompts = [it.prompt for it in ps.edited] + ps.refs
        inputs, offsets = pad_batch([p[0] for p in prompts], pad, device)
        width = inputs["input_ids"].shape[1]
        summary = {
            "predict_at": [width - 1 if at is None else at + off
                           for (_, at, _, _), off in zip(prompts, offsets, strict=True)],
            "nll_from": [off if start is None else start + off
                         for (_, _, start, _), off in zip(prompts, offsets, strict=True)],
            "gold": [-1 if g is None else g for (_, _, _, g) in prompts],
        }  # fmt: skip
        specs: list[tuple[Sequence[AttentionEdit], list[Edges]]] = [
            (it.condition.edits, _edge_reads((), it.probe)) for it in ps.edited
        ]
        for p in ps.refs:
            reads = [
                e
                for it in ps.edited
                if it.prompt == p
                for e in _edge_reads(it.condition.edits, it.probe)
            ]
            if p in ps.owned:
                reads += [
                    e
                    for it in by_prompt[p]
                    if not it.condition.edits
                    for e in _edge_reads((), it.probe)
                ]
            specs.append(((), reads))
        plan = build_plan(specs, offsets)
        ref_row = {p: n + j for j, p in enumerate(ps.refs)}
        rows = [ref_row[it.prompt] for it in ps.edited] + [n + j for j in range(len(ps.refs))]
        built.append((inputs, plan, rows, ref_row, summary))

    plains = [(inputs, plain_plan(plan), rows, sm) for inputs, plan, rows, _, sm in built]
    with torch.inference_mode():
        if use_session:
            import nnsight

            with model.session(remote=remote_arg):
                outs = [
                    kernels.traced_pass(model, inputs, sites, plan, rows, keep, True, route,
                                        sm["predict_at"], sm["nll_from"], sm["gold"])[0]
                    for inputs, plan, rows, sm in plains
                ]  # fmt: skip
                outs = nnsight.save(outs)
        else:
            outs = [
                kernels.traced_pass(model, inputs, sites, plan, rows, keep, False, route,
                                    sm["predict_at"], sm["nll_from"], sm["gold"])[0]
                for inputs, plan, rows, sm in plains
            ]  # fmt: skip

    for ps, (_, plan, _, ref_row, _), out in zip(passes, built, outs, strict=True):
        row_reads = _collect_reads(plan, out)
        stats = _collect_stats(plan, out)
        # Baseline-condition items (no edits) come from their prompt's reference row.
        for p in ps.owned:
            b = ref_row[p]
            for it in by_prompt[p]:
                if it.condition.edits:
                    continue
                top = int(out["top1"][b])
                yield ItemResult(
                    key=it.key,
                    sample_id=it.sample_id,
                    condition=it.condition.name,
                    kl=0.0,
                    top1_same=True,
                    top1_baseline=top,
                    top1_condition=top,
                    nll_baseline=float(out["nll"][b]),
                    nll_condition=float(out["nll"][b]),
                    n_tokens=int(out["ntok"][b]),
                    readings=(),
                    probe_baseline=_probe_of(row_reads, b, it),
                    probe_condition=_probe_of(row_reads, b, it),
                    logprobs=out["lp"][b].detach().cpu().clone() if keep else None,
                    edit_baseline={},
                    **_gold_fields(out, b, b, it),
                )
        for r, it in enumerate(ps.edited):
            b = ref_row[it.prompt]
            readings = []
            row_stats = stats.get(r, {})
            for e_idx, edit in enumerate(it.condition.edits):
                for layer in sorted(edit.layers):
                    where = (
                        f"sample {it.sample_id!r}, condition {it.condition.name!r}, layer {layer}"
                    )
                    if (e_idx, layer) not in row_stats:
                        raise missing_reading(where, e_idx, layer)
                    st = row_stats[(e_idx, layer)]
                    check_stats(st, edit, where, it.sample_id)
                    readings.append(edit_reading(edit, e_idx, layer, st))
            readings.sort(key=lambda x: (x.edit, x.layer))
            yield ItemResult(
                key=it.key,
                sample_id=it.sample_id,
                condition=it.condition.name,
                kl=float(out["kl"][r]),
                top1_same=int(out["top1"][r]) == int(out["top1_base"][r]),
                top1_baseline=int(out["top1_base"][r]),
                top1_condition=int(out["top1"][r]),
                nll_baseline=float(out["nll"][b]),
                nll_condition=float(out["nll"][r]),
                n_tokens=int(out["ntok"][r]),
                readings=tuple(readings),
                probe_baseline=_probe_of(row_reads, b, it),
                probe_condition=_probe_of(row_reads, r, it),
                logprobs=out["lp"][r].clone() if keep else None,
                edit_baseline=_edit_baseline(row_reads, b, it),
                dlogp_top1=float(out["dlogp"][r]),
                **_gold_fields(out, b, r, it),
            )


def _gold_fields(out: dict, base: int, row: int, item: Item) -> dict[str, Any]:
    """The readout columns of batch row ``row`` against its reference row ``base``: the gold
    token's log p and rank in both, and the baseline's top-1 probability."""
    fields: dict[str, Any] = {"p_top1_baseline": float(out["ptop1"][base])}
    if item.gold_token is not None:
        fields.update(
            gold_token=int(item.gold_token),
            logp_gold_baseline=float(out["lp_gold"][base]),
            logp_gold_condition=float(out["lp_gold"][row]),
            rank_gold_baseline=int(out["rank_gold"][base]),
            rank_gold_condition=int(out["rank_gold"][row]),
        )
    return fields


def _collect_reads(plan: dict[int, LayerPlan], out: dict) -> dict[int, dict[Edges, tuple]]:
    """row -> {edges: (level, mass)} from the saved read tensors."""
    reads: dict = {}
    for layer, lp in plan.items():
        if not lp.read_tags:
            continue
        t = out[kernels.result_key(kernels.READS, layer)]
        for i, (row, edges) in enumerate(lp.read_tags):
            reads.setdefault(row, {})[edges] = (
                float(t[i][kernels.RD_LEVEL]),
                float(t[i][kernels.RD_MASS]),
            )
    return reads


def _collect_stats(plan: dict[int, LayerPlan], out: dict) -> dict:
    """row -> {(edit index, layer): EditStats} from the saved stats tensors."""
    stats: dict = {}
    for layer, lp in plan.items():
        key = kernels.result_key(kernels.STATS, layer)
        if not lp.group_tags or key not in out:
            continue
        rows = out[key].tolist()
        for (row, e_idx), st in zip(lp.group_tags, rows, strict=True):
            stats.setdefault(row, {})[(e_idx, layer)] = EditStats.from_row(st)
    return stats


def _probe_of(reads: dict, row: int, item: Item) -> dict[int, tuple[float, float]]:
    if item.probe is None:
        return {}
    row_reads = reads.get(row, {})
    return {
        layer: row_reads[(layer, item.probe.sources, item.probe.targets)]
        for layer in item.probe.layers
    }


def _edit_baseline(reads: dict, row: int, item: Item) -> dict[tuple[int, int], tuple[float, float]]:
    row_reads = reads.get(row, {})
    out = {}
    for e_idx, edit in enumerate(item.condition.edits):
        for layer in edit.layers:
            out[(e_idx, layer)] = row_reads[(layer, edit.sources, edit.targets)]
    return out


def edit_reading(edit: AttentionEdit, e_idx: int, layer: int, st: EditStats) -> EditReading:
    """The reading of edit ``e_idx`` at ``layer`` from its checked stats row (also used by
    :func:`plip_nn.intervene`)."""
    return EditReading(
        edit=e_idx,
        layer=layer,
        op=edit.op.kind,
        level_before=st.level_before,
        level_after=st.level_after,
        mass_before=st.mass_before,
        mass_after=st.mass_after,
        max_error=st.max_error,
        error_ratio=st.error_ratio,
        target_rel_dev=None if math.isnan(st.target_rel_dev) else st.target_rel_dev,
    )
