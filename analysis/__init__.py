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
    wilcoxon_signed_rank,
)
from analysis.kl import kl_divergence, perplexity, perplexity_delta, top1_same
from analysis.preservation import Preservation, score, score_python, score_rust
from analysis.triangle import TriangleOutcome, classify, classify_all

__all__ = [
    "Preservation",
    "TestResult",
    "TriangleOutcome",
    "bootstrap_mean_diff",
    "classify",
    "classify_all",
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
    "wilcoxon_signed_rank",
]
