"""plip-nn analysis: pure functions over run-directory records (never loads a model)."""

from analysis.hypothesis import (
    TestResult,
    bootstrap_mean_diff,
    cohens_d,
    correct,
    mcnemar_exact,
    mcnemar_from_pairs,
    mcnemar_odds_ratio,
    odds_ratio,
    paired_t,
    welch_t,
    wilcoxon_signed_rank,
)
from analysis.pairing import paired
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
    "mcnemar_exact",
    "mcnemar_from_pairs",
    "mcnemar_odds_ratio",
    "odds_ratio",
    "paired",
    "paired_t",
    "score",
    "score_python",
    "score_rust",
    "welch_t",
    "wilcoxon_signed_rank",
]
