"""In-trace code: attention edits, their verification, and the summaries saved from a trace.

This module runs *inside* nnsight traces, including on NDIF's server sandbox, so it imports
only ``torch`` and ``math`` and takes plain tensors, ints, floats, lists and dicts -- never our
spec objects. A test imports it with every other import blocked.

Layouts (plain lists that travel to NDIF; their slots are named by the constants below):

* **group** -- one edit on one batch row: ``[row, heads, sources, targets, op, param, keep]``
  (``G_*``). ``heads`` is a list of head indices or ``None`` (all heads), ``sources`` are
  query-row indices into ``q``, ``targets`` key indices into ``k``; ``op`` is
  :data:`KNOCKOUT`, :data:`SCALE` (``param`` = factor), :data:`SET_VALUE` (``param`` = value)
  or :data:`INERT` (the targets are zeroed post-softmax and their mass goes to the allowed keys
  outside ``keep``, key indices whose weights stay unchanged). ``keep`` may be left out (no
  protected keys).
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
  tolerance: the edit is verified iff it is <= 1), ``n_bad`` (edges already masked, rows
  left with no allowed key) and ``target_rel_dev`` (Inert: the largest relative change of a
  protected key's consumed weight from its weight before the edit, over the group's rows and
  heads; NaN for other ops). Generation prefixes ``[step, row, layer, edit]`` (``GEN_*``).
* **reads** -- one ``[level, mass]`` row per read (``RD_*``).
* **attribution** -- per read, one ``[estimate, level, mass]`` row per head (``A_*``,
  :data:`N_ATTR` slots): the first-order change of the metric when the read's edges are knocked
  out in that head alone, and that head's level and mass on them (:func:`knockout_attribution`).
* **generation row** -- one batch row of a generation: ``{ROW_EDITS: [edit], ROW_SOURCES:
  [int], ROW_POLICY: POLICY_MARKERS | POLICY_CONTINUATION | POLICY_TO_CALL, ROW_MARKERS:
  [[token ids]], ROW_CALL: call}``; an edit is ``[layers, heads, targets, op, param, keep]``
  (``E_*``), a call ``[name, language, texts]`` (``C_*``; ``texts[id]`` is token ``id``'s
  text) or ``[]``. Which rows a step edits is :func:`policy_rows` (the one definition of the
  source policies).

**Vectorised.** A layer's groups become a few flat index lists in plain Python
(:func:`edge_index`), and every group is then edited -- and verified -- by the same handful of
tensor ops (one scatter per operation, a float64 verification of all edited rows at once),
so the cost per layer does not grow with the number of groups in a batch.

Saved results of a traced pass live under one key scheme, :func:`result_key`: ``"stats/L"``,
``"reads/L"`` and ``"attr/L"`` per layer ``L`` plus the per-row summaries ``"nll"``, ``"ntok"``,
``"top1"``, ``"kl"``, ``"top1_base"``, ``"dlogp"``, ``"ptop1"`` (p of the row's top-1),
``"lp_gold"``, ``"rank_gold"`` (the gold token's log p and rank) and ``"lp"``.

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
INERT = 3

G_ROW, G_HEADS, G_SOURCES, G_TARGETS, G_OP, G_PARAM, G_KEEP = 0, 1, 2, 3, 4, 5, 6
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
    ST_TARGET_REL_DEV,
) = 0, 1, 2, 3, 4, 5, 6, 7
N_STATS = 8
RD_LEVEL, RD_MASS = 0, 1
GEN_STEP, GEN_ROW, GEN_LAYER, GEN_EDIT, GEN_STATS = 0, 1, 2, 3, 4
E_LAYERS, E_HEADS, E_TARGETS, E_OP, E_PARAM, E_KEEP = 0, 1, 2, 3, 4, 5
L_OP, L_PARAM, L_SOURCES, L_TARGETS = 0, 1, 2, 3
ROW_EDITS, ROW_SOURCES, ROW_POLICY, ROW_MARKERS = "edits", "sources", "policy", "markers"
ROW_CALL = "call"
POLICY_MARKERS, POLICY_CONTINUATION, POLICY_TO_CALL = "markers", "continuation", "to_call"
C_NAME, C_LANGUAGE, C_TEXTS = 0, 1, 2

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


_EPS = {dt: torch.finfo(dt).eps for dt in (torch.float16, torch.bfloat16, torch.float32)}


def _eps(dtype: torch.dtype) -> float:
    return _EPS[dtype] if dtype in _EPS else torch.finfo(dtype).eps


def relative_tolerance(consumed: torch.dtype, computed: torch.dtype) -> float:
    """Relative tolerance of a consumed weight: one rounding to ``consumed`` (half an ulp), one
    ulp of ``computed`` (the dtype the edit's input probabilities came in) and float32 slack."""
    extra = _eps(computed) if computed != torch.float32 else 0.0
    return 0.5 * _eps(consumed) + extra + 64 * _eps(torch.float32)


# ---------------------------------------------------------------------------------------------
# Index helpers: the groups of a layer become a few flat index lists (plain Python), so that
# every group is edited and verified by the same handful of tensor ops, however many there are.


def edited_rows(groups: list) -> tuple[list, list]:
    """The distinct ``(row, source)`` pairs the groups edit, as two lists (sorted)."""
    return edge_rows(group_edges(groups))


def edge_rows(edges: list) -> tuple[list, list]:
    """The distinct ``(row, source)`` query rows of ``[row, sources, targets]`` edges (sorted)."""
    pairs = sorted({(e[0], s) for e in edges for s in e[1]})
    return [p[0] for p in pairs], [p[1] for p in pairs]


def edge_index(edges: list, rows: list, srcs: list, device) -> tuple:
    """Flat index tensors (int64) over ``edges`` (each ``[row, sources, targets]``).

    ``rows``/``srcs`` list the distinct query rows (:func:`edge_rows`); ``n`` below indexes
    them. Returns ``(e_row, e_key, e_item, e_src, s_row, s_item)``: for every (source, target)
    edge its ``n``, its key, its item and the index of its (item, source) pair; for every
    (item, source) pair its ``n`` and its item. Built in plain Python, then two tensors.
    """
    where = {(b, s): i for i, (b, s) in enumerate(zip(rows, srcs, strict=False))}
    e_row: list = []
    e_key: list = []
    e_item: list = []
    e_src: list = []
    s_row: list = []
    s_item: list = []
    for i, edge in enumerate(edges):
        targets = list(edge[2])
        n_t = len(targets)
        for s in edge[1]:
            n = where[(edge[0], s)]
            e_src.extend([len(s_row)] * n_t)
            s_row.append(n)
            s_item.append(i)
            e_row.extend([n] * n_t)
            e_key.extend(targets)
            e_item.extend([i] * n_t)
    e = torch.tensor([e_row, e_key, e_item, e_src], dtype=torch.long, device=device)
    p = torch.tensor([s_row, s_item], dtype=torch.long, device=device)
    return e[0], e[1], e[2], e[3], p[0], p[1]


def group_edges(groups: list) -> list:
    """``[row, sources, targets]`` of each group (the input of :func:`edge_index`)."""
    return [[g[G_ROW], g[G_SOURCES], g[G_TARGETS]] for g in groups]


def keep_edges(groups: list) -> list:
    """``[row, sources, keep]`` of each group (no keys where a group has no ``keep`` slot); its
    :func:`edge_index` has the same (item, source) pairs as that of :func:`group_edges`."""
    return [[g[G_ROW], g[G_SOURCES], g[G_KEEP] if len(g) > G_KEEP else []] for g in groups]


def read_edges(reads: list) -> list:
    """``[row, sources, targets]`` of each read (the input of :func:`edge_index`)."""
    return [[r[R_ROW], r[R_SOURCES], r[R_TARGETS]] for r in reads]


def head_mask(groups: list, n_heads: int, device) -> torch.Tensor:
    """``[groups, heads]`` bool: the heads each group edits (``None``: all)."""
    mask = torch.ones(len(groups), n_heads, dtype=torch.bool, device=device)
    named = [g for g, grp in enumerate(groups) if grp[G_HEADS] is not None]
    if named:
        mask[torch.tensor(named, device=device)] = False
        g_idx = [g for g in named for _ in groups[g][G_HEADS]]
        h_idx = [h for g in named for h in groups[g][G_HEADS]]
        mask[torch.tensor(g_idx, device=device), torch.tensor(h_idx, device=device)] = True
    return mask


def edge_sum(index: tuple, heads: torch.Tensor, values: torch.Tensor, shape: tuple, dtype):
    """``[N, H, K]``: at each (query row, head, key), the sum of ``values[item]`` over the
    groups whose edges hit it on their heads (``index`` from :func:`edge_index`)."""
    e_row, e_key, e_item = index[0], index[1], index[2]
    n, h, k = shape
    out = torch.zeros(n, k, h, dtype=dtype, device=heads.device)  # [N, K, H]: one index_put
    vals = heads[e_item].to(dtype) * values.to(dtype)[e_item][:, None]  # [E, H]
    out.index_put_((e_row, e_key), vals, accumulate=True)
    return out.permute(0, 2, 1)


def row_sum(index: tuple, heads: torch.Tensor, values: torch.Tensor, n_rows: int, dtype):
    """``[N, H]``: at each (query row, head), the sum of ``values[item]`` over the groups that
    edit it (their sources, their heads)."""
    s_row, s_item = index[4], index[5]
    out = torch.zeros(n_rows, heads.shape[1], dtype=dtype, device=heads.device)
    vals = heads[s_item].to(dtype) * values.to(dtype)[s_item][:, None]
    out.index_put_((s_row,), vals, accumulate=True)
    return out


def op_runs(groups: list) -> list:
    """Indices of ``groups`` in runs of one operation, to apply one run after another.

    Equivalent to applying the groups one by one in order: a group joins the earliest run
    after every earlier group it does not commute with -- one that shares a ``(row,
    source)`` query row and is not a Scale meeting a Scale (factors multiply; SetValue on a
    shared row depends on the order). Groups on different rows share runs, so a batch whose
    rows carry different conditions needs one run per operation, not one per row.
    """
    last: dict = {}  # (row, source) -> (level, op) of the latest group on it
    runs: dict = {}
    for g, grp in enumerate(groups):
        op = grp[G_OP]
        keys = [(grp[G_ROW], s) for s in grp[G_SOURCES]]
        level = 0
        for key in keys:
            if key in last:
                before, before_op = last[key]
                level = max(level, before if before_op == op == SCALE else before + 1)
        for key in keys:
            last[key] = (level, op)
        runs.setdefault((level, op), []).append(g)
    return [runs[k] for k in sorted(runs)]


def _index(rows: list, srcs: list, device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(rows, device=device), torch.tensor(srcs, device=device)


def layout(groups: list, rows: list, srcs: list, n_heads: int, device) -> tuple:
    """``(index, heads, info)`` of a layer's groups, built once and shared by every op on them:
    the :func:`edge_index` tensors, the :func:`head_mask` ``[G, H]`` and ``info`` ``[G, 4]``
    float64 columns ``op, param, n_sources, n_targets`` (``L_*``)."""
    index = edge_index(group_edges(groups), rows, srcs, device)
    info = torch.tensor(
        [
            [float(g[G_OP]), float(g[G_PARAM]), float(len(g[G_SOURCES])), float(len(g[G_TARGETS]))]
            for g in groups
        ],
        dtype=torch.float64,
        device=device,
    ).reshape(len(groups), 4)
    return index, head_mask(groups, n_heads, device), info


def _member(groups: list, chosen: list, device) -> torch.Tensor:
    """``[G]`` float64: 1 for the groups at the indices ``chosen``, else 0."""
    picked = set(chosen)
    return torch.tensor(
        [1.0 if g in picked else 0.0 for g in range(len(groups))],
        dtype=torch.float64,
        device=device,
    )


def _log_f(member: torch.Tensor, info: torch.Tensor) -> torch.Tensor:
    """``[G]``: ``log factor`` of the member (Scale) groups, 0 elsewhere (never ``0 * -inf``)."""
    return torch.where(member > 0, info[:, L_PARAM].clamp(min=1e-300).log(), 0.0)


# ---------------------------------------------------------------------------------------------
# Edits: every group of a layer at once; only the edited query rows are gathered and written


def apply_knockouts(scores: torch.Tensor, groups: list) -> torch.Tensor:
    """In place: pre-softmax ``scores[row, heads, sources, targets] = -inf`` for every knockout
    group in ``groups`` (others are ignored). ``scores`` is ``[batch, heads, q, k]``."""
    knock = [g for g in groups if g[G_OP] == KNOCKOUT]
    if not knock:
        return scores
    dev = scores.device
    rows, srcs = edited_rows(knock)
    index, heads, info = layout(knock, rows, srcs, scores.shape[1], dev)
    shape = (len(rows), scores.shape[1], scores.shape[3])
    hit = edge_sum(index, heads, torch.ones_like(info[:, 0]), shape, torch.float32) > 0
    b, s = _index(rows, srcs, dev)
    scores[b, :, s, :] = scores[b, :, s, :].masked_fill(hit, -math.inf)  # [N, H, K] rows
    return scores


def apply_prob_edits(
    probs: torch.Tensor, scores: torch.Tensor | None, groups: list
) -> torch.Tensor:
    """In place: every Scale, SetValue and Inert group on the post-softmax ``probs``, in order.

    Computed in float32 on the gathered query rows and cast back. Scale multiplies the target
    weights by ``f`` and renormalises the row (``f = 1`` leaves it bitwise unchanged);
    SetValue gives each target exactly ``v`` and lets the other allowed keys (pre-softmax
    ``scores`` above :func:`masked_threshold`, after knockouts) keep their proportions; Inert
    zeroes the targets and gives their mass to the allowed keys outside ``keep``
    (:func:`inert_rows`).
    """
    edits = [
        g for g in groups if g[G_OP] != KNOCKOUT and not (g[G_OP] == SCALE and g[G_PARAM] == 1.0)
    ]
    if not edits:
        return probs
    dev = probs.device
    rows, srcs = edited_rows(edits)
    b, s = _index(rows, srcs, dev)
    shape = (len(rows), probs.shape[1], probs.shape[3])
    index, heads, info = layout(edits, rows, srcs, shape[1], dev)
    p = probs[b, :, s, :].float()  # [N, H, K]
    allowed = None
    for run in op_runs(edits):
        member = _member(edits, run, dev)
        touched = row_sum(index, heads, member, shape[0], torch.float32)[..., None] > 0
        if edits[run[0]][G_OP] == SCALE:
            factor = edge_sum(index, heads, _log_f(member, info), shape, torch.float64)
            factor = factor.exp().float()
            new = p * factor
            new = new / new.sum(-1, keepdim=True)
        else:
            if allowed is None:
                if scores is None:
                    raise ValueError("SetValue and Inert need the pre-softmax scores")
                allowed = scores[b, :, s, :] > masked_threshold(scores.dtype)
        if edits[run[0]][G_OP] == INERT:
            assert allowed is not None
            kindex = edge_index(keep_edges(edits), rows, srcs, dev)
            removed = edge_sum(index, heads, member, shape, torch.float32) > 0
            kept = edge_sum(kindex, heads, member, shape, torch.float32) > 0
            new = inert_rows(p, allowed, removed, kept)
        elif edits[run[0]][G_OP] == SET_VALUE:
            target = edge_sum(index, heads, member, shape, torch.float32) > 0
            value = row_sum(index, heads, member * info[:, L_PARAM], shape[0], torch.float32)
            count = row_sum(index, heads, member * info[:, L_TARGETS], shape[0], torch.float32)
            value, count = value[..., None], count[..., None]
            others = allowed & ~target
            other_w = torch.where(others, p, torch.zeros_like(p))
            other_mass = other_w.sum(-1, keepdim=True)
            uniform = others.float() / others.sum(-1, keepdim=True).clamp(min=1)
            share = torch.where(other_mass > 0, other_w / other_mass.clamp(min=1e-38), uniform)
            new = torch.where(target, value.expand_as(p), share * (1.0 - value * count))
        p = torch.where(touched, new, p)
    probs[b, :, s, :] = p.to(probs.dtype)
    return probs


def inert_rows(
    p: torch.Tensor, allowed: torch.Tensor, removed: torch.Tensor, kept: torch.Tensor
) -> torch.Tensor:
    """Rows ``[N, H, K]`` after Inert: ``removed`` keys read 0, ``kept`` (and masked) keys keep
    their weights, and every receiving key (allowed, neither removed nor kept) gets ``p * (1 +
    m / R)`` with ``m`` the removed mass and ``R`` the receivers' mass (evenly ``m / n`` when
    the receivers carry no weight). Works in the dtype of ``p``; the caller checks that each
    row has a receiver."""
    recv = allowed & ~removed & ~kept
    zero = torch.zeros_like(p)
    gone = torch.where(removed, p, zero).sum(-1, keepdim=True)
    recv_w = torch.where(recv, p, zero)
    recv_mass = recv_w.sum(-1, keepdim=True)
    uniform = recv.to(p.dtype) / recv.sum(-1, keepdim=True).clamp(min=1)
    share = torch.where(recv_mass > 0, recv_w / recv_mass.clamp(min=1e-300), uniform)
    return torch.where(removed, zero, torch.where(recv, p + share * gone, p))


def _one(group: list, op: int) -> list:
    g = list(group)
    g[G_OP] = op
    return g


def knockout_scores(scores: torch.Tensor, group: list, inplace: bool = False) -> torch.Tensor:
    """Set pre-softmax ``scores[row, heads, sources, targets] = -inf`` for one group.

    Returns a new tensor, or ``scores`` itself if ``inplace`` (then only the group's rows are
    touched: no ``[batch, heads, q, k]`` copy).
    """
    return apply_knockouts(scores if inplace else scores.clone(), [_one(group, KNOCKOUT)])


def scale_probs(probs: torch.Tensor, group: list, inplace: bool = False) -> torch.Tensor:
    """Multiply one group's target weights by ``factor`` and renormalise the rows (float32).

    The new target mass follows the Scale formula (``plip_nn.edits.Scale.expected_mass``);
    ``f = 1`` is the identity, bitwise (renormalising would add rounding noise).
    """
    return apply_prob_edits(probs if inplace else probs.clone(), None, [_one(group, SCALE)])


def set_value_probs(
    probs: torch.Tensor, scores: torch.Tensor, group: list, inplace: bool = False
) -> torch.Tensor:
    """Give each target edge of one group exactly ``value``; the other allowed keys share
    ``1 - value*|T|`` in their proportions (evenly, if they carry no probability at all);
    masked keys stay 0."""
    out = probs if inplace else probs.clone()
    return apply_prob_edits(out, scores, [_one(group, SET_VALUE)])


# ---------------------------------------------------------------------------------------------
# Verification: expected rows from the unedited scores, compared with what the model consumed


def expected_probs(
    scores_rows: torch.Tensor, groups: list, layout_: tuple, thresh: float, kindex=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``[N, H, K]`` the model should consume, in float64: the softmax of the unedited
    scores with every knockout applied, then the Scale / SetValue groups in order.

    ``layout_`` is the groups' :func:`layout` over the rows of ``scores_rows``. Scale is
    computed here as ``softmax(log p + log f)`` (the contract's equivalence), not by the
    edit's multiply-and-divide, so the check does not repeat the write. Returns ``(before,
    expected, allowed)``: the unedited probabilities, the expected ones, and the keys allowed
    after the knockouts. ``kindex``: the :func:`edge_index` of the groups' :func:`keep_edges`
    over the same rows (needed when a group is an Inert).
    """
    index, heads, info = layout_
    sc = scores_rows.double()
    before = torch.softmax(sc, dim=-1)
    dev = sc.device
    shape = tuple(sc.shape)
    allowed = sc > thresh
    p = before
    knock = [i for i, g in enumerate(groups) if g[G_OP] == KNOCKOUT]
    if knock:
        hit = edge_sum(index, heads, _member(groups, knock, dev), shape, torch.float64) > 0
        allowed = allowed & ~hit
        # softmax with the knocked-out scores at -inf == the unedited softmax renormalised
        p = torch.where(hit, torch.zeros_like(p), p)
        p = p / p.sum(-1, keepdim=True)
    edits = [i for i, g in enumerate(groups) if g[G_OP] != KNOCKOUT]
    for run in op_runs([groups[i] for i in edits]):
        member = _member(groups, [edits[i] for i in run], dev)
        touched = row_sum(index, heads, member, shape[0], torch.float64)[..., None] > 0
        if groups[edits[run[0]]][G_OP] == SCALE:
            log_f = edge_sum(index, heads, _log_f(member, info), shape, torch.float64)
            e = torch.softmax(torch.log(p) + log_f, dim=-1)
        elif groups[edits[run[0]]][G_OP] == INERT:
            if kindex is None:
                raise ValueError("expected_probs: an Inert group needs kindex (its keep keys)")
            removed = edge_sum(index, heads, member, shape, torch.float64) > 0
            kept = edge_sum(kindex, heads, member, shape, torch.float64) > 0
            e = inert_rows(p, allowed, removed, kept)
        else:
            tmask = edge_sum(index, heads, member, shape, torch.float64) > 0
            value = row_sum(index, heads, member * info[:, L_PARAM], shape[0], torch.float64)
            count = row_sum(index, heads, member * info[:, L_TARGETS], shape[0], torch.float64)
            value, count = value[..., None], count[..., None]
            others = allowed & ~tmask
            ow = torch.where(others, p, torch.zeros_like(p))
            om = ow.sum(-1, keepdim=True)
            uniform = others.double() / others.sum(-1, keepdim=True).clamp(min=1)
            share = torch.where(om > 0, ow / om.clamp(min=1e-300), uniform)
            e = torch.where(tmask, value.expand_as(p), share * (1.0 - value * count))
        p = torch.where(touched, e, p)
    return before, p, allowed


def compare(
    consumed: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute deviation and deviation / tolerance, elementwise (tolerance ``rtol*|e| + atol``
    for ``e != 0``; an expected 0 -- a knocked-out or masked key -- must be exactly 0; a NaN
    never passes)."""
    diff = (consumed.double() - expected).abs()
    ratio = diff / (rtol * expected.abs() + atol)
    ratio = torch.where(expected == 0, torch.where(diff == 0, 0.0, math.inf), ratio)
    return diff, torch.nan_to_num(ratio, nan=math.inf, posinf=math.inf)


def group_stats(
    layout_: tuple,
    before: torch.Tensor,
    after: torch.Tensor,
    diff: torch.Tensor,
    ratio: torch.Tensor,
    masked: torch.Tensor,
    bad_rows: torch.Tensor,
    rel_dev: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[groups, N_STATS]`` (``ST_*``) from the verified rows of a layer.

    ``layout_``: the groups' :func:`layout`. ``before``/``after`` ``[N, H, K]``: probabilities
    before and after the edit (levels and masses are head-means over all heads);
    ``diff``/``ratio`` ``[N, H, *]``: deviations and deviations over tolerance (the maximum
    over a group's query rows is its error); ``masked`` ``[N, H, K]``: keys masked before the
    edit; ``bad_rows`` ``[pairs, H]``: per (group, source) pair, query rows left without a key
    the op needs; ``rel_dev`` ``[groups]``: the Inert groups' ``target_rel_dev`` (NaN
    elsewhere; all NaN when left out).
    """
    (e_row, e_key, e_item, _e_src, s_row, s_item), heads, info = layout_
    dev = before.device
    f64 = torch.float64
    n_groups = heads.shape[0]
    w = torch.stack([before.double().mean(1), after.double().mean(1)], -1)  # [N, K, 2] head-mean
    sums = torch.zeros(n_groups, 2, dtype=f64, device=dev).index_add_(0, e_item, w[e_row, e_key])
    per_row = torch.stack([diff.flatten(1).amax(1), ratio.flatten(1).amax(1)], -1).double()
    worst = torch.zeros(n_groups, 2, dtype=f64, device=dev).scatter_reduce_(
        0, s_item[:, None].expand(-1, 2), per_row[s_row], "amax", include_self=False
    )
    bad = (masked[e_row, :, e_key] & heads[e_item]).sum(1).double()  # masked targets, own heads
    n_bad = torch.zeros(n_groups, dtype=f64, device=dev).index_add_(0, e_item, bad)
    n_bad = n_bad.index_add_(0, s_item, (bad_rows & heads[s_item]).sum(1).double())
    n_src = info[:, L_SOURCES, None]
    level, mass = sums / (n_src * info[:, L_TARGETS, None]), sums / n_src
    if rel_dev is None:
        rel_dev = torch.full((n_groups,), math.nan, dtype=f64, device=dev)
    return torch.stack(
        [
            level[:, 0],
            level[:, 1],
            mass[:, 0],
            mass[:, 1],
            worst[:, 0],
            worst[:, 1],
            n_bad,
            rel_dev.double(),
        ],
        1,
    ).float()


def target_rel_dev(
    kindex: tuple,
    heads: torch.Tensor,
    before: torch.Tensor,
    after: torch.Tensor,
    inert: list,
    rtol: float = 0.0,
    atol: float = 0.0,
) -> torch.Tensor:
    """``[groups]`` float64: per Inert group (``inert`` [G] bool), the largest ``|after -
    before| / before`` over its keep keys, rows and heads (a key that had no weight counts 0 if
    it still has none, inf otherwise; 0 for a group without keep keys); NaN for the other
    groups. The part of ``|after - before|`` within the consumed dtype's rounding (``rtol *
    before + atol``, as :func:`compare`) does not count: in float16 a weight near the subnormal
    range is only known to an absolute ``atol``. ``kindex`` is the :func:`edge_index` of the
    groups' :func:`keep_edges`."""
    k_row, k_key, k_item = kindex[0], kindex[1], kindex[2]
    dev = before.device
    out = torch.zeros(heads.shape[0], dtype=torch.float64, device=dev)
    if k_row.numel() > 0:
        b = before.double()[k_row, :, k_key]  # [E, H]
        a = after.double()[k_row, :, k_key]
        moved = ((a - b).abs() - (rtol * b + atol)).clamp(min=0.0) / b.clamp(min=1e-300)
        rel = torch.where(b > 0, moved, torch.where(a == 0, 0.0, math.inf))
        rel = torch.nan_to_num(rel, nan=math.inf)
        rel = torch.where(heads[k_item], rel, torch.zeros_like(rel)).amax(1)  # own heads only
        out = out.scatter_reduce(0, k_item, rel, "amax", include_self=True)
    is_inert = torch.tensor(inert, dtype=torch.bool, device=dev)
    return torch.where(is_inert, out, torch.full_like(out, math.nan))


def verify_groups(
    scores_rows: torch.Tensor,
    consumed_rows: torch.Tensor,
    groups: list,
    rows: list,
    srcs: list,
    thresh: float,
    rtol: float,
    atol: float,
) -> torch.Tensor:
    """Stats ``[n_groups, N_STATS]`` of groups whose rows the model consumed as ``consumed_rows``.

    ``scores_rows`` are the unedited pre-softmax scores of the edited query rows ``(rows[i],
    srcs[i])`` ``[N, H, K]`` (:func:`edited_rows` of ``groups``) and ``consumed_rows`` the
    probabilities the model multiplied with V at the same rows. A row counts as bad when a
    knockout leaves it no allowed key, or a SetValue leaves no allowed non-target key.
    """
    dev = scores_rows.device
    lay = layout(groups, rows, srcs, scores_rows.shape[1], dev)
    kindex = edge_index(keep_edges(groups), rows, srcs, dev)
    before, expected, allowed = expected_probs(scores_rows, groups, lay, thresh, kindex)
    consumed = consumed_rows.double()
    diff, ratio = compare(consumed, expected, rtol, atol)
    (e_row, e_key, _e_item, e_src, s_row, s_item), heads, info = lay
    op = info[s_item, L_OP, None]  # [pairs, 1]
    on_targets = torch.zeros(len(s_row), allowed.shape[1], dtype=torch.float64, device=dev)
    on_targets.index_add_(0, e_src, allowed[e_row, :, e_key].double())
    on_keep = torch.zeros_like(on_targets)
    on_keep.index_add_(0, kindex[3], allowed[kindex[0], :, kindex[1]].double())
    n_allowed = allowed.sum(-1).double()[s_row]  # [pairs, H]
    bad_rows = (
        ((op == KNOCKOUT) & (n_allowed == 0))
        | ((op == SET_VALUE) & (n_allowed - on_targets == 0))
        | ((op == INERT) & (n_allowed - on_targets - on_keep <= 0))
    )
    masked = scores_rows <= thresh
    inert = [g[G_OP] == INERT for g in groups]
    rel = target_rel_dev(kindex, heads, before, consumed, inert, rtol, atol) if any(inert) else None
    return group_stats(lay, before, consumed, diff, ratio, masked, bad_rows, rel)


def read_levels(probs: torch.Tensor, reads: list) -> torch.Tensor:
    """``[n_reads, 2]``: ``[level, mass]`` of each read's edges in ``probs`` (head-mean; level =
    mean over targets and sources, mass = sum over targets, mean over sources)."""
    edges = read_edges(reads)
    rows, srcs = edge_rows(edges)
    b, s = _index(rows, srcs, probs.device)
    w = probs[b, :, s, :].double().mean(1)  # [N, K]
    return edge_levels(w, edges, rows, srcs)


def edge_levels(w: torch.Tensor, edges: list, rows: list, srcs: list) -> torch.Tensor:
    """``[len(edges), 2]`` float32 ``[level, mass]`` of each ``[row, sources, targets]`` from
    head-mean weights ``w`` ``[N, K]`` of the query rows ``(rows, srcs)``."""
    e_row, e_key, e_item, _, _, _ = edge_index(edges, rows, srcs, w.device)
    sums = torch.zeros(len(edges), dtype=w.dtype, device=w.device)
    sums.index_add_(0, e_item, w[e_row, e_key])
    counts = torch.tensor(
        [[float(len(e[1])), float(len(e[2]))] for e in edges], dtype=w.dtype, device=w.device
    )
    return torch.stack([sums / (counts[:, 0] * counts[:, 1]), sums / counts[:, 0]], 1).float()


# ---------------------------------------------------------------------------------------------
# The one in-trace edit site


def edit_site(
    model, site, edits: list, verify: list, reads: list, route: str = ROUTE_SOFTMAX
) -> tuple:
    """In-trace: apply ``edits`` at one layer's attention, verify ``verify``, read ``reads``.

    Callable inside any nnsight trace (or ``generate`` step) on ``model``, once per layer, in
    layer order. ``site`` is the layer's plain site tuple (``SITE_*``). Returns ``(stats
    [len(verify), N_STATS] or None, reads [len(reads), 2] or None)``; neither is saved (the
    caller saves what it keeps). Every group of the layer is edited and verified by the same
    few tensor ops, whatever their number.
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
            b_idx, s_idx = _index(rows, srcs, scores.device)
            scores_rows = scores[b_idx, :, s_idx, :].double()  # [N, H, K], before any write
        if any(g[G_OP] == KNOCKOUT for g in edits):
            apply_knockouts(scores, edits)
            softmax.input = scores
        if any(g[G_OP] != KNOCKOUT for g in edits):
            probs = softmax.output
            computed = probs.dtype
            apply_prob_edits(probs, scores, edits)
            softmax.output = probs
        else:
            computed = torch.float32
        consumer = getattr(call.source, site[SITE_CONSUMER])
        consumed = consumer.inputs[0][site[SITE_PROBS_ARG]]  # [B, H, Q, K] what multiplies V
        if verify:
            rtol = relative_tolerance(consumed.dtype, computed)
            atol = torch.finfo(consumed.dtype).tiny
            stats = verify_groups(
                scores_rows, consumed[b_idx, :, s_idx, :], verify, rows, srcs, thresh, rtol, atol
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
    b, s = _index(rows, srcs, q.device)
    keys = torch.repeat_interleave(k[b], rep, dim=1).double()  # [N, H, K, D]
    scores = torch.matmul(q[b, :, s, :].double()[:, :, None, :], keys.transpose(2, 3))[:, :, 0]
    scores = scores * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    mb = b if mask.shape[0] > 1 else torch.zeros_like(b)
    return scores + mask[mb, :, s, :].double()  # [N, 1|H, K] broadcasts over heads


def mask_edits(layout_: tuple, shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """``(add, hit)`` ``shape = [N, H, K]``: the float64 ``log f`` each Scale adds to the
    scores of the groups' query rows and the edges a knockout removes (bool); ``layout_`` is
    the groups' :func:`layout`."""
    index, heads, info = layout_
    knock = info[:, L_OP] == KNOCKOUT
    log_f = torch.where(knock, torch.zeros_like(info[:, L_PARAM]), info[:, L_PARAM].log())
    add = edge_sum(index, heads, log_f, shape, torch.float64)
    hit = edge_sum(index, heads, knock.double(), shape, torch.float64) > 0
    return add, hit


def edit_mask(full: torch.Tensor, groups: list) -> torch.Tensor:
    """Add ``-inf`` (knockout) or ``log f`` (scale) to the groups' entries of an additive mask
    ``[B, H|1, Q, K]``, in place (``full`` is the engine's own copy; it has ``H`` heads when a
    group names heads)."""
    rows, srcs = edited_rows(groups)
    lay = layout(groups, rows, srcs, full.shape[1], full.device)
    add, hit = mask_edits(lay, (len(rows), full.shape[1], full.shape[3]))
    b, s = _index(rows, srcs, full.device)
    block = (full[b, :, s, :].double() + add).masked_fill(hit, -math.inf)
    full[b, :, s, :] = block.to(full.dtype)
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
    for g in edits + verify:
        if g[G_OP] != KNOCKOUT and g[G_OP] != SCALE:
            raise ValueError(
                "the mask route edits only Knockout and Scale; SetValue (op 2) and Inert (op 3) "
                "edit probabilities and need the softmax route (eager attention); got op "
                + str(g[G_OP])
            )
    call = getattr(model.get(site[SITE_PATH]).source, site[SITE_CALL])
    args, kwargs = call.inputs
    q, k, v = args[1], args[2], args[3]
    mask = args[4] if len(args) > 4 else kwargs.get("attention_mask")
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = q.shape[-1] ** -0.5
    softcap = kwargs.get("softcap")
    base_mask = float_mask(mask, q, k)
    n_heads, n_keys = q.shape[1], k.shape[2]
    cur = base_mask
    if edits:
        per_head = any(g[G_HEADS] is not None for g in edits)
        heads = n_heads if per_head else base_mask.shape[1]
        full = base_mask.expand(q.shape[0], heads, q.shape[2], n_keys).clone()
        edit_mask(full, edits)
        if len(args) > 4:
            call.inputs = ((*args[:4], full, *args[5:]), kwargs)
        else:
            kw = dict(kwargs)
            kw["attention_mask"] = full
            call.inputs = (args, kw)
        cur = full
    read = None
    if reads:  # from the mask as passed on (before the call's output is touched)
        r_rows, r_srcs = edge_rows(read_edges(reads))
        sc_r = mask_scores(q, k, cur, r_rows, r_srcs, scaling, softcap)
        w = torch.softmax(sc_r, dim=-1).mean(1)  # [N, K] head-mean
        read = edge_levels(w, read_edges(reads), r_rows, r_srcs)
    stats = None
    if verify:
        rows, srcs = edited_rows(verify)
        sc = mask_scores(q, k, base_mask, rows, srcs, scaling, softcap).expand(-1, n_heads, -1)
        thresh = masked_threshold(q.dtype)
        # Scale(f) on probabilities == adding log f to the score (the route's premise).
        lay = layout(verify, rows, srcs, n_heads, q.device)
        add, hit = mask_edits(lay, (len(rows), n_heads, n_keys))
        sc_edit = (sc + add).masked_fill(hit, -math.inf)
        p = torch.softmax(sc_edit, dim=-1)  # [N, H, K] float64
        b, s = _index(rows, srcs, q.device)
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
        dead = ~(sc_edit > thresh).any(-1)  # [N, H]: no key left
        before = torch.softmax(sc, dim=-1)
        stats = group_stats(lay, before, p, diff, ratio, sc <= thresh, dead[lay[0][4]])
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
    ``-log p`` by the fused ``cross_entropy`` kernel in float32 (``logsumexp(logits) -
    logits[token]``, a quarter faster than spelling it out), one batch row at a time, so no
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
        nll_row = torch.nn.functional.cross_entropy(row.float(), nxt[b], reduction="none")
        per_row.append(nll_row.double())
    nll = torch.stack(per_row)
    nll = torch.where(valid, nll, torch.zeros_like(nll)).sum(-1)
    return nll, valid.sum(-1)


def gold_readout(lp: torch.Tensor, gold: list) -> tuple[torch.Tensor, torch.Tensor]:
    """log p and rank of each row's gold token in ``lp`` ``[batch, vocab]`` (the prediction-
    position log-probs): ``(log p [batch] float64, rank [batch] int64)``, rank 0 = top-1 (the
    number of tokens with a strictly larger log p). Rows with gold -1 read NaN and rank -1."""
    ids = torch.tensor(gold, device=lp.device)
    has = ids >= 0
    safe = torch.where(has, ids, torch.zeros_like(ids))
    lp_gold = lp.gather(-1, safe[:, None])[:, 0]
    rank = (lp > lp_gold[:, None]).sum(-1)
    lp_gold = torch.where(has, lp_gold.double(), torch.full_like(lp_gold.double(), math.nan))
    rank = torch.where(has, rank, torch.full_like(rank, -1))
    return lp_gold, rank


def output_summaries(
    model,
    inputs: dict,
    out: dict,
    base_rows,
    keep: bool,
    in_session: bool,
    predict_at: list | None = None,
    nll_from: list | None = None,
    gold: list | None = None,
) -> torch.Tensor:
    """In-trace: NLL, top-1 and (with ``base_rows``) KL / top-1 / greedy log-prob change against
    reference rows, at each row's prediction position (``predict_at``, padded; default last).

    ``"dlogp"`` is ``log p_cond(t) - log p_base(t)`` for the reference row's top-1 token ``t``.
    With ``gold`` (one token id per row, -1 for none) the readout of that token at the
    prediction position (:func:`gold_readout`). Fills ``out`` with saved values and returns
    the prediction-position log-probs.
    """
    logits = model.output.logits
    lp_last = last_logprobs(logits, predict_at)
    nll, ntok = token_nll(logits, inputs["input_ids"], inputs["attention_mask"], nll_from)
    out["nll"] = nll.cpu().save()
    out["ntok"] = ntok.cpu().save()
    out["top1"] = lp_last.argmax(-1).cpu().save()
    out["ptop1"] = lp_last.max(-1).values.exp().double().cpu().save()
    if gold is not None:
        lp_gold, rank = gold_readout(lp_last, gold)
        out["lp_gold"] = lp_gold.cpu().save()
        out["rank_gold"] = rank.cpu().save()
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
    gold: list | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One nnsight trace applying ``plan`` (layer -> layer plan) and computing the summaries.

    ``sites[layer]`` is the layer's plain site tuple. With ``base_rows`` it also computes KL and
    top-1 agreement of each batch row against row ``base_rows[row]`` of the same pass (an
    unedited row of the same prompt: same shapes and padding, so an identity edit gives a KL
    of exactly 0). ``predict_at`` / ``nll_from``: per row, the padded position whose
    next-token distribution is summarised, and the first prediction counted in the NLL
    (:func:`output_summaries`); ``gold``: per row the token whose log p and rank are read
    there (-1: none). Returns ``(saved results under the key scheme, prediction-
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
            model, inputs, out, base_rows, keep, in_session, predict_at, nll_from, gold
        )
    return out, lp_last


def ends_with(buf: list, seq: list) -> bool:
    """Whether token list ``buf`` ends with the (non-empty) token sequence ``seq``."""
    n = len(seq)
    return n > 0 and len(buf) >= n and buf[len(buf) - n :] == seq


def _ident(c: str) -> bool:
    return c.isalnum() or c == "_"


def _skip_spaces(text: str, j: int) -> int:
    while j < len(text) and text[j] in " \t\r\n":
        j += 1
    return j


def _after_turbofish(text: str, j: int) -> int:
    """Index after a Rust ``::<...>`` at ``j`` (``j`` when there is none or it is open)."""
    k = _skip_spaces(text, j)
    if not text.startswith("::", k):
        return j
    k = _skip_spaces(text, k + 2)
    if k >= len(text) or text[k] != "<":
        return j
    depth = 0
    while k < len(text):
        depth += {"<": 1, ">": -1}.get(text[k], 0)
        k += 1
        if depth == 0:
            return k
    return j


def calls_name(text: str, name: str) -> bool:
    """Whether ``text`` (generated code) holds a call of ``name``: the name not glued to an
    identifier character on either side, not right after ``def``/``fn`` (a definition, or a
    ``fn test_<name>`` header: ``_`` glues), then optional blanks (and a Rust turbofish
    ``::<T>``) and ``(``. Qualified calls (``obj.name(``, ``T::name(``) count. A text scan, as
    in-trace code has no parser; the start of ``text`` follows the marker (a boundary)."""
    n = len(name)
    i = text.find(name) if n else -1
    while i >= 0:
        end = i + n
        glued = (i > 0 and _ident(text[i - 1])) or (end < len(text) and _ident(text[end]))
        head = text[:i].rstrip(" \t")
        defined = False
        for kw in ("def", "fn"):
            if head.endswith(kw) and (len(head) == len(kw) or not _ident(head[-len(kw) - 1])):
                defined = defined or len(head) < i
        if not glued and not defined:
            j = _skip_spaces(text, _after_turbofish(text, end))
            if j < len(text) and text[j] == "(":
                return True
        i = text.find(name, i + 1)
    return False


def first_test_ended(text: str, language: str) -> bool:
    """Whether generated ``text`` has finished its first test: Python's docstring closed
    (a triple quote), Rust's first body closed (braces outside strings and line
    comments back to depth 0 after one opened)."""
    if language == "python":
        return '"""' in text or "'''" in text
    depth, opened, i, quote = 0, False, 0, False
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif text.startswith("//", i):
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        elif c == "'" and i + 2 < len(text) and text[i + 2] == "'":
            i += 3  # a char literal such as '{'
            continue
        elif c == "{":
            depth, opened = depth + 1, True
        elif c == "}" and opened:
            depth -= 1
            if depth == 0:
                return True
        i += 1
    return False


def call_done(generated: list, call: list) -> bool:
    """Whether the generated tokens have written the test's first call of the function (the
    call's ``(`` included) or ended its first test (:func:`calls_name`,
    :func:`first_test_ended`); ``call`` is ``[name, language, texts]`` (``C_*``)."""
    texts = call[C_TEXTS]
    text = "".join(texts[t] if 0 <= t < len(texts) else "" for t in generated)
    return calls_name(text, call[C_NAME]) or first_test_ended(text, call[C_LANGUAGE])


def watches(row: dict) -> bool:
    """Whether a generation row needs the generated tokens (markers or a call to watch)."""
    return bool((row[ROW_MARKERS] or row.get(ROW_CALL)) and row[ROW_SOURCES])


def policy_rows(
    policy: str,
    sources: list,
    q_len: int,
    step: int,
    generated: list,
    markers: list,
    call: list | None = None,
) -> list:
    """The one definition of the source policies: the query rows a generation step edits.

    ``sources`` are the prompt's source positions (padded), ``q_len`` the number of query rows
    of this step's pass, ``generated`` the tokens generated so far (the one fed at this step
    last) and ``markers`` the token sequences of a marker. At step 0 (the prefill, or a full
    recomputation's prompt) :data:`POLICY_MARKERS` edits the sources, and
    :data:`POLICY_CONTINUATION` and :data:`POLICY_TO_CALL` every row from the first source on.
    At a later step the new token's row -- the last query row, ``q_len - 1`` (0 under a KV
    cache, the absolute position in a full recomputation) -- is edited under ``continuation``;
    under ``to_call`` while the generated tokens, the fed one included, have not yet written
    the test's first call of the function nor ended the first test (:func:`call_done` on
    ``call``, ``[name, language, texts]``): the rows of the name's tokens are edited, the row
    of the token that completes the call (its ``(``) and every later row are not; under
    ``markers`` when ``generated`` ends with a marker (the row of the marker's last token: its
    earlier tokens were processed before the marker could be recognised). No sources: no row,
    at any step.
    """
    if not sources:
        return []
    if step == 0:
        if policy in (POLICY_CONTINUATION, POLICY_TO_CALL):
            return list(range(min(sources), q_len))
        return list(sources)
    if policy == POLICY_TO_CALL:
        return [] if not call or call_done(generated, call) else [q_len - 1]
    hit = policy == POLICY_CONTINUATION
    for seq in markers:
        if ends_with(generated, seq):
            hit = True
    return [q_len - 1] if hit else []


def step_edits(
    model,
    sites: list,
    rows: list,
    layers: list,
    step: int,
    q_len: int,
    generated: list,
    route: str = ROUTE_SOFTMAX,
    verify: bool = True,
) -> tuple[list, list]:
    """In-trace: one generation step's edits, at every layer of ``layers`` in order.

    ``rows[r]`` is batch row ``r``'s generation row (``ROW_*``), ``generated[r]`` its tokens
    generated so far and ``q_len`` the step's number of query rows. The rows to edit come from
    :func:`policy_rows`; every row's edits at a layer go through one :func:`edit_site` call.
    Shared by :func:`generation_pass` and :func:`plip_nn.intervene` under a user's
    ``generate``. Returns ``(active, stats)``: per row the query rows edited, and a list of
    ``[groups, GEN_STATS + N_STATS]`` tensors, one per edited layer (``[step, row, layer,
    edit index, *stats]``; empty when ``verify`` is false).
    """
    active = [
        policy_rows(
            row[ROW_POLICY],
            row[ROW_SOURCES],
            q_len,
            step,
            generated[r],
            row[ROW_MARKERS],
            row.get(ROW_CALL),
        )
        for r, row in enumerate(rows)
    ]
    stats: list = []
    for layer in layers:
        groups = []
        tags = []
        for r, row in enumerate(rows):
            if not active[r]:
                continue
            for e_idx, e in enumerate(row[ROW_EDITS]):
                if layer in e[E_LAYERS]:
                    keep = e[E_KEEP] if len(e) > E_KEEP else []
                    groups.append(
                        [r, e[E_HEADS], active[r], e[E_TARGETS], e[E_OP], e[E_PARAM], keep]
                    )
                    tags.append([float(step), float(r), float(layer), float(e_idx)])
        if not groups:
            continue
        st, _ = edit_site(model, sites[layer], groups, groups if verify else [], [], route)
        if st is not None:
            tag = torch.tensor(tags, dtype=st.dtype, device=st.device)
            stats.append(torch.cat([tag, st], 1))
    return active, stats


def generation_pass(
    model,
    inputs: dict,
    sites: list,
    embed_path: str,
    rows: list,
    n_steps: int,
    gen_kwargs: dict,
    route: str = ROUTE_SOFTMAX,
) -> tuple[torch.Tensor | None, list]:
    """One nnsight ``generate`` with edits re-applied at every step (KV cache on).

    ``rows[r]`` describes batch row ``r``: ``{"edits": [[layers, heads, targets, op, param],
    ...], "sources": [...], "policy": "markers" | "continuation", "markers": [[ids], ...]}`` in
    padded coordinates (``ROW_*`` keys; ``"policy"`` may be ``"to_call"``, with ``"call"``).
    Each step edits the rows :func:`policy_rows` names
    (:func:`step_edits`). Returns ``(sequences, stats)``: ``stats`` is a list of ``[groups,
    GEN_STATS + N_STATS]`` tensors, one per edited (step, layer), each row ``[step, row, layer,
    edit index, *stats]`` (``GEN_*`` then ``ST_*`` shifted by :data:`GEN_STATS`). The host
    reads the generated tokens once per step, and only when some row watches for markers.
    ``sequences`` is None when a stopping criterion ended the run early.
    """
    layers = row_layers(rows)
    watch = [r for r, row in enumerate(rows) if watches(row)]
    # A stopping criterion (gen_kwargs) may end the run before n_steps: the loop is then cut
    # short, the statements after it do not run and ``sequences`` stays None (the caller
    # reads the tokens from its criterion).
    sequences = None
    with model.generate(
        inputs, max_new_tokens=n_steps, min_new_tokens=n_steps, **gen_kwargs
    ) as tracer:
        stats = list().save()
        generated: list = [[] for _ in rows]
        for step in tracer.iter[:n_steps]:
            ids = model.get(embed_path).input
            if step > 0 and watch:
                feed_tokens(ids, watch, generated)
            _active, st = step_edits(
                model, sites, rows, layers, step, ids.shape[1], generated, route
            )
            stats.extend(st)
        sequences = tracer.result.save()
    return sequences, stats


def walk_steps(
    model,
    sites: list,
    embed_path: str,
    rows: list,
    layers: list,
    steps,
    need: int,
    route: str,
    verify: bool,
    schedule: dict,
    stats: list,
):
    """In-trace generator: the edits of a user's ``generate`` at every step of ``steps``.

    ``steps`` is the user's ``tracer.iter[...]`` (its loop pins each step). At each step the
    rows :func:`policy_rows` names are edited at ``layers`` (:func:`step_edits`, as in
    :func:`generation_pass`), then the step index is yielded: the caller's loop body runs after
    the edits of that step. ``rows`` holds one generation row per batch row, or one for every
    row (repeated to the batch size). ``need`` is one past the largest padded position of the
    edits: the prefill must have that many rows. Generated markers are matched within a run of
    consecutive steps (the tokens fed at those steps). Fills ``schedule`` (step -> per row the
    edited query rows) and ``stats`` (saved ``[groups, GEN_STATS + N_STATS]`` tensors).
    """
    generated: list = []
    watch: list = []
    prev = -2
    for step in steps:
        # The first request of every step: once served, nnsight lets the step's later requests
        # follow the model, so a ``.source`` operation first reached mid-generation (its visits
        # counted from there) still binds to this step's visit.
        ids = model.get(embed_path).input  # [B, q] the tokens fed at this step
        batch, q_len = ids.shape[0], ids.shape[1]
        if len(rows) != batch:
            if len(rows) != 1:
                raise ValueError(
                    "intervene: offsets has "
                    + str(len(rows))
                    + " entries but the batch has "
                    + str(batch)
                    + " rows; give one left-pad offset per batch row"
                )
            rows = rows * batch
        if not generated:
            generated = [[] for _ in rows]
            watch = [r for r, row in enumerate(rows) if watches(row)]
        if step == 0 and q_len < need:
            raise ValueError(
                "intervene: the edits reach position "
                + str(need - 1)
                + " but the prompt has "
                + str(q_len)
                + " tokens (positions index each row's prompt, shifted by its "
                "offset); use positions inside the prompt"
            )
        if step > 0 and watch:
            if step != prev + 1:  # a gap in the steps: markers cannot span it
                generated = [[] for _ in rows]
            feed_tokens(ids, watch, generated)
        prev = step
        active, st = step_edits(model, sites, rows, layers, step, q_len, generated, route, verify)
        schedule[step] = active
        for t in st:
            stats.append(t.cpu().save())
        yield step


def row_layers(rows: list) -> list:
    """The layers that any generation row's edits touch, in order."""
    return sorted({layer for row in rows for e in row[ROW_EDITS] for layer in e[E_LAYERS]})


def feed_tokens(ids, watch: list, generated: list) -> None:
    """Append the token fed at this step (``ids`` ``[B, q]``, last column) to ``generated[r]``
    for the watched rows: one device-to-host read."""
    last = ids[:, -1].tolist()
    for r in watch:
        generated[r].append(last[r])


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
    :func:`plip_nn.verify.check_stats` does for the knockout itself. ``level``/``mass`` are those of
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
