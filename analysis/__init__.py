"""plip-nn analysis: pure functions over run-directory records (never loads a model)."""

from analysis.hypothesis import (
    TestResult,
    bootstrap_mean_diff,
    cohens_d,
    correct,
    mcnemar_exact,
    mcnemar_from_pairs,
    odds_ratio,
    welch_t,
)
from analysis.kl import kl_divergence, perplexity, perplexity_delta, top1_same
from analysis.preservation import Preservation, score, score_python, score_rust

__all__ = [
    "Preservation",
    "TestResult",
    "bootstrap_mean_diff",
    "cohens_d",
    "correct",
    "kl_divergence",
    "mcnemar_exact",
    "mcnemar_from_pairs",
    "odds_ratio",
    "perplexity",
    "perplexity_delta",
    "score",
    "score_python",
    "score_rust",
    "top1_same",
    "welch_t",
]
