"""Test families and their multiplicity correction, defined once.

A family is the set of tests corrected together. Every family is corrected within one
(model, language, family) -- languages and models are never pooled -- and only over the rows
that are a family's *primary* test of a comparison: a second view of the same comparison
(the odds ratio next to its McNemar test, the paired t next to its Wilcoxon test, a bootstrap
CI) is reported but not counted again. The ``triangle`` family holds the deciding tests of one
outcome; its Bonferroni adjustment is the one :func:`analysis.triangle.classify` decides with
(both call :func:`bonferroni`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analysis.hypothesis import correct

__all__ = ["FAMILIES", "FAMILY_KEYS", "adjust_table", "bonferroni"]

FAMILY_KEYS = ("model", "language", "family")
FAMILIES: dict[str, str] = {
    "observe": "baseline attention level at the chosen layer, Python vs Rust, raw and "
    "position-normalised (Welch t; pooled Cohen's d)",
    "manipulation": "attention achieved vs baseline under each steering condition, paired "
    "(Wilcoxon signed-rank counted; paired t and d_z shown); a deciding steering condition "
    "must pass this family's Bonferroni test",
    "markers": "real vs false markers per language and layer, raw and position-normalised "
    "(Welch t; Cohen's d)",
    "knockout_kl": "secondary: per-prompt KL at the token after the marker, each knockout scope "
    "vs its deciding control's first draw, paired (Wilcoxon counted; bootstrap CI shown)",
    "callsite": "every edited condition's call-site Δlog p against baseline (mean, paired BCa "
    "95% CI; shown, not counted)",
    "preservation": "preserved under each condition vs baseline, paired (exact McNemar "
    "counted; Newcombe CIs)",
    "triangle": "the deciding tests of one model and language: each knockout scope vs every "
    "draw of its inert control and each deciding steering condition vs baseline, m of them; "
    "the call-site Δlog p decides by its paired BCa CI at 1 − α/m (no p), preservation (old "
    "runs) by this family's Bonferroni p; every draw must agree",
    "compared": "each knockout vs the renormalising control's draws (shown, never deciding)",
    "equivalence": "one row per equivalence decision: margin, 90% CI and both one-sided TOST "
    "p-values (shown; the 90% CI decides)",
    "power": "prospective power of every deciding test (analysis.power_report): statistic = "
    "the power at this n (detection of a margin-sized change at the family's Bonferroni α, or "
    "TOST within ±margin), effect = the observed discordance ψ or SD of the paired "
    "differences, n_for_80 = the n that 80% power needs (shown, not counted)",
    "h1": "knockout effect Python − Rust per scope and measure (call-site Δlog p, log-PPL, "
    "preservation, calls_function): unpaired bootstrap CI, Welch p counted, Holm across them",
    "h2": "dose-response per language and steering scope: GEE logistic trend (counted unless "
    "not estimable) with the permutation cross-check, and the hinge at the Python level",
    "heads": "held-out top-K heads (analysis.heads): preserved under the top-K knockout vs its "
    "first mass-matched random-heads draw, and under Scale of the top-K heads vs baseline "
    "(exact McNemar counted; the other draws adjusted with the same m); the comparisons with "
    "every head of the layer, single-pass bootstrap CIs and the attribution's Spearman ρ are "
    "shown, not counted",
}


def bonferroni(pvalues: ArrayLike) -> np.ndarray:
    """Bonferroni-adjusted p-values (min(1, p·m)); a p of 0 stays 0."""
    return correct(pvalues, "bonferroni")


def adjust_table(df: pd.DataFrame) -> pd.DataFrame:
    """Fill ``p_bonferroni``, ``p_holm`` and ``family_size`` for rows with ``counted`` true.

    Rows not counted get NaN and family_size 0, unless they already carry a ``p_bonferroni``
    (a control draw adjusted by the decision with its family's m): that value is kept.
    """
    out = df.copy()
    given = out["p_bonferroni"] if "p_bonferroni" in out else pd.Series(np.nan, index=out.index)
    given_m = out["family_size"] if "family_size" in out else pd.Series(0, index=out.index)
    out["p_bonferroni"] = np.nan
    out["p_holm"] = np.nan
    out["family_size"] = 0
    use = out["counted"].astype(bool) & out["pvalue"].notna()
    for _, idx in out[use].groupby(list(FAMILY_KEYS)).groups.items():
        p = out.loc[idx, "pvalue"]
        out.loc[idx, "p_bonferroni"] = bonferroni(p)
        out.loc[idx, "p_holm"] = correct(p, "holm")
        out.loc[idx, "family_size"] = len(idx)
    keep = ~use & given.notna()
    out.loc[keep, "p_bonferroni"] = given[keep]
    out.loc[keep, "family_size"] = given_m[keep].fillna(0).astype(int)
    return out
