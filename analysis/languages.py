"""Python against Rust: the observed attention gap (raw and position-normalised), real against
false markers at every layer, and H1.

**Observe.** The marker->function attention level at the chosen layer, Python vs Rust (Welch t,
Cohen's d), in the **edited scope** (the study's default rows/targets, never the PLIP-rs scope
the scan also reads), twice: as read, and normalised for the marker's position -- the level
times the number of keys the marker row can attend to (``n_keys``), i.e. the level relative to
uniform attention. **Real vs false markers**: per language and layer, test samples (real
markers) against ``kind == "baseline"`` samples (false markers), raw and position-normalised
(Welch t, Cohen's d).

**H1** (the roadmap: the knockout effect is larger in Python than in Rust), per knockout scope,
on four measures -- the call-site Δlog p of the gold name token, the test's log-perplexity
(nats per token), the drop in preservation and the drop in ``calls_function`` -- each
language's per-prompt effect of the knockout against its deciding control (inert draw 0; old
runs: the renormalising draw 0), with a paired BCa bootstrap CI; then Python − Rust with an
unpaired bootstrap CI and a Welch t p-value, **Holm-corrected across every H1 comparison of the
model** (statsmodels ``multipletests``). "Larger in Python" when the Holm p < α and the
difference is positive; "larger in Rust" when negative, or "opposite direction in Python" if
Python's own effect lies below 0 with its whole CI; else "no difference shown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from analysis.callsite import call_rows
from analysis.hypothesis import TestResult, bootstrap_mean_diff, cohens_d, welch_t
from analysis.pairing import paired
from analysis.scopes import scope_order, with_scope
from plip_nn.scope import DEFAULT_ROWS, DEFAULT_TARGETS, PLIP_ROWS, PLIP_TARGETS

__all__ = [
    "H1_MEASURES", "H1Result", "MarkerResult", "ObserveResult", "edited_scope", "h1",
    "observe", "real_vs_false",
]  # fmt: skip

H1_MEASURES = {
    "call-site Δlog p": "drop of the gold name token's log p at the call, knockout minus "
    "control (nats; positive = the knockout lowers it more)",
    "log-PPL": "log-perplexity of the test after the marker (nats per token), (knockout − "
    "baseline) minus (control − baseline); old runs: log of the ppl columns",
    "preservation drop": "share of generations preserved under the control minus under the "
    "knockout",
    "calls_function drop": "share of generations calling the function under the control "
    "minus under the knockout",
}


@dataclass(frozen=True, kw_only=True)
class H1Result:
    """H1 on one measure in one scope of one model.

    Attributes:
        python / rust: each language's mean effect with its paired bootstrap CI (None when
            the language lacks the data).
        difference: Python − Rust, unpaired bootstrap CI (None unless both exist).
        pvalue: Welch t p of Python vs Rust (NaN without both); p_holm: Holm over the model's
            H1 comparisons (NaN when not tested).
        verdict: ``larger in Python``, ``larger in Rust``, ``opposite direction in Python``
            or ``no difference shown``.
    """

    model: str
    scope: str
    measure: str
    python: TestResult | None
    rust: TestResult | None
    difference: TestResult | None
    verdict: str
    pvalue: float = math.nan
    p_holm: float = math.nan
    control: str = ""


def _control(t: pd.DataFrame | None, scope: str) -> str:
    if t is not None and f"inert_control@{scope}#0" in set(t["condition"]):
        return f"inert_control@{scope}#0"
    return f"random_control@{scope}#0"


def _effects(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None, scope: str, measure: str
) -> pd.Series | None:
    """Per-prompt effect of ``knockout@scope`` against its deciding control's draw 0
    (positive = a larger effect of the knockout)."""
    ko = f"knockout@{scope}"
    if measure in ("preservation drop", "calls_function drop"):
        col = "preserved" if measure == "preservation drop" else "calls_function"
        if gens is None or col not in gens:
            return None
        p = paired(gens, col, ko, _control(gens, scope))
        return None if not len(p) else p["ref"].astype(float) - p["cond"].astype(float)
    if recs is None:
        return None
    ctrl = _control(recs, scope)
    if measure == "call-site Δlog p":
        calls = call_rows(recs)
        if calls is None:
            return None
        p = paired(calls, "dlogp_gold", ko, ctrl)
        return None if not len(p) else p["ref"] - p["cond"]
    if "readout" in recs and (recs["readout"] == "call").any():
        tests = recs[recs["readout"] == "call"]
    else:
        tests = recs[recs["kind"] == "test"] if "kind" in recs else recs
    if "logppl_condition" in tests and tests["logppl_condition"].notna().any():
        dl = tests["logppl_condition"] - tests["logppl_baseline"]
    elif "ppl_condition" in tests:
        dl = np.log(tests["ppl_condition"]) - np.log(tests["ppl_baseline"])
    else:
        return None
    p = paired(tests.assign(dlppl=dl), "dlppl", ko, ctrl)
    return None if not len(p) else p["cond"] - p["ref"]


def _mean_ci(v: pd.Series) -> TestResult | None:
    if len(v) < 2:
        return None
    return bootstrap_mean_diff(
        v.to_numpy(), np.zeros(len(v)), paired=True, n_resamples=2000, seed=0
    )


def _verdict(diff: TestResult | None, py: TestResult | None, p_holm: float, alpha: float) -> str:
    if diff is None or math.isnan(p_holm) or p_holm >= alpha or diff.effect == 0:
        return "no difference shown"
    if diff.effect > 0:
        return "larger in Python"
    # A Python effect below zero with its whole CI is a knockout that moved the measure
    # against the prediction, not a smaller effect.
    return "opposite direction in Python" if py is not None and py.ci_high < 0 else "larger in Rust"


def h1(
    records: pd.DataFrame | None, generations: pd.DataFrame | None, model: str,
    alpha: float = 0.05,
) -> list[H1Result]:  # fmt: skip
    """H1 for every knockout scope and measure of ``model``, Holm across them (module
    docstring)."""
    recs = None if records is None else with_scope(records[records["model"] == model])
    gens = None if generations is None else with_scope(generations[generations["model"] == model])
    labels = set()
    for t in (recs, gens):
        if t is not None and len(t):
            labels |= set(t.loc[t["arm"] == "knockout", "scope"])
    found = []
    for scope in scope_order(sorted(labels)):
        for measure in H1_MEASURES:
            per = {}
            for lang in ("python", "rust"):
                r = None if recs is None else recs[recs["language"] == lang]
                g = None if gens is None else gens[gens["language"] == lang]
                per[lang] = _effects(r, g, scope, measure)
            res = {k: (None if v is None else _mean_ci(v)) for k, v in per.items()}
            if res["python"] is None and res["rust"] is None:
                continue
            diff, p = None, math.nan
            py, rs = per["python"], per["rust"]
            if py is not None and rs is not None and res["python"] and res["rust"]:
                diff = bootstrap_mean_diff(py.to_numpy(), rs.to_numpy(), paired=False,
                                           n_resamples=2000, seed=0)  # fmt: skip
                if np.ptp(py.to_numpy()) > 0 or np.ptp(rs.to_numpy()) > 0:
                    # Welch's t is undefined when both languages are constant: p stays NaN.
                    w = welch_t(py, rs).pvalue
                    p = math.nan if w is None else float(w)
            found.append((scope, measure, res, diff, p, _control(recs if measure in (
                "call-site Δlog p", "log-PPL") else gens, scope)))  # fmt: skip
    ps = np.array([f[4] for f in found], dtype=float)
    holm = np.full(ps.size, np.nan)
    ok = ~np.isnan(ps)
    if ok.any():
        holm[ok] = multipletests(ps[ok], alpha=alpha, method="holm")[1]
    return [
        H1Result(model=model, scope=scope, measure=measure, python=res["python"],
                 rust=res["rust"], difference=diff, pvalue=p, p_holm=float(hp),
                 verdict=_verdict(diff, res["python"], float(hp), alpha), control=ctrl)
        for (scope, measure, res, diff, p, ctrl), hp in zip(found, holm, strict=True)
    ]  # fmt: skip


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
    scope: str = ""


@dataclass(frozen=True, kw_only=True)
class MarkerResult:
    """Real vs false markers of one language at one layer, in one view."""

    model: str
    language: str
    layer: int
    view: str
    test: TestResult  # Welch t, effect = mean real − mean false
    d: float
    real_mean: float
    false_mean: float
    n_real: int
    n_false: int


_NORM = "level × keys (position-normalised)"


def edited_scope(scan: pd.DataFrame) -> tuple[str, str] | None:
    """The (rows, targets) the study edits: the default scope when the scan holds it, else
    the first non-PLIP one, else the first (None without scope columns)."""
    if "rows" not in scan or not len(scan):
        return None
    pairs = list(dict.fromkeys(zip(scan["rows"], scan["targets"], strict=True)))
    if (DEFAULT_ROWS, DEFAULT_TARGETS) in pairs:
        return DEFAULT_ROWS, DEFAULT_TARGETS
    other = [p for p in pairs if p != (PLIP_ROWS, PLIP_TARGETS)]
    return (other or pairs)[0]


def _in_scope(scan: pd.DataFrame) -> pd.DataFrame:
    pick = edited_scope(scan)
    if pick is None:
        return scan
    return scan[(scan["rows"] == pick[0]) & (scan["targets"] == pick[1])]


def _views(grp: pd.DataFrame) -> dict[str, pd.Series]:
    views = {"level": grp["attn_level"]}
    if "n_keys" in grp:
        views[_NORM] = grp["attn_level"] * grp["n_keys"]
    return views


def observe(scan: pd.DataFrame, layer_of: dict[str, int] | None = None) -> list[ObserveResult]:
    """The raw and position-normalised marker->function level of test samples, Python vs
    Rust, in the edited scope (module docstring).

    ``layer_of``: sample -> its chosen layer (default: each sample's peak layer).
    """
    tests = _in_scope(scan[scan["kind"] == "test"])
    pick = edited_scope(tests)
    label = "" if pick is None else f"{pick[0]} → {pick[1]}"
    out = []
    for model, grp in tests.groupby("model"):
        if layer_of is not None:
            grp = grp[grp["layer"] == grp["sample_id"].map(layer_of)]
        else:
            grp = grp.loc[grp.groupby("sample_id")["attn_level"].idxmax()]
        for view, values in _views(grp).items():
            py = values[grp["language"] == "python"].dropna()
            rs = values[grp["language"] == "rust"].dropna()
            try:
                res = welch_t(py, rs)
                d = cohens_d(py, rs)
            except ValueError:
                continue
            ratio = float(py.mean() / rs.mean()) if rs.mean() else math.nan
            out.append(ObserveResult(model=str(model), view=view, test=res, d=d, ratio=ratio,
                                     python_mean=float(py.mean()), rust_mean=float(rs.mean()),
                                     scope=label))  # fmt: skip
    return out


def real_vs_false(scan: pd.DataFrame) -> list[MarkerResult]:
    """Real (kind=test) vs false (kind=baseline) markers per model, language and layer, raw
    and position-normalised, in the edited scope (Welch t, Cohen's d). Empty without false
    markers in the scan."""
    sub = _in_scope(scan[scan["kind"].isin(["test", "baseline"])])
    out = []
    for (model, lang, layer), grp in sub.groupby(["model", "language", "layer"]):
        real = grp["kind"] == "test"
        for view, values in _views(grp).items():
            a, b = values[real].dropna(), values[~real].dropna()
            try:
                res = welch_t(a, b)
                d = cohens_d(a, b)
            except ValueError:
                continue
            out.append(MarkerResult(model=str(model), language=str(lang), layer=int(layer),
                                    view=view, test=res, d=d, real_mean=float(a.mean()),
                                    false_mean=float(b.mean()), n_real=len(a),
                                    n_false=len(b)))  # fmt: skip
    return out
