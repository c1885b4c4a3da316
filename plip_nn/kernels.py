"""Pure tensor functions that carry out attention edits and read attention levels.

This module runs *inside* nnsight traces, including on NDIF's server sandbox, so it imports
only ``torch`` and ``math`` and takes plain tensors, ints, floats and lists -- never our spec
objects. A test imports it with every other import blocked.

Shapes: ``scores`` and ``probs`` are ``[batch, heads, q, k]``. A *group* is one edit on one batch
row: ``(batch_index, heads, sources, targets, opcode, param)`` where ``heads`` is a list of head
indices or ``None`` (all heads), ``sources`` are query-row indices into ``q`` and ``targets`` key
indices into ``k``. Opcodes: 0 = knockout, 1 = scale(param), 2 = set_value(param).

Every function that edits also returns a float32 ``stats`` vector describing the group:
``[level_before, level_after, mass_before, mass_after, max_error, n_bad]`` where ``level`` is
the mean over targets of the head-mean weight (averaged over sources), ``mass`` the sum over
targets, ``max_error`` the largest deviation of the achieved weights from what the operation
requested, and ``n_bad`` counts rows that lost every allowed key or edges that were masked.
"""

import math

import torch

KNOCKOUT = 0
SCALE = 1
SET_VALUE = 2
N_STATS = 6


def _index(t: torch.Tensor, heads: list | None, n_heads: int, sources: list, targets: list):
    device = t.device
    h = (
        torch.arange(n_heads, device=device)
        if heads is None
        else torch.tensor(heads, device=device)
    )
    s = torch.tensor(sources, device=device)
    k = torch.tensor(targets, device=device)
    return h, s, k


def masked_threshold(dtype: torch.dtype) -> float:
    """Scores at or below this value count as masked (HF adds ``finfo.min`` to masked keys)."""
    return torch.finfo(dtype).min / 2


def head_mean_levels(probs_rows: torch.Tensor, targets: torch.Tensor) -> tuple:
    """Level and mass of ``probs_rows`` [heads, sources, k] on ``targets`` (head-mean, source-mean)."""
    w = probs_rows.float()[:, :, targets].mean(0)  # [sources, targets]
    mass = w.sum(-1).mean()
    level = w.mean(-1).mean()
    return level, mass


def knockout_scores(scores: torch.Tensor, group: list, inplace: bool = False) -> tuple:
    """Set pre-softmax ``scores[b, heads, s, t] = -inf`` for the group's edges.

    Returns the edited scores (a new tensor, same dtype; ``scores`` itself if ``inplace``,
    which :func:`apply_score_groups` uses so that a batch of groups costs one copy, not one
    copy per group) and the group's stats, with
    ``level_before``/``mass_before`` from ``softmax(scores)`` of the edited rows and the
    ``*_after`` values from the edited scores. ``max_error`` is the largest post-softmax weight
    left on a knocked-out edge (must be exactly 0); ``n_bad`` counts rows left with no allowed
    key plus edges that were already masked.
    """
    b, heads, sources, targets = group[0], group[1], group[2], group[3]
    n_heads = scores.shape[1]
    h, s, k = _index(scores, heads, n_heads, sources, targets)
    hi = h[:, None]
    si = s[None, :]
    rows = scores[b, hi, si, :].float()  # [h, S, K]
    thresh = masked_threshold(scores.dtype)
    already_masked = (rows[:, :, k] <= thresh).sum()
    before = torch.softmax(scores[b][:, s, :].float(), dim=-1)  # all heads
    edited = rows.clone()
    edited[:, :, k] = -math.inf
    allowed_left = (edited > thresh).sum(-1)  # [h, S]
    dead_rows = (allowed_left == 0).sum()
    out = scores if inplace else scores.clone()
    out[b, hi, si, :] = edited.to(scores.dtype)
    after = torch.softmax(out[b][:, s, :].float(), dim=-1)
    lb, mb = head_mean_levels(before, k)
    la, ma = head_mean_levels(after, k)
    err = after[h][:, :, k].abs().max()
    stats = torch.stack([lb, la, mb, ma, err, (dead_rows + already_masked).float()])
    return out, stats


def scale_probs(probs: torch.Tensor, group: list, scores=None, inplace: bool = False) -> tuple:
    """Multiply the group's target weights by ``factor`` (``group[5]``) and renormalise the rows.

    Returns a new tensor, or ``probs`` itself edited in place if ``inplace``.

    ``max_error`` compares the achieved target mass of every edited (head, source) row with
    ``f*m / (1 - m + f*m)`` where ``m`` is that row's mass before the edit. If ``scores`` is
    given, edges already masked there are counted in ``n_bad``.
    """
    b, heads, sources, targets, factor = group[0], group[1], group[2], group[3], group[5]
    n_heads = probs.shape[1]
    h, s, k = _index(probs, heads, n_heads, sources, targets)
    hi = h[:, None]
    si = s[None, :]
    rows = probs[b, hi, si, :].float()  # [h, S, K]
    m = rows[:, :, k].sum(-1)  # [h, S]
    lb, mb = head_mean_levels(probs[b][:, s, :], k)  # all heads, before any write
    out = probs if inplace else probs.clone()
    if factor != 1.0:  # f = 1 is the identity, bitwise (renormalising would add rounding noise)
        edited = rows.clone()
        edited[:, :, k] = edited[:, :, k] * factor
        edited = edited / edited.sum(-1, keepdim=True)
        out[b, hi, si, :] = edited.to(probs.dtype)
    achieved = out[b, hi, si, :].float()
    expected = factor * m / (1.0 - m + factor * m)
    err = (achieved[:, :, k].sum(-1) - expected).abs().max()
    n_bad = torch.zeros((), dtype=torch.float32, device=probs.device)
    if scores is not None:
        n_bad = (scores[b, hi, si, :][:, :, k] <= masked_threshold(scores.dtype)).sum().float()
    la, ma = head_mean_levels(out[b][:, s, :], k)
    stats = torch.stack([lb, la, mb, ma, err, n_bad])
    return out, stats


def set_value_probs(
    probs: torch.Tensor, scores: torch.Tensor, group: list, inplace: bool = False
) -> tuple:
    """Give each target edge exactly ``value`` (``group[5]``); other allowed keys share the rest.

    Returns a new tensor, or ``probs`` itself edited in place if ``inplace``.

    Allowed keys are those whose pre-softmax score is not masked. Non-target allowed keys keep
    their relative proportions and share ``1 - value*|T|``; masked keys stay 0. A row whose
    non-target allowed keys carry no probability at all gets the rest spread evenly over them;
    a row with no non-target allowed key is counted in ``n_bad`` (it cannot be renormalised).
    ``max_error`` is the largest deviation of a target weight from ``value`` or of a masked
    key from 0.
    """
    b, heads, sources, targets, value = group[0], group[1], group[2], group[3], group[5]
    n_heads = probs.shape[1]
    h, s, k = _index(probs, heads, n_heads, sources, targets)
    hi = h[:, None]
    si = s[None, :]
    rows = probs[b, hi, si, :].float()  # [h, S, K]
    allowed = scores[b, hi, si, :] > masked_threshold(scores.dtype)  # [h, S, K]
    is_target = torch.zeros(rows.shape[-1], dtype=torch.bool, device=rows.device)
    is_target[k] = True
    others = allowed & ~is_target  # [h, S, K]
    rest = 1.0 - value * len(targets)
    other_w = torch.where(others, rows, torch.zeros_like(rows))
    other_mass = other_w.sum(-1, keepdim=True)
    n_others = others.sum(-1, keepdim=True)
    uniform = others.float() / n_others.clamp(min=1)
    share = torch.where(other_mass > 0, other_w / other_mass.clamp(min=1e-38), uniform)
    edited = share * rest
    edited[:, :, k] = value
    masked_targets = (~allowed[:, :, k]).sum()
    n_bad = (n_others == 0).sum() + masked_targets
    lb, mb = head_mean_levels(probs[b][:, s, :], k)  # all heads, before any write
    out = probs if inplace else probs.clone()
    out[b, hi, si, :] = edited.to(probs.dtype)
    achieved = out[b, hi, si, :].float()
    err_t = (achieved[:, :, k] - value).abs().max()
    err_m = torch.where(allowed, torch.zeros_like(achieved), achieved).abs().max()
    la, ma = head_mean_levels(out[b][:, s, :], k)
    stats = torch.stack([lb, la, mb, ma, torch.maximum(err_t, err_m), n_bad.float()])
    return out, stats


def read_levels(probs: torch.Tensor, b: int, sources: list, targets: list) -> torch.Tensor:
    """``[level, mass]`` of batch row ``b`` from ``sources`` to ``targets`` (head-mean)."""
    _h, s, k = _index(probs, None, probs.shape[1], sources, targets)
    rows = probs[b][:, s, :]  # [H, S, K]
    level, mass = head_mean_levels(rows, k)
    return torch.stack([level, mass])


def apply_score_groups(scores: torch.Tensor, groups: list) -> tuple:
    """Apply every knockout group to ``scores``; returns (scores, stats [n_groups, N_STATS]).

    ``scores`` is copied once and the groups edit that copy in order (a copy per group would
    cost a full ``[batch, heads, q, k]`` tensor each: 18% of a forward at batch 4, seq 512).
    """
    stats = []
    if groups:
        scores = scores.clone()
    for g in groups:
        scores, st = knockout_scores(scores, g, inplace=True)
        stats.append(st)
    return scores, stats


def apply_prob_groups(probs: torch.Tensor, scores, groups: list) -> tuple:
    """Apply every scale / set-value group to ``probs``; returns (probs, list of stats).

    Like :func:`apply_score_groups`, ``probs`` is copied once and edited in place.
    """
    stats = []
    if groups:
        probs = probs.clone()
    for g in groups:
        if g[4] == SCALE:
            probs, st = scale_probs(probs, g, scores, inplace=True)
        else:
            probs, st = set_value_probs(probs, scores, g, inplace=True)
        stats.append(st)
    return probs, stats


def last_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """log-softmax of the last position in float32: ``[batch, seq, vocab] -> [batch, vocab]``."""
    return torch.log_softmax(logits[:, -1, :].float(), dim=-1)


def kl_rows(logp_base: torch.Tensor, logp_cond: torch.Tensor) -> torch.Tensor:
    """KL(P_base || P_cond) per row in nats, float64: ``sum p_base * (log p_base - log p_cond)``.

    Both inputs are renormalised in float64 first: float32 log-probs do not sum to exactly 1 in
    float64, which would let a KL near 0 come out slightly negative.
    """
    pb = torch.log_softmax(logp_base.double(), dim=-1)
    pc = torch.log_softmax(logp_cond.double(), dim=-1)
    terms = torch.where(pb > -math.inf, pb.exp() * (pb - pc), torch.zeros_like(pb))
    return terms.sum(-1)


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple:
    """Sum and count of the negative log-likelihood of each row's own tokens.

    Position ``i`` predicts token ``i + 1``; padded positions (mask 0) are excluded on both sides.
    Returns ``(nll_sum [batch] float64, n_tokens [batch] int64)``.
    """
    logp = torch.log_softmax(logits[:, :-1, :].float(), dim=-1)
    nxt = input_ids[:, 1:]
    tok = logp.gather(-1, nxt[..., None])[..., 0].double()  # [batch, seq-1]
    valid = (attention_mask[:, 1:] > 0) & (attention_mask[:, :-1] > 0)
    nll = torch.where(valid, -tok, torch.zeros_like(tok)).sum(-1)
    return nll, valid.sum(-1)


def group_levels(probs: torch.Tensor, group: list) -> torch.Tensor:
    """``[level, mass, max_weight]`` of a group's edges in ``probs`` (level/mass head-mean over
    all heads; ``max_weight`` over the group's own heads)."""
    b, heads, sources, targets = group[0], group[1], group[2], group[3]
    h, s, k = _index(probs, heads, probs.shape[1], sources, targets)
    level, mass = head_mean_levels(probs[b][:, s, :], k)
    own = probs[b, h[:, None], s[None, :], :][:, :, k].float()
    return torch.stack([level, mass, own.abs().max()])


def output_summaries(
    model, inputs: dict, out: dict, base_lp, base_rows, keep: bool, in_session: bool
):
    """In-trace: NLL, top-1 and (with ``base_rows``) KL / top-1 against reference rows.

    Fills ``out`` with saved values and returns the last-position log-probs.
    """
    logits = model.output.logits
    lp_last = last_logprobs(logits)
    nll, ntok = token_nll(logits, inputs["input_ids"], inputs["attention_mask"])
    out["nll"] = nll.cpu().save()
    out["ntok"] = ntok.cpu().save()
    out["top1"] = lp_last.argmax(-1).cpu().save()
    if base_rows is not None:
        ref = lp_last[base_rows] if base_lp is None else base_lp[base_rows]
        out["kl"] = kl_rows(ref, lp_last).cpu().save()
        out["top1_base"] = ref.argmax(-1).cpu().save()
    if keep:
        out["lp"] = lp_last.cpu().save()
    if not in_session:
        lp_last = lp_last.save()
    return lp_last


def traced_pass(
    model, inputs: dict, sites: list, plan: dict, base_lp, base_rows, keep: bool, in_session: bool
) -> dict:
    """One nnsight trace applying ``plan`` and computing the summaries; returns saved values.

    ``sites[layer] = (module_path, call_op, softmax_op)``; ``plan[layer]`` has lists ``score``
    (knockout groups), ``prob`` (scale/set-value groups) and ``read`` (``[row, sources,
    targets]``). With ``base_rows`` it also computes KL and top-1 agreement against a reference
    row per batch row: ``base_lp[base_rows]`` when ``base_lp`` (``[n_prompts, vocab]`` baseline
    last-position log-probs) is given, else this pass's own rows ``base_rows`` (unedited rows in
    the same batch: same shapes and padding, so an identity edit gives a KL of exactly 0).
    Returns ``(saved summaries, last-position log-probs)``; inside a session the log-probs
    stay on the server (they feed the KL of later traces) and only come back if ``keep``.
    """
    out = {}
    with model.trace(inputs):
        for layer in sorted(plan):
            lp = plan[layer]
            path, call_op, sm_op = sites[layer]
            op = getattr(getattr(model.get(path).source, call_op).source, sm_op)
            scores = None
            ko_stats = []
            if lp["score"] or lp["prob"]:
                scores = op.input
            if lp["score"]:
                scores, ko_stats = apply_score_groups(scores, lp["score"])
                op.input = scores
            probs = op.output
            pr_stats = []
            if lp["prob"]:
                probs, pr_stats = apply_prob_groups(probs, scores, lp["prob"])
                op.output = probs
            for i, g in enumerate(lp["score"]):
                after = group_levels(probs, g)
                st = ko_stats[i]
                # before-values from the kernel, after-values from the op's real output
                ko_stats[i] = torch.stack([st[0], after[0], st[2], after[1], after[2], st[5]])
            reads = [read_levels(probs, r[0], r[1], r[2]) for r in lp["read"]]
            if ko_stats:
                out["ko" + str(layer)] = torch.stack(ko_stats).cpu().save()
            if pr_stats:
                out["pr" + str(layer)] = torch.stack(pr_stats).cpu().save()
            if reads:
                out["rd" + str(layer)] = torch.stack(reads).cpu().save()
        lp_last = output_summaries(model, inputs, out, base_lp, base_rows, keep, in_session)
    return out, lp_last


def _ends_with(buf: list, seq: list) -> bool:
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
) -> tuple:
    """One nnsight ``generate`` with edits re-applied at every step (KV cache on).

    ``rows[r]`` describes batch row ``r``: ``{"edits": [[layers, heads, targets, opcode,
    param], ...], "sources": [...], "policy": "markers" | "continuation", "markers": [[ids],
    ...]}`` in padded coordinates. At step 0 (prefill) the prompt source rows are edited (with
    ``continuation``: every row from the first source on). At step ``i >= 1`` the single new
    query row (absolute position ``prompt_len + i - 1``) is edited if ``continuation`` or if the
    tokens generated so far end with one of the row's marker sequences (that row is the marker's
    last token). Returns ``(sequences, stats)`` where ``stats`` rows are ``[step, row, layer,
    level_before, level_after, mass_before, mass_after, max_error, n_bad]``.
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
                        if _ends_with(generated[r], seq):
                            hit = True
                    active.append([q_len - 1] if hit else [])
            for layer in layers:
                score_groups = []
                prob_groups = []
                for r, row in enumerate(rows):
                    if not active[r]:
                        continue
                    for e in row["edits"]:
                        if layer in e[0]:
                            g = [r, e[1], active[r], e[2], e[3], e[4]]
                            if e[3] == KNOCKOUT:
                                score_groups.append(g)
                            else:
                                prob_groups.append(g)
                if not score_groups and not prob_groups:
                    continue
                path, call_op, sm_op = sites[layer]
                op = getattr(getattr(model.get(path).source, call_op).source, sm_op)
                scores = op.input
                ko_stats = []
                if score_groups:
                    scores, ko_stats = apply_score_groups(scores, score_groups)
                    op.input = scores
                probs = op.output
                pr_stats = []
                if prob_groups:
                    probs, pr_stats = apply_prob_groups(probs, scores, prob_groups)
                    op.output = probs
                for g, st in zip(score_groups, ko_stats, strict=False):
                    after = group_levels(probs, g)
                    vals = [st[0], after[0], st[2], after[1], after[2], st[5]]
                    stats.append([step, g[0], layer] + [float(v) for v in vals])
                for g, st in zip(prob_groups, pr_stats, strict=False):
                    stats.append([step, g[0], layer] + [float(v) for v in st])
        sequences = tracer.result.save()
    return sequences, stats


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


def mask_rows(q, k, mask, b: int, sources: list, scaling: float, softcap) -> tuple:
    """Pre-softmax scores and probabilities of batch row ``b``'s query rows ``sources``.

    ``q`` is ``[B, H, Q, D]``, ``k`` ``[B, Hkv, K, D]``, ``mask`` additive ``[B|1, 1|H, Q, K]``.
    Returns ``(scores [H, S, K] float32, probs [H, S, K] float32)``.
    """
    rep = q.shape[1] // k.shape[1]
    s = torch.tensor(sources, device=q.device)
    keys = torch.repeat_interleave(k[b], rep, dim=0).float()  # [H, K, D]
    scores = torch.matmul(q[b][:, s, :].float(), keys.transpose(1, 2)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    m = mask[b if mask.shape[0] > 1 else 0][:, s, :].float()  # [1|H, S, K]
    scores = scores + m
    return scores, torch.softmax(scores, dim=-1)


def traced_pass_mask(
    model, inputs: dict, sites: list, plan: dict, base_lp, base_rows, keep: bool, in_session: bool
) -> tuple:
    """:func:`traced_pass` for the additive-mask route (knockout and scale only).

    Edits the ``attention_mask`` argument of each edited layer's attention-function call and
    computes the achieved attention of the edited and probed rows from that call's queries,
    keys and edited mask. Works under SDPA and eager alike.
    """
    out = {}
    with model.trace(inputs):
        for layer in sorted(plan):
            lp = plan[layer]
            path, call_op, _sm_op = sites[layer]
            call = getattr(model.get(path).source, call_op)
            args, kwargs = call.inputs
            q, k = args[1], args[2]
            mask = args[4] if len(args) > 4 else kwargs.get("attention_mask")
            scaling = kwargs.get("scaling")
            if scaling is None:
                scaling = q.shape[-1] ** -0.5
            softcap = kwargs.get("softcap")
            base_mask = float_mask(mask, q, k)
            groups = lp["score"] + lp["prob"]
            new_mask = base_mask
            if groups:
                full = base_mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2]).clone()
                for g in groups:
                    h, s_idx, t_idx = _index(full, g[1], q.shape[1], g[2], g[3])
                    add = -math.inf if g[4] == KNOCKOUT else math.log(g[5])
                    block = full[g[0], h[:, None], s_idx[None, :], :]
                    block[:, :, t_idx] = block[:, :, t_idx] + add
                    full[g[0], h[:, None], s_idx[None, :], :] = block
                new_mask = full
                if len(args) > 4:
                    call.inputs = ((*args[:4], new_mask, *args[5:]), kwargs)
                else:
                    kw = dict(kwargs)
                    kw["attention_mask"] = new_mask
                    call.inputs = (args, kw)
            stats = []
            thresh = masked_threshold(q.dtype)
            for g in groups:
                b, heads, sources, targets = g[0], g[1], g[2], g[3]
                h, s_idx, t_idx = _index(q, heads, q.shape[1], sources, targets)
                sc0, p0 = mask_rows(q, k, base_mask, b, sources, scaling, softcap)
                sc1, p1 = mask_rows(q, k, new_mask, b, sources, scaling, softcap)
                lb, mb = head_mean_levels(p0, t_idx)
                la, ma = head_mean_levels(p1, t_idx)
                own0 = p0[h][:, :, t_idx]
                own1 = p1[h][:, :, t_idx]
                masked = (sc0[h][:, :, t_idx] <= thresh).sum()
                dead = ((sc1[h] > thresh).sum(-1) == 0).sum()
                if g[4] == KNOCKOUT:
                    err = own1.abs().max()
                else:
                    m = own0.sum(-1)
                    f = g[5]
                    err = (own1.sum(-1) - f * m / (1.0 - m + f * m)).abs().max()
                stats.append(torch.stack([lb, la, mb, ma, err, (masked + dead).float()]))
            if lp["score"]:
                out["ko" + str(layer)] = torch.stack(stats[: len(lp["score"])]).cpu().save()
            if lp["prob"]:
                out["pr" + str(layer)] = torch.stack(stats[len(lp["score"]) :]).cpu().save()
            reads = []
            for r in lp["read"]:
                _, p = mask_rows(q, k, new_mask, r[0], r[1], scaling, softcap)
                level, mass = head_mean_levels(p, torch.tensor(r[2], device=q.device))
                reads.append(torch.stack([level, mass]))
            if reads:
                out["rd" + str(layer)] = torch.stack(reads).cpu().save()
        lp_last = output_summaries(model, inputs, out, base_lp, base_rows, keep, in_session)
    return out, lp_last
