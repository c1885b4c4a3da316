"""An independent, hand-written eager attention used as the reference for nnsight edits.

It is installed in place of a modeling module's ``eager_attention_forward`` global only while a
reference forward runs (the attention module looks the global up at call time), so it receives
exactly the arguments the model passes: queries/keys/values after RoPE and the additive mask.
The knockout is expressed in the most direct way: ``-inf`` added to the masked score matrix.
"""

from __future__ import annotations

import contextlib
import sys

import torch


def masked_scores(query, key, value, attention_mask, scaling=None, softcap=None):
    """(masked pre-softmax scores ``[B, H, q, k]``, values repeated to every query head)."""
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    rep = query.shape[1] // key.shape[1]
    k = torch.repeat_interleave(key, rep, dim=1)
    v = torch.repeat_interleave(value, rep, dim=1)
    scores = torch.matmul(query, k.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : k.shape[-2]]
    return scores, v


def inert_row(probs_row, allowed_row, removed, protected):
    """The inert control on one row of probabilities, written out key by key (float64): the
    removed keys read 0, the protected keys keep their weight, and every other allowed key gets
    a share of the removed mass proportional to its weight."""
    row = [float(x) for x in probs_row]
    gone = sum(row[k] for k in removed)
    receivers = [
        j
        for j in range(len(row))
        if bool(allowed_row[j]) and j not in removed and j not in protected
    ]
    assert receivers, "the reference row has no key to take the removed mass"
    total = sum(row[j] for j in receivers)
    for j in receivers:
        row[j] = row[j] + gone * row[j] / total
    for k in removed:
        row[k] = 0.0
    return torch.tensor(row, dtype=torch.float64)


def make_reference(
    knock: dict[int, list[tuple[int, int, int]]] | None = None,
    bias=None,
    inert=None,
    record: dict | None = None,
):
    """Reference attention.

    ``knock[layer] = [(batch, source, target), ...]``: score -> -inf on all heads.
    ``bias[layer] = [(batch, source, target, add), ...]``: ``add`` added to the masked score
    (``log f`` there is Scale(f): softmax(s + log f) = f p / sum(f p)).
    ``inert[layer] = [(batch, source, removed keys, protected keys), ...]``: the inert control
    on every head of that row (:func:`inert_row`), applied to the probabilities.
    ``record``: filled with ``layer -> (probs before the inert edit, probs after)`` (float64).
    """
    knock = knock or {}
    bias = bias or {}
    inert = inert or {}

    def attention(
        module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, **_
    ):
        scores, v = masked_scores(query, key, value, attention_mask, scaling, softcap)
        extra = torch.zeros_like(scores)
        for b, s, t in knock.get(module.layer_idx, []):
            extra[b, :, s, t] = float("-inf")
        for b, s, t, add in bias.get(module.layer_idx, []):
            extra[b, :, s, t] += add
        probs = torch.softmax((scores + extra).float(), dim=-1)
        rows = inert.get(module.layer_idx, [])
        if rows or record is not None:
            before = probs.double().clone()
            edited = before.clone()
            allowed = scores > torch.finfo(scores.dtype).min / 2
            for b, s, removed, protected in rows:
                for h in range(probs.shape[1]):
                    edited[b, h, s] = inert_row(
                        before[b, h, s], allowed[b, h, s], removed, protected
                    )
            probs = edited.float()
            if record is not None:
                record[module.layer_idx] = (before, edited)
        probs = probs.to(value.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).contiguous()
        return out, probs

    return attention


@contextlib.contextmanager
def swapped_attention(model: torch.nn.Module, fn):
    """Swap every attention module's eager function for ``fn`` while the block runs."""
    modules = {sys.modules[type(m).__module__] for m in model.modules() if hasattr(m, "layer_idx")}
    saved = {
        mod: mod.eager_attention_forward
        for mod in modules
        if hasattr(mod, "eager_attention_forward")
    }
    assert saved, "no modeling module with eager_attention_forward"
    try:
        for mod in saved:
            mod.eager_attention_forward = fn
        yield
    finally:
        for mod, orig in saved.items():
            mod.eager_attention_forward = orig


def reference_attention(model: torch.nn.Module, knock=None, bias=None, inert=None, record=None):
    """Swap every attention module's eager function for the reference while the block runs."""
    return swapped_attention(model, make_reference(knock, bias, inert, record))
