"""KL / top-1 / perplexity against scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import rel_entr, softmax
from scipy.stats import entropy

from analysis.kl import kl_divergence, perplexity, perplexity_delta, top1_same


def test_kl_from_logits_matches_scipy_entropy() -> None:
    rng = np.random.default_rng(0)
    p_logits, q_logits = rng.normal(size=50), rng.normal(size=50)
    expected = entropy(softmax(p_logits), softmax(q_logits))  # KL(P || Q) in nats
    assert kl_divergence(p_logits, q_logits) == pytest.approx(expected, rel=1e-12)


def test_kl_direction_is_p_given_q() -> None:
    p, q = np.array([0.9, 0.1]), np.array([0.5, 0.5])
    hand = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    got = kl_divergence(np.log(p), np.log(q), from_logits=False)
    assert got == pytest.approx(hand, rel=1e-12)
    assert kl_divergence(np.log(q), np.log(p), from_logits=False) != pytest.approx(hand)


def test_kl_batched_matches_rel_entr_rowwise() -> None:
    rng = np.random.default_rng(1)
    p_logits, q_logits = rng.normal(size=(3, 4, 20)), rng.normal(size=(3, 4, 20)) * 3
    got = kl_divergence(p_logits, q_logits)
    assert isinstance(got, np.ndarray) and got.shape == (3, 4)
    expected = rel_entr(softmax(p_logits, axis=-1), softmax(q_logits, axis=-1)).sum(axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_kl_logits_invariant_to_shift_and_zero_for_identical() -> None:
    x = np.array([1.0, 2.0, 3.0])
    assert kl_divergence(x, x + 100.0) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(x, x) == 0.0


def test_kl_float32_input_is_computed_in_float64() -> None:
    rng = np.random.default_rng(2)
    p, q = rng.normal(size=1000).astype(np.float32), rng.normal(size=1000).astype(np.float32)
    expected = entropy(softmax(p.astype(np.float64)), softmax(q.astype(np.float64)))
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-12)


def test_kl_no_smoothing_gives_inf_for_zero_mass_in_q() -> None:
    p = np.log(np.array([0.5, 0.5]))
    q = np.array([0.0, -np.inf])
    assert kl_divergence(p, q, from_logits=False) == math.inf
    # Zero mass in P contributes nothing, even where Q is zero as well.
    assert kl_divergence(q, q, from_logits=False) == 0.0


@pytest.mark.parametrize(
    ("p", "q", "match"),
    [
        ([np.nan, 0.0], [0.0, 0.0], "logits_or_logprobs_p contains NaN"),
        ([0.0, 0.0], [0.0, np.nan], "logits_or_logprobs_q contains NaN"),
        ([0.0, 0.0], [0.0, 0.0, 0.0], "shapes differ"),
        (1.0, 1.0, "vocabulary axis"),
        ([0.0, np.inf], [0.0, 0.0], r"\+inf"),
    ],
)
def test_kl_bad_input(p: object, q: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kl_divergence(p, q)  # type: ignore[arg-type]


def test_kl_logprobs_must_normalise() -> None:
    with pytest.raises(ValueError, match="from_logits=True"):
        kl_divergence([1.0, 2.0], [1.0, 2.0], from_logits=False)


def test_top1_same() -> None:
    assert top1_same([0.1, 3.0, 0.2], [5.0, 6.0, 0.0]) is True
    assert top1_same([0.1, 3.0, 0.2], [7.0, 6.0, 0.0]) is False
    got = top1_same([[0.0, 1.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, 2.0]])
    np.testing.assert_array_equal(got, [True, False])


def test_perplexity_hand_values() -> None:
    assert perplexity(0.0, 5) == 1.0
    assert perplexity(4 * math.log(2), 4) == pytest.approx(2.0)
    assert perplexity_delta(3 * math.log(2), 3 * math.log(4), 3) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("nll", "n"), [(1.0, 0), (1.0, 2.5), (math.nan, 3), (-1.0, 3), (1.0, True)]
)
def test_perplexity_bad_input(nll: float, n: int) -> None:
    with pytest.raises(ValueError):
        perplexity(nll, n)
