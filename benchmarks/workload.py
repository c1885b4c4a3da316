"""Edits, items and plans shared by the benchmarks (built the way plip_nn.trace builds them)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, Condition, Knockout, Scale
from plip_nn.models import ModelHandle
from plip_nn.trace import Item, _build_plan, _pad_batch, _pad_id, _plain


def marker_edit(n_tokens: int, layers: tuple[int, ...], op: Knockout | Scale) -> AttentionEdit:
    """An edit from the last token (the "marker") to three earlier tokens (the "function")."""
    targets = tuple(sorted({1, n_tokens // 4, n_tokens // 2}))
    return AttentionEdit(layers=layers, sources=(n_tokens - 1,), targets=targets, op=op)


def knockout_one(handle: ModelHandle, n_tokens: int) -> AttentionEdit:
    return marker_edit(n_tokens, (handle.n_layers // 2,), Knockout())


def scale_all(handle: ModelHandle, n_tokens: int, factor: float = 2.0) -> AttentionEdit:
    return marker_edit(n_tokens, tuple(range(handle.n_layers)), Scale(factor=factor))


def items_for(prompts: Sequence[tuple[int, ...]], edit_of, name: str) -> list[Item]:
    """One item per prompt under a single-edit condition; ``edit_of(n_tokens)`` makes the edit."""
    return [
        Item(
            key=f"{name}/{i}",
            sample_id=f"p{i}",
            input_ids=p,
            condition=Condition(name=name, edits=(edit_of(len(p)),)),
        )
        for i, p in enumerate(prompts)
    ]


def sites_of(handle: ModelHandle) -> list:
    return [(s.module_path, s.call_op, s.softmax_op) for s in handle.sites]


def batch_inputs(handle: ModelHandle, prompts: Sequence[tuple[int, ...]]) -> tuple[dict, list]:
    """Left-padded model inputs and pad offsets, exactly as the engine builds them."""
    return _pad_batch(list(prompts), _pad_id(handle), handle.device)


def plan_for(prompts: Sequence[tuple[int, ...]], offsets: list, edit_of) -> dict:
    """The plain per-layer plan of an edited pass (one edit per row, no extra reads)."""
    rows = [((edit_of(len(p)),), ()) for p in prompts]
    return _plain(_build_plan(rows, offsets))


def edit_pass(model, inputs: dict, sites: list, plan: dict) -> dict:
    """An nnsight trace that applies ``plan`` with the kernels exactly as ``traced_pass`` does,
    saving the logits and each group's verification stats but no summaries (KL, NLL, top-1)."""
    out: dict = {}
    with model.trace(inputs):
        for layer in sorted(plan):
            lp = plan[layer]
            path, call_op, sm_op = sites[layer]
            op = getattr(getattr(model.get(path).source, call_op).source, sm_op)
            scores = op.input
            if lp["score"]:
                scores, ko_stats = kernels.apply_score_groups(scores, lp["score"])
                op.input = scores
                out["ko" + str(layer)] = torch.stack(ko_stats).save()
            if lp["prob"]:
                probs, pr_stats = kernels.apply_prob_groups(op.output, scores, lp["prob"])
                op.output = probs
                out["pr" + str(layer)] = torch.stack(pr_stats).save()
        out["logits"] = model.output.logits.save()
    return out
