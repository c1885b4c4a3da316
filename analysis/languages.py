"""Python against Rust: the observed attention gap (raw and position-normalised) and H1.

**Observe.** The marker->function attention level at the chosen layer, Python vs Rust (Welch t,
Cohen's d), twice: as read, and normalised for the marker's position -- the level times the
number of keys the marker row can attend to, i.e. the level relative to uniform attention (a
marker at token 65 spreads its attention over twice as many keys as one at token 30).

**H1** (the roadmap: the knockout effect is larger in Python than in Rust), per knockout scope:
each language's per-prompt effect of the knockout against its first control draw, on four
measures -- the drop in preservation, the KL at the prediction, the rate of changed top-1
predictions, and the perplexity delta of the test after the marker -- with a paired BCa
bootstrap CI over prompts; then Python − Rust with an unpaired bootstrap CI over prompts
(the languages hold different prompts). "Larger in Python" when that CI lies above 0; when it
lies below 0, "larger in Rust", or "opposite direction in Python" if Python's own effect is
below 0 with its whole CI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.hypothesis import TestResult, bootstrap_mean_diff, cohens_d, welch_t
from analysis.pairing import paired
from analysis.scopes import scope_order, with_scope

__all__ = ["H1_MEASURES", "H1Result", "ObserveResult", "h1", "observe"]

H1_MEASURES = {
    "preservation drop": "share of generations preserved under the control minus under the "
    "knockout (generation prompts)",
    "KL": "KL(baseline || condition) at the prediction, knockout minus control (nats)",
    "top-1 changed": "share of prompts whose top-1 prediction changed, knockout minus control",
    "PPL delta": "perplexity of the test after the marker, (knockout - baseline) minus "
    "(control - baseline) (test samples)",
}


@dataclass(frozen=True, kw_only=True)
class H1Result:
    """H1 on one measure in one scope of one model.

    Attributes:
        python / rust: each language's mean effect with its paired bootstrap CI (None when
            the language lacks the data).
        difference: Python − Rust, unpaired bootstrap CI (None unless both exist).
        verdict: ``larger in Python``, ``larger in Rust``, ``opposite direction in Python``
            (Python's own effect is below zero with its whole CI: the knockout moved the
            measure against the prediction there) or ``no difference shown``.
    """

    model: str
    scope: str
    measure: str
    python: TestResult | None
    rust: TestResult | None
    difference: TestResult | None
    verdict: str


def _effects(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None, scope: str, measure: str
) -> pd.Series | None:
    """Per-prompt effect of ``knockout@scope`` against its first control draw (positive =
    a larger effect of the knockout)."""
    ko, ctrl = f"knockout@{scope}", f"random_control@{scope}#0"
    if measure == "preservation drop":
        if gens is None:
            return None
        p = paired(gens, "preserved", ko, ctrl)
        return None if not len(p) else p["ref"].astype(float) - p["cond"].astype(float)
    if recs is None:
        return None
    if measure == "PPL delta":
        tests = recs[recs["kind"] == "test"] if "kind" in recs else recs
        p = paired(
            tests.assign(dppl=tests["ppl_condition"] - tests["ppl_baseline"]), "dppl", ko, ctrl
        )
        return None if not len(p) else p["cond"] - p["ref"]
    pred = recs[recs["kind"] == "generation"] if "kind" in recs else recs
    if measure == "KL":
        p = paired(pred, "kl", ko, ctrl)
        return None if not len(p) else p["cond"] - p["ref"]
    changed = pred.assign(changed=(~pred["top1_same"].astype(bool)).astype(float))
    p = paired(changed, "changed", ko, ctrl)
    return None if not len(p) else p["cond"] - p["ref"]


def _mean_ci(v: pd.Series) -> TestResult | None:
    if len(v) < 2:
        return None
    return bootstrap_mean_diff(
        v.to_numpy(), np.zeros(len(v)), paired=True, n_resamples=2000, seed=0
    )


def h1(
    records: pd.DataFrame | None, generations: pd.DataFrame | None, model: str
) -> list[H1Result]:
    """H1 for every knockout scope and measure of ``model`` (module docstring)."""
    recs = None if records is None else with_scope(records[records["model"] == model])
    gens = None if generations is None else with_scope(generations[generations["model"] == model])
    labels = set()
    for t in (recs, gens):
        if t is not None and len(t):
            labels |= set(t.loc[t["arm"] == "knockout", "scope"])
    out = []
    for scope in scope_order(sorted(labels)):
        for measure in H1_MEASURES:
            per = {}
            for lang in ("python", "rust"):
                r = None if recs is None else recs[recs["language"] == lang]
                g = None if gens is None else gens[gens["language"] == lang]
                per[lang] = _effects(r, g, scope, measure)
            res = {k: (None if v is None else _mean_ci(v)) for k, v in per.items()}
            diff = None
            if (
                per["python"] is not None
                and per["rust"] is not None
                and res["python"]
                and res["rust"]
            ):
                diff = bootstrap_mean_diff(per["python"].to_numpy(), per["rust"].to_numpy(),
                                           paired=False, n_resamples=2000, seed=0)  # fmt: skip
            if res["python"] is None and res["rust"] is None:
                continue
            verdict = "no difference shown"
            if diff is not None and diff.ci_low > 0:
                verdict = "larger in Python"
            elif diff is not None and diff.ci_high < 0:
                py = res["python"]
                # Signed effects: a Python effect below zero with its whole CI is a knockout
                # that moved the measure against the prediction, not a smaller effect.
                verdict = (
                    "opposite direction in Python"
                    if py is not None and py.ci_high < 0
                    else "larger in Rust"
                )
            out.append(H1Result(model=model, scope=scope, measure=measure, python=res["python"],
                                rust=res["rust"], difference=diff, verdict=verdict))  # fmt: skip
    return out


@dataclass(frozen=True, kw_only=True)
class ObserveResult:
    """Python vs Rust marker->function level in one view (raw or position-normalised)."""

    model: str
    view: str
    test: TestResult  # Welch t, effect = mean Python − mean Rust
    d: float  # Cohen's d, pooled SD
    ratio: float  # mean Python / mean Rust
    python_mean: float
    rust_mean: float


def observe(scan: pd.DataFrame, layer_of: dict[str, int] | None = None) -> list[ObserveResult]:
    """The raw and position-normalised marker->function level of test samples, Python vs
    Rust, in the scan's first scope (module docstring).

    ``layer_of``: sample -> its chosen layer (default: each sample's peak layer).
    """
    tests = scan[scan["kind"] == "test"]
    if "rows" in tests and len(tests):
        first = tests.iloc[0]
        tests = tests[(tests["rows"] == first["rows"]) & (tests["targets"] == first["targets"])]
    out = []
    for model, grp in tests.groupby("model"):
        if layer_of is not None:
            grp = grp[grp["layer"] == grp["sample_id"].map(layer_of)]
        else:
            grp = grp.loc[grp.groupby("sample_id")["attn_level"].idxmax()]
        views = {"level": grp["attn_level"]}
        if "n_keys" in grp:
            views["level × keys (position-normalised)"] = grp["attn_level"] * grp["n_keys"]
        for view, values in views.items():
            py = values[grp["language"] == "python"].dropna()
            rs = values[grp["language"] == "rust"].dropna()
            try:
                res = welch_t(py, rs)
                d = cohens_d(py, rs)
            except ValueError:
                continue
            ratio = float(py.mean() / rs.mean()) if rs.mean() else math.nan
            out.append(
                ObserveResult(
                    model=str(model),
                    view=view,
                    test=res,
                    d=d,
                    ratio=ratio,
                    python_mean=float(py.mean()),
                    rust_mean=float(rs.mean()),
                )
            )
    return out
