"""Left padding of token batches: model inputs with explicit positions, and the pad token.

Every pass and generation loop left-pads its rows (:func:`pad_batch`); an edit's token
positions then shift by the row's pad offset (:func:`plip_nn.plan.build_plan`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from plip_nn.models import ModelHandle

__all__ = ["pad_batch", "pad_id"]


def pad_batch(
    seqs: Sequence[tuple[int, ...]], pad: int, device: torch.device | str
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Left-pad ``seqs`` with token ``pad``; returns model inputs and each row's pad offset."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    offsets = []
    for r, s in enumerate(seqs):
        off = width - len(s)
        ids[r, off:] = torch.tensor(s, dtype=torch.long)
        mask[r, off:] = 1
        offsets.append(off)
    # Explicit position ids: left padding must not shift absolute positions.
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    inputs = {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": position_ids.to(device),
    }
    return inputs, offsets


def pad_id(handle: ModelHandle) -> int:
    """The pad token of the model's tokenizer (its EOS if it has none, else 0)."""
    tok = handle.tokenizer
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tok, attr, None) if tok is not None else None
        if v is not None:
            return int(v)
    return 0
