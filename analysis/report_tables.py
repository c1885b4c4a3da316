"""The report's tables as DataFrames, and their Markdown form (one place for the formatting)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.callsite import CERTAIN
from analysis.dose import H2Result
from analysis.hypothesis import TestResult
from analysis.languages import H1Result, MarkerResult
from analysis.robust_report import NO_SAMPLED
from analysis.verdicts import EFFECT_WORDS, CallDiff, TriangleOutcome

__all__ = [
    "control_table", "h1_table", "h2_table", "knockout_table", "marker_table", "md_table",
    "preservation_table", "steering_table",
]  # fmt: skip


def fmt(x: Any) -> str:
    if isinstance(x, float | np.floating):
        v = float(x)
        if math.isnan(v):
            return ""
        return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(x).replace("|", "\\|")


def md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    body = "".join(
        "| " + " | ".join(fmt(v) for v in row) + " |\n" for row in df.itertuples(index=False)
    )
    return head + body


def pp(v: float) -> str:
    return "" if math.isnan(v) else f"{100 * v:+.1f}"


def ci_pp(ci: tuple[float, float]) -> str:
    return f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _call(c: CallDiff | None) -> str:
    return "" if c is None else f"{c.effect:+.3g} [{c.ci95[0]:+.3g}, {c.ci95[1]:+.3g}]"


def _mean(r: TestResult | None) -> str:
    return "" if r is None else f"{r.effect:+.3g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}]"


def _after(kl: float, p_top1: float) -> str:
    if math.isnan(kl):
        return ""
    stuck = not math.isnan(p_top1) and p_top1 >= CERTAIN
    return f"{kl:.2g}" + (" (cannot move: next token is certain)" if stuck else "")


def _rate(rv: Any) -> str:
    """Draw 0's sampled-rate comparison: Δ pp [CI], k (GEE cross-check agreement)."""
    c = rv.draws[0][1]
    gee = (
        "GEE agrees" if c.agree else "GEE disagrees" if c.agree is False else f"GEE {c.gee.status}"
    )
    return f"{pp(c.effect)} {ci_pp(c.ci)} (k={c.k_min}-{c.k_max}; {gee})"


def knockout_table(
    outcomes: Sequence[TriangleOutcome],
    rates: Mapping[tuple[str, str, str], Any] | None = None,
    *,
    sampled: bool = False,
) -> pd.DataFrame:
    """One row per (model, scope, language): call-site Δlog p against the inert control
    (draw 0, range over draws), the renormalising control and baseline; preservation and
    calls_function (greedy McNemar); where ``sampled``, the per-prompt-rate verdict
    (:func:`analysis.robust_report.rate_verdicts`) beside the greedy one; reach and verdict."""
    rows = []
    for o in outcomes:
        for k in o.knockouts:
            first = k.draws[0]
            rv = (rates or {}).get((o.model, o.language, k.scope))
            d = first.diff
            calls = [x.call.effect for x in k.draws if x.call is not None]
            spread = [x.diff.effect for x in k.draws if x.diff is not None]
            comp = k.compared[0].call if k.compared else None
            rows.append({
                "model": o.model, "scope": k.scope, "language": o.language, "n": k.n_pairs,
                "control": f"{first.control} ×{len(k.draws)}",
                "Δlog p vs control (draw 0) [95% CI]": _call(first.call),
                "Δlog p over draws": "" if len(calls) < 2 else f"{min(calls):+.3g} … {max(calls):+.3g}",
                "Δlog p vs renormalising control": _call(comp),
                "Δlog p vs baseline": _mean(k.vs_baseline),
                "matched (worst layer)": "" if math.isnan(k.matched) else f"{100 * k.matched:.0f}%",
                "preserved knockout %": "" if d is None else f"{100 * k.knockout_rate:.1f}",
                "preserved control %": "" if d is None else f"{100 * k.control_rate:.1f}",
                "Δ pp (draw 0)": "" if d is None else pp(d.effect),
                "90% CI": "" if d is None else ci_pp(d.ci90),
                "95% CI": "" if d is None else ci_pp(d.ci95),
                "Δ calls_function pp": "" if first.calls is None else pp(first.calls.effect),
                "p_adj": first.p_adjusted,
                "Δ over draws": "" if len(spread) < 2 else f"{100 * min(spread):+.1f} … {100 * max(spread):+.1f}",
                "power (margin)": k.power,
                "Δlog p power / n for 80%": "" if math.isnan(k.call_power)
                else f"{k.call_power:.2f} / {k.call_n80:.0f}",
                "gens changed %": "" if not k.reach.n_gen else f"{100 * k.reach.changed:.0f}",
                "KL after marker (secondary)": _after(k.kl_after, k.p_top1_after),
                "preservation verdict (greedy McNemar)": "" if k.gen_effect is None
                else EFFECT_WORDS[k.gen_effect],
                "Δ preserved rate pp, sampled (draw 0) [CI]": _rate(rv) if rv is not None
                else ("" if sampled else NO_SAMPLED),
                "preservation verdict (sampled rates)": EFFECT_WORDS.get(rv.effect, rv.effect)
                if rv is not None else ("" if sampled else NO_SAMPLED),
                "verdict": EFFECT_WORDS[k.effect],
            })  # fmt: skip
    return pd.DataFrame(rows)


def steering_table(outcomes: Sequence[TriangleOutcome]) -> pd.DataFrame:
    rows = []
    for o in outcomes:
        for scope, st in o.steering_by_scope.items():
            for t in st.tests:
                rows.append({
                    "model": o.model, "language": o.language, "scope": scope, "condition": t.arm,
                    "role": t.role,
                    "manipulation median Δattn": np.nan if t.manipulation is None else t.manipulation.effect,
                    "manipulation p_adj": t.manipulation_p_adjusted, "d_z": t.d_z,
                    "passes": "yes" if t.manipulation_ok else "no",
                    "reaches": "" if t.reach is None else ("yes" if t.reach.reached else "**no**"),
                    "Δlog p vs baseline [95% CI]": _call(t.call),
                    "Δ preserved pp": "" if t.diff is None else pp(t.diff.effect),
                    "90% CI": "" if t.diff is None else ci_pp(t.diff.ci90),
                    "Δ calls_function pp": "" if t.calls is None else pp(t.calls.effect),
                    "p_adj": np.nan if t.p_adjusted is None else t.p_adjusted,
                    "verdict": EFFECT_WORDS[t.effect] if t.effect is not None
                    else (t.words if t.role == "not deciding" else ""),
                })  # fmt: skip
    return pd.DataFrame(rows)


def preservation_table(gens: pd.DataFrame | None) -> pd.DataFrame:
    """Per (model, language, condition): preserved and calls_function rates side by side."""
    if gens is None or not len(gens):
        return pd.DataFrame()
    agg = {"n": ("preserved", "size"), "preserved %": ("preserved", "mean")}
    if "calls_function" in gens:
        agg["calls_function %"] = ("calls_function", "mean")
    out = gens.groupby(["model", "language", "condition"]).agg(**agg).reset_index()
    for c in ("preserved %", "calls_function %"):
        if c in out:
            out[c] = (100 * out[c].astype(float)).map(lambda v: f"{v:.1f}")
    return out


def source_table(records: pd.DataFrame | None, gens: pd.DataFrame | None) -> pd.DataFrame:
    """Per (model, language, corpus source): test samples and generation prompts, and the
    baseline's greedy preservation and calls_function on those prompts (a run written before
    the ``corpus_source`` column reads "not recorded")."""
    if records is None or not len(records):
        return pd.DataFrame()

    def src(df: pd.DataFrame) -> pd.Series:
        if "corpus_source" in df:
            return df["corpus_source"].fillna("not recorded")
        return pd.Series("not recorded", index=df.index)

    keys = ["model", "language", "corpus_source"]
    rec = records.assign(corpus_source=src(records))
    rec = rec[rec["condition"] == "baseline"]
    out = (rec.groupby(keys)["kind"]
           .agg(tests=lambda k: int((k == "test").sum()),
                prompts=lambda k: int((k == "generation").sum()))
           .reset_index())  # fmt: skip
    if gens is not None and len(gens):
        g = gens.assign(corpus_source=src(gens))
        g = g[g["condition"] == "baseline"]
        if "decoding" in g:
            g = g[g["decoding"] == "greedy"]
        rates = g.groupby(keys).agg(
            n_generated=("preserved", "size"), preserved=("preserved", "mean"),
            calls=("calls_function", "mean"),
        ).reset_index()  # fmt: skip
        out = out.merge(rates, on=keys, how="left")
        for c, name in (("preserved", "baseline preserved %"), ("calls", "baseline calls %")):
            out[name] = (100 * out.pop(c).astype(float)).map(lambda v: f"{v:.1f}")
        out["n_generated"] = out["n_generated"].fillna(0).astype(int)
    return out


def h1_table(results: Sequence[H1Result]) -> pd.DataFrame:
    def ci(r: TestResult | None, scale: float) -> str:
        if r is None:
            return ""
        return f"{scale * r.effect:+.3g} [{scale * r.ci_low:+.3g}, {scale * r.ci_high:+.3g}]"

    rows = []
    for r in results:
        scale = 100.0 if r.measure.endswith("drop") else 1.0
        rows.append({"model": r.model, "scope": r.scope, "measure": r.measure,
                     "Python": ci(r.python, scale), "Rust": ci(r.rust, scale),
                     "Python − Rust": ci(r.difference, scale), "Welch p": r.pvalue,
                     "Holm p": r.p_holm, "H1": r.verdict})  # fmt: skip
    return pd.DataFrame(rows)


def h2_table(results: Sequence[H2Result]) -> pd.DataFrame:
    def ci(lo: float, hi: float) -> str:
        return "" if math.isnan(lo) else f"[{lo:+.3g}, {hi:+.3g}]"

    return pd.DataFrame([
        {"model": r.model, "language": r.language, "scope": r.scope or "all Scale arms",
         "status": r.status, "prompts": r.n_prompts, "GEE slope / doubling": r.slope,
         "95% CI": ci(*r.slope_ci), "GEE p": r.slope_p, "permutation p": r.perm_p,
         "Python level at Scale": r.knot, "slope up to level": r.before[0],
         "slope beyond": r.after[0], "bend p": r.bend_p}
        for r in results
    ])  # fmt: skip


def marker_table(results: Sequence[MarkerResult]) -> pd.DataFrame:
    return pd.DataFrame([
        {"model": r.model, "language": r.language, "layer": r.layer, "view": r.view,
         "real mean": r.real_mean, "false mean": r.false_mean, "real − false": r.test.effect,
         "Welch p": r.test.pvalue, "Cohen's d": r.d,
         "note": "false markers draw MORE" if r.test.effect < 0 and (r.test.pvalue or 1) < 0.05
         else ""}
        for r in results
    ])  # fmt: skip


def control_table(control: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (model, lang, r, t), g in control.groupby(["model", "language", "rows", "targets"]):
        ratio = g["mass_ratio"].dropna()
        rows.append({
            "model": model, "language": lang, "rows → targets": f"{r} → {t}",
            "matched (sample, layer, draw)": len(g),
            "median control/knockout mass": float(ratio.median()) if len(ratio) else math.nan,
            "within ±10%": f"{100 * g['within_tolerance'].mean():.0f}%",
            "count matched": f"{100 * g['count_matched'].mean():.0f}%" if "count_matched" in g else "",
            "median pool size": float(g["pool_size"].median()) if "pool_size" in g else math.nan,
            "targets include token 0": f"{100 * g['targets_include_token0'].mean():.0f}%",
        })  # fmt: skip
    return pd.DataFrame(rows)
