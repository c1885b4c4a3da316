"""In-trace code: attention edits, their verification, and the summaries saved from a trace.

This module runs *inside* nnsight traces, including on NDIF's server sandbox, so it imports
only ``torch`` and ``math`` and takes plain tensors, ints, floats, lists and dicts -- never our
spec objects. A test imports it with every other import blocked.

Layouts (plain lists that travel to NDIF; their slots are named by the constants below):

* **group** -- one edit on one batch row: ``[row, heads, sources, targets, op, param]``
  (``G_*``). ``heads`` is a list of head indices or ``None`` (all heads), ``sources`` are
  query-row indices into ``q``, ``targets`` key indices into ``k``; ``op`` is
  :data:`KNOCKOUT`, :data:`SCALE` (``param`` = factor) or :data:`SET_VALUE` (``param`` = value).
* **read** -- edges whose attention is read: ``[row, sources, targets]`` (``R_*``).
* **site** -- where a layer's attention lives: ``(module_path, call_op, softmax_op,
  consumer_op, probs_arg)`` (``SITE_*``); ``consumer_op`` is the call that multiplies the
  probabilities with V and ``probs_arg`` their position among its arguments.
* **layer plan** -- ``{PLAN_EDITS: [group], PLAN_VERIFY: [group], PLAN_READS: [read]}``.
  ``PLAN_VERIFY`` names the groups whose effect is checked at this layer; it is the same list
  as ``PLAN_EDITS`` (kept apart so that the check never takes the write's word for it).
* **stats** -- one float row per verified group (``ST_*``, :data:`N_STATS` slots): levels and
  masses before/after (head-mean over all heads; level = mean over targets, averaged over the
  sources; mass = sum over targets), ``max_error`` (largest absolute deviation of the consumed
  weights from the expected rows), ``error_ratio`` (the largest deviation divided by its
  tolerance: the edit is verified iff it is <= 1) and ``n_bad`` (edges already masked, rows
  left with no allowed key). Generation prefixes ``[step, row, layer, edit]`` (``GEN_*``).
* **reads** -- one ``[level, mass]`` row per read (``RD_*``).
* **attribution** -- per read, one ``[estimate, level, mass]`` row per head (``A_*``,
  :data:`N_ATTR` slots): the first-order change of the metric when the read's edges are knocked
  out in that head alone, and that head's level and mass on them (:func:`knockout_attribution`).

Saved results of a traced pass live under one key scheme, :func:`result_key`: ``"stats/L"``,
``"reads/L"`` and ``"attr/L"`` per layer ``L`` plus the per-row summaries ``"nll"``, ``"ntok"``,
``"top1"``, ``"kl"``, ``"top1_base"``, ``"dlogp"`` and ``"lp"``.

**What is verified.** Softmax route: the probabilities the model multiplies with V (the input
of the consumer call, read after the model's own casts), for every head of every edited query
row, against the rows expected from the *unedited* pre-softmax scores with all of the layer's
groups applied in float64 (overlapping edits are checked on the final row). Mask route: the
attention call's output for every edited (row, head) against ``softmax(q kᵀ·scaling + mask +
requested edits) @ V`` recomputed in float64 from the call's own q, k, v and unedited mask.
Tolerances are relative to each value and to the dtype the model consumed.
"""

import math

import torch

KNOCKOUT = 0
SCALE = 1
SET_VALUE = 2

G_ROW, G_HEADS, G_SOURCES, G_TARGETS, G_OP, G_PARAM = 0, 1, 2, 3, 4, 5
R_ROW, R_SOURCES, R_TARGETS = 0, 1, 2
SITE_PATH, SITE_CALL, SITE_SOFTMAX, SITE_CONSUMER, SITE_PROBS_ARG = 0, 1, 2, 3, 4
(
    ST_LEVEL_BEFORE,
    ST_LEVEL_AFTER,
    ST_MASS_BEFORE,
    ST_MASS_AFTER,
    ST_MAX_ERROR,
    ST_ERROR_RATIO,
    ST_N_BAD,
) = 0, 1, 2, 3, 4, 5, 6
N_STATS = 7
RD_LEVEL, RD_MASS = 0, 1
GEN_STEP, GEN_ROW, GEN_LAYER, GEN_EDIT, GEN_STATS = 0, 1, 2, 3, 4

PLAN_EDITS = "edits"
PLAN_VERIFY = "verify"
PLAN_READS = "reads"
STATS = "stats"
READS = "reads"

ROUTE_SOFTMAX = "softmax"
ROUTE_MASK = "mask"


def result_key(kind: str, layer: int) -> str:
    """Key of a per-layer result (``kind``: :data:`STATS`, :data:`READS`, :data:`ATTR`): ``"stats/3"``."""
    return kind + "/" + str(layer)


def masked_threshold(dtype: torch.dtype) -> float:
    """Scores at or below this value count as masked (HF adds ``finfo.min`` to masked keys)."""
    return torch.finfo(dtype).min / 2


def relative_tolerance(consumed: torch.dtype, computed: torch.dtype) -> float:
    """Relative tolerance of a consumed weight: one rounding to ``consumed`` (half an ulp), one
    ulp of ``computed`` (the dtype the edit's input probabilities came in) and float32 slack."""
    eps32 = torch.finfo(torch.float32).eps
    extra = torch.finfo(computed).eps if computed != torch.float32 else 0.0
    return 0.5 * torch.finfo(consumed).eps + extra + 64 * eps32


def _heads(heads: list | None, n_heads: int, device) -> torch.Tensor:
    if heads is None:
        return torch.arange(n_heads, device=device)
    return torch.tensor(heads, device=device)


# ---------------------------------------------------------------------------------------------
# Pure edits ([batch, heads, q, k] tensors; only the group's rows are copied and written back)


def knockout_scores(scores: torch.Tensor, group: list, inplace: bool = False) -> torch.Tensor:
    """Set pre-softmax ``scores[row, heads, sources, targets] = -inf``.

    Returns a new tensor, or ``scores`` itself if ``inplace`` (then only the group's rows are
    touched: no ``[batch, heads, q, k]`` copy).
    """
    out = scores if inplace else scores.clone()
    h = _heads(group[G_HEADS], scores.shape[1], scores.device)[:, None]
    s = torch.tensor(group[G_SOURCES], device=scores.device)[None, :]
    k = torch.tensor(group[G_TARGETS], device=scores.device)
    rows = out[group[G_ROW], h, s, :]  # [h, S, K] (a copy)
    rows[:, :, k] = -math.inf
    out[group[G_ROW], h, s, :] = rows
    return out


def scale_probs(probs: torch.Tensor, group: list, inplace: bool = False) -> torch.Tensor:
    """Multiply the group's target weights by ``factor`` and renormalise the rows (float32).

    The new target mass follows the Scale formula (``plip_nn.edits.Scale.expected_mass``);
    ``f = 1`` is the identity, bitwise (renormalising would add rounding noise).
    """
    out = probs if inplace else probs.clone()
    factor = group[G_PARAM]
    if factor == 1.0:
        return out
    h = _heads(group[G_HEADS], probs.shape[1], probs.device)[:, None]
    s = torch.tensor(group[G_SOURCES], device=probs.device)[None, :]
    k = torch.tensor(group[G_TARGETS], device=probs.device)
    rows = out[group[G_ROW], h, s, :].float()  # [h, S, K]
    rows[:, :, k] = rows[:, :, k] * factor
    rows = rows / rows.sum(-1, keepdim=True)
    out[group[G_ROW], h, s, :] = rows.to(probs.dtype)
    return out


def set_value_probs(
    probs: torch.Tensor, scores: torch.Tensor, group: list, inplace: bool = False
) -> torch.Tensor:
    """Give each target edge exactly ``value``; the other allowed keys share ``1 - value*|T|``.

    Allowed keys are those whose pre-softmax score is not masked; non-target allowed keys keep
    their relative proportions (evenly, if they carry no probability at all); masked keys stay 0.
    """
    out = probs if inplace else probs.clone()
    value = group[G_PARAM]
    h = _heads(group[G_HEADS], probs.shape[1], probs.device)[:, None]
    s = torch.tensor(group[G_SOURCES], device=probs.device)[None, :]
    k = torch.tensor(group[G_TARGETS], device=probs.device)
    rows = out[group[G_ROW], h, s, :].float()  # [h, S, K]
    allowed = scores[group[G_ROW], h, s, :] > masked_threshold(scores.dtype)
    is_target = torch.zeros(rows.shape[-1], dtype=torch.bool, device=rows.device)
    is_target[k] = True
    others = allowed & ~is_target
    other_w = torch.where(others, rows, torch.zeros_like(rows))
    other_mass = other_w.sum(-1, keepdim=True)
    uniform = others.float() / others.sum(-1, keepdim=True).clamp(min=1)
    share = torch.where(other_mass > 0, other_w / other_mass.clamp(min=1e-38), uniform)
    edited = share * (1.0 - value * len(group[G_TARGETS]))
    edited[:, :, k] = value
    out[group[G_ROW], h, s, :] = edited.to(probs.dtype)
    return out


# ---------------------------------------------------------------------------------------------
# Verification: expected rows from the unedited scores, compared with what the model consumed


def edited_rows(groups: list) -> tuple[list, list]:
    """The distinct ``(row, source)`` pairs the groups edit, as two lists (sorted)."""
    pairs = sorted({(g[G_ROW], s) for g in groups for s in g[G_SOURCES]})
    return [p[0] for p in pairs], [p[1] for p in pairs]


def group_members(groups: list, rows: list, srcs: list, n_heads: int, n_keys: int, device) -> list:
    """Per group: (index list into the rows, row mask [N], head mask [H], target mask [K])."""
    where = {(b, s): i for i, (b, s) in enumerate(zip(rows, srcs, strict=False))}
    out = []
    for g in groups:
        idx = [where[(g[G_ROW], s)] for s in g[G_SOURCES]]
        rmask = torch.zeros(len(rows), dtype=torch.bool, device=device)
        rmask[idx] = True
        hmask = torch.zeros(n_heads, dtype=torch.bool, device=device)
        hmask[_heads(g[G_HEADS], n_heads, device)] = True
        tmask = torch.zeros(n_keys, dtype=torch.bool, device=device)
        tmask[g[G_TARGETS]] = True
        out.append((idx, rmask, hmask, tmask))
    return out


def expected_probs(
    scores_rows: torch.Tensor, groups: list, members: list, thresh: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``[N, H, K]`` the model should consume: float64 softmax of the unedited scores with
    every knockout applied, then every scale / set-value group in order.

    Returns ``(before, expected, allowed)``: the unedited probabilities, the expected ones, and
    the keys allowed after the knockouts.
    """
    sc = scores_rows.double()
    before = torch.softmax(sc, dim=-1)
    for g, (_idx, rmask, hmask, tmask) in zip(groups, members, strict=False):
        if g[G_OP] == KNOCKOUT:
            hit = rmask[:, None, None] & hmask[None, :, None] & tmask[None, None, :]
            sc = sc.masked_fill(hit, -math.inf)
    p = torch.softmax(sc, dim=-1)
    allowed = sc > thresh
    for g, (_idx, rmask, hmask, tmask) in zip(groups, members, strict=False):
        if g[G_OP] == KNOCKOUT:
            continue
        rows = (rmask[:, None] & hmask[None, :])[:, :, None]  # [N, H, 1]
        if g[G_OP] == SCALE:
            e = torch.where(tmask, p * g[G_PARAM], p)
            e = e / e.sum(-1, keepdim=True)
        else:
            others = allowed & ~tmask
            ow = torch.where(others, p, torch.zeros_like(p))
            om = ow.sum(-1, keepdim=True)
            uniform = others.double() / others.sum(-1, keepdim=True).clamp(min=1)
            share = torch.where(om > 0, ow / om.clamp(min=1e-300), uniform)
            e = share * (1.0 - g[G_PARAM] * len(g[G_TARGETS]))
            e = torch.where(tmask, torch.full_like(e, g[G_PARAM]), e)
        p = torch.where(rows, e, p)
    return before, p, allowed


def _level_mass(rows: torch.Tensor, tmask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Level and mass of ``rows`` [S, H, K] on the target keys (head-mean, source-mean)."""
    w = rows[:, :, tmask].mean(1)  # [S, T]
    return w.mean(-1).mean(), w.sum(-1).mean()


def compare(
    consumed: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute deviation and deviation / tolerance, elementwise (tolerance ``rtol*|e| + atol``
    for ``e != 0``; an expected 0 -- a knocked-out or masked key -- must be exactly 0)."""
    diff = (consumed.double() - expected).abs()
    tol = torch.where(expected != 0, rtol * expected.abs() + atol, torch.zeros_like(expected))
    over = torch.where(diff == 0, torch.zeros_like(diff), torch.full_like(diff, math.inf))
    ratio = torch.where(tol > 0, diff / tol.clamp(min=1e-300), over)
    ratio = torch.nan_to_num(
        ratio, nan=math.inf, posinf=math.inf
    )  # a NaN consumed weight never passes
    return diff, ratio


def verify_groups(
    scores_rows: torch.Tensor,
    consumed_rows: torch.Tensor,
    groups: list,
    members: list,
    thresh: float,
    rtol: float,
    atol: float,
) -> torch.Tensor:
    """Stats ``[n_groups, N_STATS]`` of groups whose rows the model consumed as ``consumed_rows``.

    ``scores_rows`` are the unedited pre-softmax scores of the edited rows ``[N, H, K]`` and
    ``consumed_rows`` the probabilities the model multiplied with V at the same rows.
    """
    before, expected, allowed = expected_probs(scores_rows, groups, members, thresh)
    consumed = consumed_rows.double()
    diff, ratio = compare(consumed, expected, rtol, atol)
    stats = []
    for g, (idx, _rmask, hmask, tmask) in zip(groups, members, strict=False):
        lb, mb = _level_mass(before[idx], tmask)
        la, ma = _level_mass(consumed[idx], tmask)
        own = scores_rows[idx][:, hmask, :]  # [S, h, K] unedited
        n_bad = (own[:, :, tmask] <= thresh).sum()
        if g[G_OP] == KNOCKOUT:
            n_bad = n_bad + (allowed[idx][:, hmask, :].sum(-1) == 0).sum()
        elif g[G_OP] == SET_VALUE:
            n_bad = n_bad + ((allowed[idx][:, hmask, :] & ~tmask).sum(-1) == 0).sum()
        stats.append(
            torch.stack([lb, la, mb, ma, diff[idx].max(), ratio[idx].max(), n_bad.double()]).float()
        )
    return torch.stack(stats)


def read_levels(probs: torch.Tensor, reads: list) -> torch.Tensor:
    """``[n_reads, 2]``: ``[level, mass]`` of each read's edges in ``probs`` (head-mean)."""
    out = []
    for r in reads:
        s = torch.tensor(r[R_SOURCES], device=probs.device)
        k = torch.tensor(r[R_TARGETS], device=probs.device)
        w = probs[r[R_ROW]][:, s, :][:, :, k].float().mean(0)  # [S, T]
        out.append(torch.stack([w.mean(-1).mean(), w.sum(-1).mean()]))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# The one in-trace edit site


def edit_site(
    model, site, edits: list, verify: list, reads: list, route: str = ROUTE_SOFTMAX
) -> tuple:
    """In-trace: apply ``edits`` at one layer's attention, verify ``verify``, read ``reads``.

    Callable inside any nnsight trace (or ``generate`` step) on ``model``, once per layer, in
    layer order. ``site`` is the layer's plain site tuple (``SITE_*``). Returns ``(stats
    [len(verify), N_STATS] or None, reads [len(reads), 2] or None)``; neither is saved (the
    caller saves what it keeps).
    """
    if route == ROUTE_MASK:
        return _mask_site(model, site, edits, verify, reads)
    call = getattr(model.get(site[SITE_PATH]).source, site[SITE_CALL])
    stats = None
    consumed = None
    if edits or verify:
        softmax = getattr(call.source, site[SITE_SOFTMAX])
        scores = softmax.input  # [B, H, Q, K] masked pre-softmax scores
        thresh = masked_threshold(scores.dtype)
        rows, srcs = edited_rows(verify)
        if verify:
            b_idx = torch.tensor(rows, device=scores.device)
            s_idx = torch.tensor(srcs, device=scores.device)
            scores_rows = scores[b_idx, :, s_idx, :].double()  # [N, H, K], before any write
        knock = [g for g in edits if g[G_OP] == KNOCKOUT]
        for g in knock:
            knockout_scores(scores, g, inplace=True)
        if knock:
            softmax.input = scores
        prob = [g for g in edits if g[G_OP] != KNOCKOUT]
        if prob:
            probs = softmax.output
            computed = probs.dtype
            for g in prob:
                if g[G_OP] == SCALE:
                    scale_probs(probs, g, inplace=True)
                else:
                    set_value_probs(probs, scores, g, inplace=True)
            softmax.output = probs
        else:
            computed = torch.float32
        consumer = getattr(call.source, site[SITE_CONSUMER])
        consumed = consumer.inputs[0][site[SITE_PROBS_ARG]]  # [B, H, Q, K] what multiplies V
        if verify:
            members = group_members(
                verify, rows, srcs, scores.shape[1], scores.shape[3], scores.device
            )
            rtol = relative_tolerance(consumed.dtype, computed)
            atol = torch.finfo(consumed.dtype).tiny
            stats = verify_groups(
                scores_rows, consumed[b_idx, :, s_idx, :], verify, members, thresh, rtol, atol
            )
    read = None
    if reads:
        if consumed is None:
            consumer = getattr(call.source, site[SITE_CONSUMER])
            consumed = consumer.inputs[0][site[SITE_PROBS_ARG]]
        read = read_levels(consumed, reads)
    return stats, read


# ---------------------------------------------------------------------------------------------
# Additive-mask route: for models that run SDPA (no probabilities to edit), Knockout and Scale
# are exact as additive edits of the attention mask passed to the attention function:
# softmax(s + log f on targets) = p * f / sum(p * f), and knockout is log 0 = -inf.


def float_mask(mask, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """An additive float mask ``[B|1, 1|H, Q, K]`` for whatever mask the model passed."""
    n_q, n_k = q.shape[2], k.shape[2]
    if mask is None:  # SDPA's is_causal fast path / single-row decode
        mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril(n_k - n_q)[None, None]
    if mask.dtype == torch.bool:  # True = attend
        neg = torch.finfo(q.dtype).min
        return torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, neg)
    return mask[:, :, :, :n_k]


def mask_scores(q, k, mask, rows: list, srcs: list, scaling: float, softcap) -> torch.Tensor:
    """Float64 pre-softmax scores ``[N, H, K]`` of the query rows ``(rows[i], srcs[i])``.

    ``q`` is ``[B, H, Q, D]``, ``k`` ``[B, Hkv, K, D]``, ``mask`` additive ``[B|1, 1|H, Q, K]``.
    """
    rep = q.shape[1] // k.shape[1]
    b = torch.tensor(rows, device=q.device)
    s = torch.tensor(srcs, device=q.device)
    keys = torch.repeat_interleave(k[b], rep, dim=1).double()  # [N, H, K, D]
    scores = torch.matmul(q[b, :, s, :].double()[:, :, None, :], keys.transpose(2, 3))[:, :, 0]
    scores = scores * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    mb = b if mask.shape[0] > 1 else torch.zeros_like(b)
    return scores + mask[mb, :, s, :].double()  # [N, 1|H, K] broadcasts over heads


def edit_mask(full: torch.Tensor, group: list) -> torch.Tensor:
    """Add ``-inf`` (knockout) or ``log f`` (scale) to the group's entries of an additive mask
    ``[B, H, Q, K]``, in place (``full`` is the engine's own expanded copy)."""
    add = -math.inf if group[G_OP] == KNOCKOUT else math.log(group[G_PARAM])
    h = _heads(group[G_HEADS], full.shape[1], full.device)[:, None]
    s = torch.tensor(group[G_SOURCES], device=full.device)[None, :]
    t = torch.tensor(group[G_TARGETS], device=full.device)
    block = full[group[G_ROW], h, s, :]
    block[:, :, t] = block[:, :, t] + add
    full[group[G_ROW], h, s, :] = block
    return full


def _mask_site(model, site, edits: list, verify: list, reads: list) -> tuple:
    """:func:`edit_site` for the additive-mask route (knockout and scale only).

    Edits the ``attention_mask`` argument of the layer's attention-function call, then checks
    the call's output rows ``[B, Q, H, D]`` for every edited (row, head) against ``P @ V`` with
    ``P = softmax(q kᵀ·scaling + unedited mask + requested edits)`` in float64, within
    ``tol = (eps·(1 + max|score|) + 64·eps32)·(|P| @ |V|) + tiny`` (a bound on a dot product of
    rounded scores and probabilities). Levels after the edit come from that verified ``P``;
    reads come from ``softmax(q kᵀ·scaling + mask as passed)``.
    """
    call = getattr(model.get(site[SITE_PATH]).source, site[SITE_CALL])
    args, kwargs = call.inputs
    q, k, v = args[1], args[2], args[3]
    mask = args[4] if len(args) > 4 else kwargs.get("attention_mask")
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = q.shape[-1] ** -0.5
    softcap = kwargs.get("softcap")
    base_mask = float_mask(mask, q, k)
    cur = base_mask
    if edits:
        full = base_mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2]).clone()
        for g in edits:
            edit_mask(full, g)
        if len(args) > 4:
            call.inputs = ((*args[:4], full, *args[5:]), kwargs)
        else:
            kw = dict(kwargs)
            kw["attention_mask"] = full
            call.inputs = (args, kw)
        cur = full
    read = None
    if reads:  # from the mask as passed on (before the call's output is touched)
        out_reads = []
        for r in reads:
            srcs_r = r[R_SOURCES]
            sc_r = mask_scores(q, k, cur, [r[R_ROW]] * len(srcs_r), srcs_r, scaling, softcap)
            w = torch.softmax(sc_r, dim=-1)[:, :, r[R_TARGETS]].mean(1)  # [S, T]
            out_reads.append(torch.stack([w.mean(-1).mean(), w.sum(-1).mean()]).float())
        read = torch.stack(out_reads)
    stats = None
    if verify:
        rows, srcs = edited_rows(verify)
        n_heads, n_keys = q.shape[1], k.shape[2]
        members = group_members(verify, rows, srcs, n_heads, n_keys, q.device)
        sc = mask_scores(q, k, base_mask, rows, srcs, scaling, softcap).expand(-1, n_heads, -1)
        thresh = masked_threshold(q.dtype)
        # Scale(f) on probabilities == adding log f to the score (the route's premise).
        sc_edit = sc.clone()
        for g, (_idx, rmask, hmask, tmask) in zip(verify, members, strict=False):
            hit = rmask[:, None, None] & hmask[None, :, None] & tmask[None, None, :]
            add = -math.inf if g[G_OP] == KNOCKOUT else math.log(g[G_PARAM])
            sc_edit = torch.where(hit, sc_edit + add, sc_edit)
        p = torch.softmax(sc_edit, dim=-1)  # [N, H, K] float64
        b = torch.tensor(rows, device=q.device)
        s = torch.tensor(srcs, device=q.device)
        rep = q.shape[1] // v.shape[1]
        vals = torch.repeat_interleave(v[b], rep, dim=1).double()  # [N, H, K, D]
        ref = torch.matmul(p[:, :, None, :], vals)[:, :, 0]  # [N, H, D]
        bound = torch.matmul(p.abs()[:, :, None, :], vals.abs())[:, :, 0]
        out = call.output[0][b, s].double()  # [N, H, D]
        allowed_sc = torch.where(sc > thresh, sc.abs(), torch.zeros_like(sc))
        eps = torch.finfo(q.dtype).eps
        rtol = eps * (1.0 + float(allowed_sc.max())) + 64 * torch.finfo(torch.float32).eps
        diff = (out - ref).abs()
        ratio = diff / (rtol * bound + torch.finfo(q.dtype).tiny)
        ratio = torch.nan_to_num(ratio, nan=math.inf, posinf=math.inf)
        before = torch.softmax(sc, dim=-1)
        allowed = sc_edit > thresh
        rows_stats = []
        for idx, _rmask, hmask, tmask in members:
            lb, mb = _level_mass(before[idx], tmask)
            la, ma = _level_mass(p[idx], tmask)
            n_bad = (sc[idx][:, hmask][:, :, tmask] <= thresh).sum()
            n_bad = n_bad + (allowed[idx][:, hmask, :].sum(-1) == 0).sum()
            rows_stats.append(
                torch.stack(
                    [lb, la, mb, ma, diff[idx].max(), ratio[idx].max(), n_bad.double()]
                ).float()
            )
        stats = torch.stack(rows_stats)
    return stats, read


# ---------------------------------------------------------------------------------------------
# Output summaries and passes


def last_logprobs(logits: torch.Tensor, positions: list | None = None) -> torch.Tensor:
    """log-softmax in float32 at each row's prediction position: ``[batch, seq, vocab] ->
    [batch, vocab]``. ``positions`` (one padded position per row) default to the last one."""
    if positions is None:
        return torch.log_softmax(logits[:, -1, :].float(), dim=-1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    at = torch.tensor(positions, device=logits.device)
    return torch.log_softmax(logits[rows, at, :].float(), dim=-1)


def kl_rows(logp_base: torch.Tensor, logp_cond: torch.Tensor) -> torch.Tensor:
    """KL(P_base || P_cond) per row in nats, float64: ``sum p_base * (log p_base - log p_cond)``.

    Both inputs are renormalised in float64 first: float32 log-probs do not sum to exactly 1 in
    float64, which would let a KL near 0 come out slightly negative.
    """
    pb = torch.log_softmax(logp_base.double(), dim=-1)
    pc = torch.log_softmax(logp_cond.double(), dim=-1)
    terms = torch.where(pb > -math.inf, pb.exp() * (pb - pc), torch.zeros_like(pb))
    return terms.sum(-1)


def token_nll(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    start: list | None = None,
) -> tuple:
    """Sum and count of the negative log-likelihood of each row's own tokens.

    Position ``i`` predicts token ``i + 1``; padded positions (mask 0) are excluded on both sides,
    and with ``start`` (one padded position per row) so are the predictions made before it (only
    tokens after ``start`` count: an edit of rows from the marker on can change only those).
    ``-log p = logsumexp(logits) - logits[token]`` in float32, one batch row at a time, so no
    ``[batch, seq, vocab]`` float32 log-softmax is ever held (only one row's ``[seq, vocab]``).
    Returns ``(nll_sum [batch] float64, n_tokens [batch] int64)``.
    """
    nxt = input_ids[:, 1:]
    valid = (attention_mask[:, 1:] > 0) & (attention_mask[:, :-1] > 0)
    if start is not None:
        pos = torch.arange(valid.shape[1], device=valid.device)[None, :]
        valid = valid & (pos >= torch.tensor(start, device=valid.device)[:, None])
    per_row = []
    for b in range(logits.shape[0]):
        row = logits[b, :-1, :]  # [seq-1, vocab], a view
        lse = torch.logsumexp(row.float(), dim=-1)
        tok = row.gather(-1, nxt[b][:, None])[:, 0].float()
        per_row.append((lse - tok).double())
    nll = torch.stack(per_row)
    nll = torch.where(valid, nll, torch.zeros_like(nll)).sum(-1)
    return nll, valid.sum(-1)


def output_summaries(
    model,
    inputs: dict,
    out: dict,
    base_rows,
    keep: bool,
    in_session: bool,
    predict_at: list | None = None,
    nll_from: list | None = None,
) -> torch.Tensor:
    """In-trace: NLL, top-1 and (with ``base_rows``) KL / top-1 / greedy log-prob change against
    reference rows, at each row's prediction position (``predict_at``, padded; default last).

    ``"dlogp"`` is ``log p_cond(t) - log p_base(t)`` for the reference row's top-1 token ``t``.
    Fills ``out`` with saved values and returns the prediction-position log-probs.
    """
    logits = model.output.logits
    lp_last = last_logprobs(logits, predict_at)
    nll, ntok = token_nll(logits, inputs["input_ids"], inputs["attention_mask"], nll_from)
    out["nll"] = nll.cpu().save()
    out["ntok"] = ntok.cpu().save()
    out["top1"] = lp_last.argmax(-1).cpu().save()
    if base_rows is not None:
        ref = lp_last[base_rows]
        top_ref = ref.argmax(-1)
        out["kl"] = kl_rows(ref, lp_last).cpu().save()
        out["top1_base"] = top_ref.cpu().save()
        gain = lp_last.gather(-1, top_ref[:, None]) - ref.gather(-1, top_ref[:, None])
        out["dlogp"] = gain[:, 0].double().cpu().save()
    if keep:
        out["lp"] = lp_last.cpu().save()
    if not in_session:
        lp_last = lp_last.save()
    return lp_last


def traced_pass(
    model,
    inputs: dict,
    sites: list,
    plan: dict,
    base_rows,
    keep: bool,
    in_session: bool,
    route: str = ROUTE_SOFTMAX,
    predict_at: list | None = None,
    nll_from: list | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One nnsight trace applying ``plan`` (layer -> layer plan) and computing the summaries.

    ``sites[layer]`` is the layer's plain site tuple. With ``base_rows`` it also computes KL and
    top-1 agreement of each batch row against row ``base_rows[row]`` of the same pass (an
    unedited row of the same prompt: same shapes and padding, so an identity edit gives a KL
    of exactly 0). ``predict_at`` / ``nll_from``: per row, the padded position whose
    next-token distribution is summarised, and the first prediction counted in the NLL
    (:func:`output_summaries`). Returns ``(saved results under the key scheme, prediction-
    position log-probs)``; inside a session the log-probs stay on the server and only come
    back if ``keep``.
    """
    out = {}
    with model.trace(inputs):
        for layer in sorted(plan):
            lp = plan[layer]
            stats, reads = edit_site(
                model, sites[layer], lp[PLAN_EDITS], lp[PLAN_VERIFY], lp[PLAN_READS], route
            )
            if stats is not None:
                out[result_key(STATS, layer)] = stats.cpu().save()
            if reads is not None:
                out[result_key(READS, layer)] = reads.cpu().save()
        lp_last = output_summaries(
            model, inputs, out, base_rows, keep, in_session, predict_at, nll_from
        )
    return out, lp_last


def ends_with(buf: list, seq: list) -> bool:
    """Whether token list ``buf`` ends with the (non-empty) token sequence ``seq``."""
    n = len(seq)
    return n > 0 and len(buf) >= n and buf[len(buf) - n :] == seq


def generation_pass(
    model,
    inputs: dict,
    sites: list,
    embed_path: str,
    rows: list,
    n_steps: int,
    gen_kwargs: dict,
) -> tuple[torch.Tensor, list]:
    """One nnsight ``generate`` with edits re-applied at every step (KV cache on).

    ``rows[r]`` describes batch row ``r``: ``{"edits": [[layers, heads, targets, op, param],
    ...], "sources": [...], "policy": "markers" | "continuation", "markers": [[ids], ...]}`` in
    padded coordinates. At step 0 (prefill) the prompt source rows are edited (with
    ``continuation``: every row from the first source on). At step ``i >= 1`` the single new
    query row (absolute position ``prompt_len + i - 1``) is edited if ``continuation`` or if the
    tokens generated so far end with one of the row's marker sequences (that row is the marker's
    last token). Returns ``(sequences, stats)``; a ``stats`` row is ``[step, row, layer, edit
    index, *stats]`` (``GEN_*`` then ``ST_*`` shifted by :data:`GEN_STATS`).
    """
    layers = sorted({layer for row in rows for e in row["edits"] for layer in e[0]})
    with model.generate(
        inputs, max_new_tokens=n_steps, min_new_tokens=n_steps, **gen_kwargs
    ) as tracer:
        stats = list().save()
        generated = [[] for _ in rows]
        for step in tracer.iter[:n_steps]:
            ids = model.get(embed_path).input
            q_len = ids.shape[1]
            active = []  # per row: query-row indices to edit at this step
            for r, row in enumerate(rows):
                if step == 0:
                    if not row["sources"]:
                        active.append([])
                    elif row["policy"] == "continuation":
                        active.append(list(range(min(row["sources"]), q_len)))
                    else:
                        active.append(list(row["sources"]))
                else:
                    generated[r].append(int(ids[r, -1]))
                    hit = row["policy"] == "continuation" and len(row["sources"]) > 0
                    for seq in row["markers"]:
                        if ends_with(generated[r], seq):
                            hit = True
                    active.append([q_len - 1] if hit else [])
            for layer in layers:
                groups = []
                tags = []
                for r, row in enumerate(rows):
                    if not active[r]:
                        continue
                    for e_idx, e in enumerate(row["edits"]):
                        if layer in e[0]:
                            groups.append([r, e[1], active[r], e[2], e[3], e[4]])
                            tags.append([r, e_idx])
                if not groups:
                    continue
                st, _ = edit_site(model, sites[layer], groups, groups, [])
                for tag, vals in zip(tags, st.tolist(), strict=False):
                    stats.append([step, tag[0], layer, tag[1], *vals])
        sequences = tracer.result.save()
    return sequences, stats


# ---------------------------------------------------------------------------------------------
# Attribution: the first-order effect of knocking out one head's edges, from one backward pass

ATTR = "attr"
A_ESTIMATE, A_LEVEL, A_MASS = 0, 1, 2
N_ATTR = 3


def knockout_attribution(
    scores: torch.Tensor, probs: torch.Tensor, grad: torch.Tensor, reads: list
) -> torch.Tensor:
    """``[n_reads, heads, N_ATTR]``: per head, the estimated change of the metric when the
    read's edges are knocked out in that head alone, and the head's level and mass on them.

    ``scores`` are the unedited pre-softmax scores ``[B, H, Q, K]``, ``probs`` the softmax's
    output and ``grad`` the metric's gradient with respect to it (same shape). The knocked-out
    rows are exact -- the float64 softmax of the scores with the targets at ``-inf`` -- so the
    only linearisation is downstream of the probabilities (AtP with the exact pattern change):
    ``estimate[h] = sum_{s, k} grad[h, s, k] * (p_ko - p)[h, s, k]``. A row left without an
    allowed key (every key it may attend to is a target) gives NaN; the host raises, as
    :func:`plip_nn.plan.check_stats` does for the knockout itself. ``level``/``mass`` are those of
    :func:`read_levels` for one head: mean / sum over targets of the consumed weights, mean over
    the sources.
    """
    out = []
    for r in reads:
        b = r[R_ROW]
        s = torch.tensor(r[R_SOURCES], device=scores.device)
        k = torch.tensor(r[R_TARGETS], device=scores.device)
        sc = scores[b][:, s, :].double()  # [H, S, K]
        p = torch.softmax(sc, dim=-1)
        ko = sc.clone()
        ko[:, :, k] = -math.inf
        delta = torch.softmax(ko, dim=-1) - p  # [H, S, K], exact pattern change
        est = (delta * grad[b][:, s, :].double()).sum(-1).sum(-1)  # [H]
        # A row whose every allowed key is a target would attend to masked keys: no estimate.
        empty = (ko <= masked_threshold(scores.dtype)).all(-1).any(-1)  # [H]
        est = torch.where(empty, torch.full_like(est, math.nan), est)
        w = probs[b][:, s, :][:, :, k].double()  # [H, S, T]
        out.append(torch.stack([est, w.mean(-1).mean(-1), w.sum(-1).mean(-1)], dim=-1))
    return torch.stack(out)


def attribution_pass(
    model, inputs: dict, sites: list, reads: dict, predict_at: list
) -> dict[str, torch.Tensor]:
    """One forward and one backward pass: :func:`knockout_attribution` at every layer of
    ``reads`` (layer -> [read]) for the metric ``sum_rows logodds(top-1)`` at each row's
    prediction position (``predict_at``, padded), the top-1 of the same pass.

    ``logodds = log p(top-1) - log(1 - p(top-1))``: unlike ``log p`` its gradient does not
    vanish when the model is confident (the host maps the estimate back to ``log p``, see
    :mod:`plip_nn.attribution`). Rows of a batch are independent, so the gradient of the sum is
    each row's own gradient. The backward computes gradients for the probabilities only
    (``inputs=``), never for the weights. Needs gradient tracking (the caller leaves inference
    mode). Saves ``"top1"``, ``"lp_top1"``, ``"logodds"`` and ``"attr/L"`` per layer.
    """
    out = {}
    layers = sorted(reads)
    with model.trace(inputs):
        captured = {}
        for layer in layers:
            call = getattr(model.get(sites[layer][SITE_PATH]).source, sites[layer][SITE_CALL])
            softmax = getattr(call.source, sites[layer][SITE_SOFTMAX])
            captured[layer] = (softmax.input, softmax.output)
        lp = last_logprobs(model.output.logits, predict_at)
        top = lp.argmax(-1)
        chosen = lp.gather(-1, top[:, None])[:, 0]  # [batch]
        rest = torch.logsumexp(lp.scatter(-1, top[:, None], -math.inf), dim=-1)  # log(1 - p)
        logodds = chosen - rest
        out["top1"] = top.cpu().save()
        out["lp_top1"] = chosen.detach().double().cpu().save()
        out["logodds"] = logodds.detach().double().cpu().save()
        with logodds.sum().backward(inputs=[captured[layer][1] for layer in layers]):
            for layer in reversed(layers):  # gradients arrive in reverse order
                scores, probs = captured[layer]
                attr = knockout_attribution(scores.detach(), probs.detach(), probs.grad,
                                            reads[layer])  # fmt: skip
                out[result_key(ATTR, layer)] = attr.cpu().save()
    return out
