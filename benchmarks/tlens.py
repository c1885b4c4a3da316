"""TransformerLens (optional): ``run_with_hooks`` knockout / scale on the same random model.

TransformerLens 4 replaced ``HookedTransformer`` with ``TransformerBridge``; we boot a bridge
around a *copy* of the benchmark's HF model (same weights, eager attention, no download) and
edit attention with hooks on ``hook_attn_scores`` (knockout) and ``hook_pattern`` (scale).
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)


class TransformerLensUnavailable(RuntimeError):
    """TransformerLens is not installed or cannot build a model from our config offline."""


def bridge_for(hf_model: torch.nn.Module, tokenizer: Any) -> tuple[Any, str]:
    """A TransformerBridge around a deep copy of ``hf_model``; returns (bridge, version)."""
    try:
        import transformer_lens
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as err:
        raise TransformerLensUnavailable(
            f"transformer_lens is not importable ({err}); `.venv/bin/pip install "
            "transformer_lens` adds the extra column"
        ) from err
    version = getattr(transformer_lens, "__version__", "unknown")
    if version == "unknown":
        from importlib.metadata import version as dist_version

        version = dist_version("transformer_lens")
    model: Any = copy.deepcopy(hf_model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.config.save_pretrained(tmp)  # the bridge reads the config by name; no weights
        try:
            bridge = TransformerBridge.boot_transformers(
                tmp, hf_model=model, tokenizer=tokenizer, device="cpu"
            )
        except Exception as err:  # any failure means "no TL column", with the reason
            raise TransformerLensUnavailable(
                f"TransformerBridge.boot_transformers failed: {type(err).__name__}: {err}"
            ) from err
    return bridge, version


def knockout_hook(rows: list[tuple[int, int, list[int]]]) -> Callable:
    """Hook on ``hook_attn_scores``: score[b, :, s, t] = -inf for each (b, s, targets)."""

    def hook(scores: torch.Tensor, hook: Any) -> torch.Tensor:
        scores = scores.clone()
        for b, s, targets in rows:
            scores[b, :, s, targets] = -math.inf
        return scores

    return hook


def scale_hook(rows: list[tuple[int, int, list[int]]], factor: float) -> Callable:
    """Hook on ``hook_pattern``: p[b, :, s, t] *= factor, then renormalise the row."""

    def hook(pattern: torch.Tensor, hook: Any) -> torch.Tensor:
        pattern = pattern.clone()
        for b, s, targets in rows:
            row = pattern[b, :, s, :]  # [heads, k]
            row[:, targets] = row[:, targets] * factor
            pattern[b, :, s, :] = row / row.sum(-1, keepdim=True)
        return pattern

    return hook


def variants(
    bridge: Any,
    input_ids: torch.Tensor,
    rows: list[tuple[int, int, list[int]]],
    ko_layer: int,
    n_layers: int,
    factor: float,
) -> tuple[dict[str, Callable[[], object]], dict[str, Any]]:
    """Timed callables (plain bridge forward, knockout at one layer, scale at all layers) and a
    check that the knockout reads exactly 0 in the bridge's attention pattern."""
    ko = [(f"blocks.{ko_layer}.attn.hook_attn_scores", knockout_hook(rows))]
    sc = [(f"blocks.{i}.attn.hook_pattern", scale_hook(rows, factor)) for i in range(n_layers)]
    seen: dict[str, torch.Tensor] = {}

    def grab(pattern: torch.Tensor, hook: Any) -> None:
        seen["p"] = pattern.detach().clone()

    with torch.inference_mode():
        bridge.run_with_hooks(
            input_ids, fwd_hooks=[*ko, (f"blocks.{ko_layer}.attn.hook_pattern", grab)]
        )
    achieved = max(float(seen["p"][b, :, s, targets].abs().max()) for b, s, targets in rows)

    def plain() -> object:
        with torch.inference_mode():
            return bridge(input_ids)

    def knockout() -> object:
        with torch.inference_mode():
            return bridge.run_with_hooks(input_ids, fwd_hooks=ko)

    def scale() -> object:
        with torch.inference_mode():
            return bridge.run_with_hooks(input_ids, fwd_hooks=sc)

    check = {"knockout_max_weight": achieved, "knockout_reads_zero": achieved == 0.0}
    return {"tl_plain": plain, "tl_knockout_1": knockout, "tl_scale_all": scale}, check
