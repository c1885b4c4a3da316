"""Per-row decoding in a batched ``generate``: each row's own sampler and its own stop.

:class:`RowSampler` samples each seeded row from its own generator (a row's tokens never depend
on its batch); :class:`RowStop` ends each row whose request's stop rule accepts its text.
:func:`plip_nn.generate.generate` uses both; they are here so that the batched loop and its
per-row rules stay apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import StoppingCriteria

if TYPE_CHECKING:
    from plip_nn.generate import GenerationRequest

__all__ = ["RowSampler", "RowStop", "row_generator", "sample_tokens", "token_texts"]


_TEXTS: dict[int, tuple[Any, list[str]]] = {}


def token_texts(tokenizer: Any) -> list[str]:
    """Each token id's text (``texts[id]``), as the in-trace ``to_call`` check reads generated
    tokens; decoded once per tokenizer (special tokens read as empty)."""
    got = _TEXTS.get(id(tokenizer))
    if got is not None and got[0] is tokenizer:
        return got[1]
    n = len(tokenizer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
    texts = ["" if i in special else t for i, t in enumerate(texts)]
    _TEXTS[id(tokenizer)] = (tokenizer, texts)
    return texts


class RowSampler:
    """A logits processor that samples each seeded row with its own generator.

    Row ``r`` with ``seeds[r]`` set draws its token from softmax(scores / temperature) by the
    inverse CDF (:func:`sample_tokens`) with one uniform per step from a CPU
    ``torch.Generator`` seeded ``seeds[r]``, and that token's score set to +inf, so the
    greedy ``generate`` picks it; rows without a seed are left as they are (greedy).
    A row's draws depend only on its own scores and seed, never on the other rows of its
    batch nor on the device. The scores are HF's after its processors (EOS banned until
    ``min_new_tokens``). One vectorised draw serves all seeded rows of a step.
    """

    def __init__(self, seeds: Sequence[int | None], temperature: float) -> None:
        self.rows = [r for r, seed in enumerate(seeds) if seed is not None]
        self.generators = [row_generator(int(seeds[r] or 0)) for r in self.rows]
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return scores
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        rows = torch.tensor(self.rows, device=scores.device)
        tok = sample_tokens(scores[rows], self.temperature, u.to(scores.device))
        scores[rows, tok] = math.inf  # HF's own copy of the step's logits: argmax picks tok
        return scores


def row_generator(seed: int) -> torch.Generator:
    """The CPU generator of a seeded row (its uniforms, one per step, drive :func:`sample_tokens`)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def sample_tokens(scores: torch.Tensor, temperature: float, u: torch.Tensor) -> torch.Tensor:
    """Per row of ``scores`` [n, V], the token at ``u`` [n] (uniforms in [0, 1)) of the CDF of
    softmax(scores / temperature) in float64: the first token whose cumulative probability
    exceeds ``u`` times the total (so never a token of probability 0)."""
    probs = torch.softmax(scores.double() / temperature, dim=-1)
    cdf = probs.cumsum(-1)
    x = (u.double() * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, x, right=True).squeeze(-1).clamp_max(scores.shape[-1] - 1)


class RowStop(StoppingCriteria):
    """Ends each row of a batch whose request's ``stop`` accepts the text of its new tokens.

    Called by ``generate`` after every step with the whole ``input_ids``; a row ends once (its
    length is recorded) and stays ended. ``last`` is the latest ``input_ids``: the batch's
    sequences when the run ends early (the trace's result is then not read).
    """

    def __init__(self, batch: Sequence[GenerationRequest], width: int, tokenizer: Any) -> None:
        self.batch = list(batch)
        self.width = width
        self.tokenizer = tokenizer
        self.texts = token_texts(tokenizer)
        self.watch = [r for r, req in enumerate(self.batch) if req.stop is not None]
        self.length: dict[int, int] = {}
        self.last: torch.Tensor | None = None

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        self.last = input_ids
        new = input_ids[:, self.width :]
        n = new.shape[1]
        for r in self.watch:
            if r in self.length:
                continue
            req = self.batch[r]
            chars = req.stop_chars
            tid = int(new[r, -1]) if n else -1
            # an id beyond the tokenizer's texts (a model vocabulary larger than the
            # tokenizer's) is never filtered out
            if (chars is not None and 0 <= tid < len(self.texts)
                    and not any(c in self.texts[tid] for c in chars)):  # fmt: skip
                continue
            text = self.tokenizer.decode(new[r].tolist(), skip_special_tokens=False)
            if req.stop is not None and req.stop(text):
                self.length[r] = n
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.length:
            done[list(self.length)] = True
        return done
