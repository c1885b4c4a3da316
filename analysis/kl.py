"""Next-token distribution metrics: KL divergence, top-1 stability, perplexity.

Direction: ``kl_divergence(p, q)`` is KL(P ‖ Q) = Σ_v P(v) (log P(v) − log Q(v)) in nats, with
P the *baseline* and Q the *edited condition* in every plip-nn record (``kl`` column).
Shapes: ``[..., vocab]``; the last axis is the vocabulary, leading axes are batch axes.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_softmax

__all__ = ["kl_divergence", "perplexity", "perplexity_delta", "top1_same"]


def _as_float64(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a vocabulary axis (shape [..., vocab]); got a scalar")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} has an empty vocabulary axis (shape {arr.shape})")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; pass finite logits or log-probabilities")
    if np.isposinf(arr).any():
        raise ValueError(f"{name} contains +inf; pass finite logits or log-probabilities")
    return arr


def _log_probs(x: np.ndarray, name: str, from_logits: bool) -> np.ndarray:
    if from_logits:
        return log_softmax(x, axis=-1)
    total = np.exp(x).sum(axis=-1)
    if not np.allclose(total, 1.0, atol=1e-6):
        raise ValueError(
            f"{name} are not log-probabilities (exp sums to {np.ravel(total)[:3]} on the last "
            "axis); pass from_logits=True for raw logits"
        )
    return x


def kl_divergence(
    logits_or_logprobs_p: ArrayLike,
    logits_or_logprobs_q: ArrayLike,
    *,
    from_logits: bool = True,
) -> float | np.ndarray:
    """KL(P ‖ Q) in nats, float64, no smoothing.

    Args:
        logits_or_logprobs_p: P (the baseline), shape ``[..., vocab]``.
        logits_or_logprobs_q: Q (the condition), same shape.
        from_logits: True for raw logits (normalised with ``log_softmax``), False when the
            inputs already are log-probabilities.

    Returns:
        A float for 1-D inputs, else an array of shape ``[...]``. Where Q gives zero mass to a
        token that P gives mass to, the result is ``inf`` (no epsilon smoothing).
    """
    p = _as_float64(logits_or_logprobs_p, "logits_or_logprobs_p")
    q = _as_float64(logits_or_logprobs_q, "logits_or_logprobs_q")
    if p.shape != q.shape:
        raise ValueError(
            f"P and Q shapes differ: {p.shape} vs {q.shape}; both must be [..., vocab]"
        )
    log_p = _log_probs(p, "logits_or_logprobs_p", from_logits)
    log_q = _log_probs(q, "logits_or_logprobs_q", from_logits)
    prob_p = np.exp(log_p)
    # Terms with P(v) = 0 contribute 0 (0·log 0 = 0), even where Q(v) = 0 too.
    with np.errstate(invalid="ignore"):
        terms = np.where(prob_p > 0, prob_p * (log_p - log_q), 0.0)
    kl = terms.sum(axis=-1)
    kl = np.maximum(kl, 0.0)  # rounding can give −1e-17 for identical rows
    return float(kl) if kl.ndim == 0 else kl


def top1_same(logits_p: ArrayLike, logits_q: ArrayLike) -> bool | np.ndarray:
    """Whether the argmax over the last axis is the same in P and Q (shape ``[..., vocab]``)."""
    p = _as_float64(logits_p, "logits_p")
    q = _as_float64(logits_q, "logits_q")
    if p.shape != q.shape:
        raise ValueError(f"P and Q shapes differ: {p.shape} vs {q.shape}")
    same = np.argmax(p, axis=-1) == np.argmax(q, axis=-1)
    return bool(same) if same.ndim == 0 else same


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """Perplexity exp(nll_sum / n_tokens) of a sample's own tokens (nll in nats)."""
    if isinstance(n_tokens, bool) or int(n_tokens) != n_tokens or n_tokens < 1:
        raise ValueError(f"n_tokens must be a positive integer; got {n_tokens!r}")
    if not math.isfinite(nll_sum) or nll_sum < 0:
        raise ValueError(f"nll_sum must be a finite non-negative number of nats; got {nll_sum!r}")
    return math.exp(nll_sum / n_tokens)


def perplexity_delta(nll_baseline: float, nll_condition: float, n_tokens: int) -> float:
    """PPL_condition − PPL_baseline over the same ``n_tokens`` tokens."""
    return perplexity(nll_condition, n_tokens) - perplexity(nll_baseline, n_tokens)
