"""Edits, items and plans shared by the benchmarks (built the way plip_nn.trace builds them)."""

from __future__ import annotations

from collections.abc import Sequence

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, Condition, Knockout, Scale
from plip_nn.models import ModelHandle
from plip_nn.plan import build_plan, pad_batch, pad_id, plain_plan, plain_sites
from plip_nn.trace import Item


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
    return plain_sites(handle)


def batch_inputs(handle: ModelHandle, prompts: Sequence[tuple[int, ...]]) -> tuple[dict, list]:
    """Left-padded model inputs and pad offsets, exactly as the engine builds them."""
    return pad_batch(list(prompts), pad_id(handle), handle.device)


def plan_for(prompts: Sequence[tuple[int, ...]], offsets: list, edit_of) -> dict:
    """The plain per-layer plan of an edited pass (one edit per row, no extra reads)."""
    rows = [((edit_of(len(p)),), ()) for p in prompts]
    return plain_plan(build_plan(rows, offsets))


def edit_pass(model, inputs: dict, sites: list, plan: dict) -> dict:
    """An nnsight trace that applies ``plan`` through the engine's one edit site
    (:func:`plip_nn.kernels.edit_site`, with its verification), saving the logits and each
    layer's stats but no summaries (KL, NLL, top-1)."""
    out: dict = {}
    with model.trace(inputs):
        for layer in sorted(plan):
            lp = plan[layer]
            stats, _ = kernels.edit_site(
                model, sites[layer], lp[kernels.PLAN_EDITS], lp[kernels.PLAN_VERIFY], []
            )
            out[kernels.result_key(kernels.STATS, layer)] = stats.save()
        out["logits"] = model.output.logits.save()
    return out
