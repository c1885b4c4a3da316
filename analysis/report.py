"""``analyze(RUN_DIR ...)``: statistics, outcome matrix, figures and report.md from records alone.

Reads whichever of ``records.parquet``, ``layer_scan.parquet``, ``generations.parquet``,
``control_match.parquet``, ``noise_floor.parquet``, ``calibration.json``, ``config.json``,
``manifest.json`` exist in one or more run directories (one model each); writes ``stats.csv``,
``report.md`` and ``figures/*.png`` atomically into the run directory or ``out``. Never loads a
model.

Test families and their correction are defined once in :mod:`analysis.families`; rows are
paired by :func:`analysis.pairing.paired`, the same helper the decision uses
(:mod:`analysis.triangle`). ``stats.csv``'s ``triangle`` rows are the deciding tests, and their
``p_bonferroni`` is the adjusted p the decision used.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.dose import H2Result, h2
from analysis.equivalence import PairedDifference, paired_difference
from analysis.families import FAMILIES, adjust_table
from analysis.figures import save_all
from analysis.findings import findings, scope_words
from analysis.heads import HEADS_TABLES, analyze_heads
from analysis.hypothesis import TestResult, bootstrap_mean_diff, wilcoxon_signed_rank
from analysis.languages import H1_MEASURES, H1Result, ObserveResult, h1, observe
from analysis.pairing import paired
from analysis.reach import MAX_CHANGED, kl_floor
from analysis.scopes import scope_order, with_scope
from analysis.triangle import (
    EFFECT_WORDS,
    TriangleOutcome,
    classify_all,
    interpretation_table,
)
from plip_nn.atomic import atomic_write_text
from plip_nn.scope import function_half

__all__ = ["STATS_COLUMNS", "analyze", "cli_analyze", "execute_notes", "report_findings"]

log = logging.getLogger(__name__)

STATS_COLUMNS = [
    "family", "model", "test", "language", "condition", "scope", "statistic", "pvalue",
    "p_bonferroni", "p_holm", "family_size", "counted", "effect", "ci_low", "ci_high", "n",
    "note",
]  # fmt: skip
_ADJUSTED = ("p_holm",)
_TABLES = ("records", "layer_scan", "generations", "control_match", "noise_floor", *HEADS_TABLES)
_JSONS = ("calibration", "config", "manifest")
DEFAULT_ALPHA = 0.05
DEFAULT_MARGIN = 0.10


def _load(run_dir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    if not run_dir.is_dir():
        raise ValueError(
            f"run directory {run_dir} does not exist; pass the --out directory of an experiment"
        )
    tables = {}
    for name in _TABLES:
        path = run_dir / f"{name}.parquet"
        if path.exists():
            df = pd.read_parquet(path)
            if len(df):
                tables[name] = df
    if not any(k in tables for k in ("records", "layer_scan", "generations")):
        raise ValueError(
            f"run directory {run_dir} holds no non-empty records.parquet, layer_scan.parquet or "
            "generations.parquet; run an experiment (e.g. `plip-nn triangle --out DIR`) first"
        )
    meta = {}
    for name in _JSONS:
        path = run_dir / f"{name}.json"
        if path.exists():
            try:
                meta[name] = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not valid JSON ({exc}); rewrite or remove it") from exc
    return tables, meta


def _row(
    family: str, model: str, lang: str, cond: str, res: TestResult, *, test: str = "",
    counted: bool = False, scope: str = "",
) -> dict[str, Any]:  # fmt: skip
    return {
        "family": family, "model": model, "test": test or res.name, "language": lang,
        "condition": cond, "scope": scope, "statistic": res.statistic,
        "pvalue": np.nan if res.pvalue is None else res.pvalue, "counted": counted,
        "effect": res.effect, "ci_low": res.ci_low, "ci_high": res.ci_high, "n": res.n,
        "note": res.note,
    }  # fmt: skip


def _diff_row(
    family: str, model: str, lang: str, cond: str, diff: PairedDifference, *, ref: str,
    counted: bool, scope: str = "", p_adjusted: float | None = None, m: int = 0,
) -> dict[str, Any]:  # fmt: skip
    row = {
        "family": family, "model": model, "test": "mcnemar_exact (newcombe ci)", "language": lang,
        "condition": cond, "scope": scope, "statistic": float(min(diff.b, diff.c)),
        "pvalue": diff.pvalue, "counted": counted, "effect": diff.effect,
        "ci_low": diff.ci95[0], "ci_high": diff.ci95[1], "n": diff.n,
        "note": f"preserved, {cond} vs {ref}: b={diff.b} c={diff.c}; effect (c-b)/n with "
        f"Newcombe 95% CI; 90% CI [{diff.ci90[0]:.4f}, {diff.ci90[1]:.4f}]",
    }  # fmt: skip
    if p_adjusted is not None and not counted:
        row["p_bonferroni"], row["family_size"] = p_adjusted, m
    return row


def _try(what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except ValueError as exc:
        log.info("skipped %s: %s", what, exc)
        return None


def _knockout_kl_rows(recs: pd.DataFrame) -> Iterable[dict[str, Any]]:
    pred = recs[recs["kind"] == "generation"] if "kind" in recs else recs
    if not len(pred) and "kind" in recs:
        pred = recs[recs["kind"] == "test"]
    for (model, lang), grp in pred.groupby(["model", "language"]):
        for scope in scope_order(sorted(set(grp.loc[grp["arm"] == "knockout", "scope"]))):
            ko, ctrl = f"knockout@{scope}", f"random_control@{scope}#0"
            p = paired(grp, "kl", ko, ctrl)
            if not len(p):
                continue
            res = _try("wilcoxon", wilcoxon_signed_rank, p["cond"], p["ref"])
            if res is not None:
                yield _row("knockout_kl", str(model), str(lang), ko, res, counted=True, scope=scope)
            boot = _try("bootstrap", bootstrap_mean_diff, p["cond"], p["ref"], paired=True,
                        n_resamples=2000, seed=0)  # fmt: skip
            if boot is not None:
                yield _row("knockout_kl", str(model), str(lang), ko, boot, scope=scope)


def _preservation_rows(gens: pd.DataFrame) -> Iterable[dict[str, Any]]:
    for (model, lang), grp in gens.groupby(["model", "language"]):
        for cond in sorted(set(grp["condition"]) - {"baseline"}):
            p = paired(grp, "preserved", cond, "baseline")
            if not len(p):
                continue
            diff = paired_difference(p["ref"].astype(bool), p["cond"].astype(bool))
            scope = str(grp.loc[grp["condition"] == cond, "scope"].iloc[0])
            yield _diff_row("preservation", str(model), str(lang), cond, diff, ref="baseline",
                            counted=True, scope=scope)  # fmt: skip


def _outcome_rows(outcomes: Sequence[TriangleOutcome]) -> Iterable[dict[str, Any]]:
    for o in outcomes:
        for t in o.steering.tests:
            if t.manipulation is not None:
                row = _row("manipulation", o.model, o.language, t.condition, t.manipulation,
                           counted=True, scope=t.condition.split("@", 1)[-1])  # fmt: skip
                row["note"] += f"; role {t.role}"
                yield row
        for k in o.knockouts:
            for d in k.draws:
                cond = f"random_control@{k.scope}#{d.draw}"
                if d.diff is not None:
                    row = _diff_row("triangle", o.model, o.language, f"knockout@{k.scope}", d.diff,
                                    ref=cond, counted=d.draw == k.draws[0].draw, scope=k.scope,
                                    p_adjusted=d.p_adjusted, m=o.family_size)  # fmt: skip
                else:
                    assert d.kl is not None
                    row = _row("triangle", o.model, o.language, f"knockout@{k.scope}", d.kl,
                               counted=d.draw == k.draws[0].draw, scope=k.scope)  # fmt: skip
                    if d.draw != k.draws[0].draw:
                        row["p_bonferroni"], row["family_size"] = d.p_adjusted, o.family_size
                row["note"] += f"; deciding test vs control draw {d.draw}: {d.effect}"
                yield row
        for t in o.steering.tests:
            if t.role == "deciding" and t.diff is not None:
                row = _diff_row(
                    "triangle",
                    o.model,
                    o.language,
                    t.condition,
                    t.diff,
                    ref="baseline",
                    counted=True,
                    scope=t.condition.split("@", 1)[-1],
                )
                row["note"] += f"; deciding steering test: {t.effect}"
                yield row


def _h1_rows(results: Sequence[H1Result]) -> Iterable[dict[str, Any]]:
    for r in results:
        for lang, res in (("python", r.python), ("rust", r.rust), ("python-rust", r.difference)):
            if res is not None:
                row = _row("h1", r.model, lang, f"knockout@{r.scope}", res,
                           test=f"{r.measure} ({res.name})", scope=r.scope)  # fmt: skip
                if lang == "python-rust":
                    row["note"] += f"; H1: {r.verdict}"
                yield row


def _h2_rows(results: Sequence[H2Result]) -> Iterable[dict[str, Any]]:
    for r in results:
        base = {"family": "h2", "model": r.model, "language": r.language, "condition": "scale dose",
                "scope": "", "n": r.n_rows}  # fmt: skip
        yield {**base, "test": "gee_logistic_trend", "statistic": r.slope, "pvalue": r.slope_p,
               "counted": True, "effect": r.slope, "ci_low": r.slope_ci[0],
               "ci_high": r.slope_ci[1],
               "note": f"GEE logistic, exchangeable, {r.n_prompts} prompts as clusters; effect = "
               "log-odds of preservation per doubling of the Scale dose"}  # fmt: skip
        yield {**base, "test": "permutation_trend", "statistic": np.nan, "pvalue": r.perm_p,
               "counted": False, "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan,
               "note": "cross-check: outcomes permuted among doses within each prompt, 9999 "
               "permutations, seed 0"}  # fmt: skip
        for what, v in (("slope up to the Python level", r.before),
                        ("slope beyond the Python level", r.after)):  # fmt: skip
            yield {**base, "test": f"gee_hinge: {what}", "statistic": v[0], "pvalue": v[3],
                   "counted": False, "effect": v[0], "ci_low": v[1], "ci_high": v[2],
                   "note": f"hinge at Scale {r.knot:.3g} (the Python level); {r.verdict}"}  # fmt: skip


def _observe_rows(results: Sequence[ObserveResult]) -> Iterable[dict[str, Any]]:
    for r in results:
        row = _row("observe", r.model, "python-rust", "baseline", r.test, test=f"welch_t ({r.view})",
                   counted=True)  # fmt: skip
        row["note"] += f"; Cohen's d {r.d:.3g}; ratio Python/Rust {r.ratio:.3g}"
        yield row


def _stats_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[c for c in STATS_COLUMNS if c not in _ADJUSTED])
    return adjust_table(df)[STATS_COLUMNS]


def _fmt(x: Any) -> str:
    if isinstance(x, float | np.floating):
        v = float(x)
        if math.isnan(v):
            return ""
        return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(x).replace("|", "\\|")


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    body = "".join(
        "| " + " | ".join(_fmt(v) for v in row) + " |\n" for row in df.itertuples(index=False)
    )
    return head + body


def _pp(v: float) -> str:
    return "" if math.isnan(v) else f"{100 * v:+.1f}"


def _ci_pp(ci: tuple[float, float]) -> str:
    return f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _versions(man: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for k in ("experiment", "model", "model_revision", "git_commit", "seed", "remote", "device",
              "dtype", "layer", "layer_by_half", "layer_choice", "started", "finished",
              "status"):  # fmt: skip
        if k in man:
            info[k] = man[k]
    for k, v in (man.get("versions") or {}).items():
        info[k] = v
    return info


def _layer_of(
    tables: dict[str, pd.DataFrame], metas: list[dict[str, Any]]
) -> dict[str, int] | None:
    """sample -> the layer it was edited at (from the manifests' cross-fitted choice)."""
    scan = tables.get("layer_scan")
    if scan is None:
        return None
    out: dict[str, int] = {}
    for meta in metas:
        man = meta.get("manifest", {})
        by_half = man.get("layer_by_half")
        seed = int(man.get("seed", 0))
        if not by_half:
            if isinstance(man.get("layer"), int):
                by_half = {"0": man["layer"], "1": man["layer"]}
            else:
                continue
        model = man.get("model")
        ids = scan.loc[scan["model"] == model, "sample_id"] if model else scan["sample_id"]
        for s in ids.unique():
            out[str(s)] = int(by_half[str(function_half(str(s), seed))])
    return out or None


def _knockout_table(outcomes: Sequence[TriangleOutcome]) -> pd.DataFrame:
    rows = []
    for o in outcomes:
        for k in o.knockouts:
            first = k.draws[0]
            d = first.diff
            spread = [x.diff.effect for x in k.draws if x.diff is not None]
            rows.append({
                "model": o.model, "scope": k.scope, "language": o.language, "n": k.n_pairs,
                "preserved knockout %": "" if d is None else f"{100 * k.knockout_rate:.1f}",
                "preserved control %": "" if d is None else f"{100 * k.control_rate:.1f}",
                "Δ pp (draw 0)": "" if d is None else _pp(d.effect),
                "90% CI": "" if d is None else _ci_pp(d.ci90),
                "95% CI": "" if d is None else _ci_pp(d.ci95),
                "p_adj": first.p_adjusted,
                "Δ over draws": "" if len(spread) < 2 else f"{100 * min(spread):+.1f} … {100 * max(spread):+.1f}",
                "power (margin)": k.power,
                "median KL": k.reach.median_kl,
                "gens changed %": "" if not k.reach.n_gen else f"{100 * k.reach.changed:.0f}",
                "verdict": EFFECT_WORDS[k.effect],
            })  # fmt: skip
    return pd.DataFrame(rows)


def _steering_table(outcomes: Sequence[TriangleOutcome]) -> pd.DataFrame:
    rows = []
    for o in outcomes:
        for t in o.steering.tests:
            rows.append({
                "model": o.model, "language": o.language, "condition": t.arm, "role": t.role,
                "manipulation median Δattn": np.nan if t.manipulation is None else t.manipulation.effect,
                "manipulation p_adj": t.manipulation_p_adjusted, "d_z": t.d_z,
                "passes": "yes" if t.manipulation_ok else "no",
                "reaches": "" if t.reach is None else ("yes" if t.reach.reached else "**no**"),
                "Δ preserved pp": "" if t.diff is None else _pp(t.diff.effect),
                "90% CI": "" if t.diff is None else _ci_pp(t.diff.ci90),
                "p_adj": np.nan if t.p_adjusted is None else t.p_adjusted,
                "verdict": EFFECT_WORDS[t.effect] if t.effect is not None
                else (t.words if t.role == "not deciding" else ""),
            })  # fmt: skip
    return pd.DataFrame(rows)


def _h1_table(results: Sequence[H1Result]) -> pd.DataFrame:
    def ci(r: TestResult | None, scale: float) -> str:
        if r is None:
            return ""
        return f"{scale * r.effect:+.3g} [{scale * r.ci_low:+.3g}, {scale * r.ci_high:+.3g}]"

    rows = []
    for r in results:
        scale = 100.0 if r.measure in ("preservation drop", "top-1 changed") else 1.0
        rows.append({"model": r.model, "scope": r.scope, "measure": r.measure,
                     "Python": ci(r.python, scale), "Rust": ci(r.rust, scale),
                     "Python − Rust": ci(r.difference, scale), "H1": r.verdict})  # fmt: skip
    return pd.DataFrame(rows)


def _control_table(control: pd.DataFrame) -> pd.DataFrame:
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


def _report(
    label: str, sources: list[Path], tables: dict[str, pd.DataFrame], metas: list[dict[str, Any]],
    stats: pd.DataFrame, outcomes: list[TriangleOutcome], h1s: list[H1Result],
    h2s: list[H2Result], observed: list[ObserveResult], found: list[str], figures: list[Path],
    alpha: float, margin: float, floor: dict[str, float], heads_md: str = "",
) -> str:  # fmt: skip
    lines = [f"# plip-nn analysis: `{label}`\n\n"]
    lines.append("## Findings\n\n")
    lines.extend(f"- {s}\n" for s in found) if found else lines.append("_No decided outcome._\n")
    lines.append(
        f"\nα = {alpha}; equivalence margin ±{100 * margin:.0f} pp of preservation. "
        "Every verdict holds for its scope only (rows → targets, layers; `plip_nn.scope`).\n\n"
    )
    lines.append(
        "Regenerate with `plip-nn analyze " + " ".join(str(p) for p in sources)
        + (f" --out {label}" if len(sources) > 1 else "") + "` (reads records only).\n\n"
    )  # fmt: skip
    lines.append("## Design\n\n")
    for src, meta in zip(sources, metas, strict=True):
        man = meta.get("manifest", {})
        info: dict[str, Any] = {"run directory": str(src), **_versions(man)}
        skipped = man.get("skipped_masked") or []
        info["samples skipped (--skip-masked)"] = len(skipped)
        lines.append(_md_table(pd.DataFrame({"item": list(info),
                                             "value": [str(v) for v in info.values()]})))  # fmt: skip
        if skipped:
            lines.append("\nSkipped because an edge is causally masked (`--skip-masked`):\n\n")
            lines.extend(f"- `{s['sample_id']}`: {s['reason']}\n" for s in skipped)
        execute_note = (man.get("execute") or {}).get("note")
        if execute_note:
            lines.append(f"\n**Generated tests (`executes`)**: {execute_note}.\n")
        by_half = man.get("layer_by_half")
        if man.get("layer_choice") == "cross-fitted scan peak" and by_half:
            same = len(set(by_half.values())) == 1
            lines.append(
                f"\n**Layer, held out.** The functions were split into two seeded halves; each "
                f"half is edited at the peak layer of the *other* half's scan (half 0 → layer "
                f"{by_half['0']}, half 1 → layer {by_half['1']})"
                + (", so every sample uses the same layer" if same else "")
                + ". No sample is edited at a layer chosen on itself.\n"
            )
        elif man.get("layer_choice") == "flag":
            lines.append("\n**Layer** given with `--layer`: not chosen on these samples.\n")
        elif "layer" in man:
            lines.append(
                "\n**Layer**: chosen on the same samples it is tested on (not held out).\n"
            )
        lines.append("\n")
    lines.append(
        "**Scoring.** One rule for both languages: only the *first* generated test is scored "
        "(Python: the first doctest example and its expected output; Rust: the first test "
        "function). `preserved` = it calls the function by name with the declared number of "
        "arguments and parses.\n\n"
        "**Scopes.** Each knockout has its own mass-matched random control in the same rows and "
        "layers (keys drawn outside the function's signature, matched on the removed attention "
        "mass layer by layer, several seeded draws). Single passes read KL, top-1 and the greedy "
        "token's log-prob at the prediction position of the generation prompts (the token after "
        "the marker), and the perplexity of the test after the marker on full test samples.\n\n"
    )
    counts = {f"rows in {k}.parquet": len(v) for k, v in tables.items()}
    lines.append(_md_table(pd.DataFrame({"table": list(counts),
                                         "rows": [str(v) for v in counts.values()]})))  # fmt: skip
    for src, meta in zip(sources, metas, strict=True):
        if "calibration" in meta:
            cal = {k: v for k, v in meta["calibration"].items() if not isinstance(v, list | dict)}
            lines.append(f"\n### Calibration (`{src.name}`)\n\n")
            lines.append(_md_table(pd.DataFrame({"quantity": list(cal),
                                                 "value": [str(v) for v in cal.values()]})))  # fmt: skip

    lines.append("\n## Outcome matrix (one row per scope)\n\n")
    if outcomes:
        cols = [(o.model, o.language) for o in outcomes]
        scopes = scope_order(sorted({s for o in outcomes for s in o.cells}))
        matrix = pd.DataFrame([
            {"scope": s, **{(f"{m} / {g}" if len({c[0] for c in cols}) > 1 else g):
                            next((o.cells.get(s, "not run") for o in outcomes
                                  if o.model == m and o.language == g), "not run")
                            for m, g in cols}}
            for s in scopes
        ])  # fmt: skip
        lines.append(_md_table(matrix))
        for o in outcomes:
            lines.append(f"\n- Steering ({o.model} / {o.language}, default scope): "
                         f"**{EFFECT_WORDS[o.steering.effect]}** -- {o.steering.words}.\n")  # fmt: skip
        lines.append(f"\nRule: {outcomes[0].rule}.\n\n")
        lines.append(_md_table(interpretation_table()))
    else:
        lines.append("_No knockout/steering data in this run: the triangle was not classified._\n")

    lines.append("\n## Knockout by scope\n\n")
    if outcomes:
        lines.append(
            "Δ = preserved under the knockout minus under its mass-matched control (first draw), "
            "paired by prompt, with Newcombe CIs; `p_adj` is Bonferroni over the family; power is "
            f"the exact McNemar test's power to detect a {100 * margin:.0f} pp drop at α_adj and "
            "the observed discordance. `Δ over draws` is the range over the control draws.\n\n"
        )
        lines.append(_md_table(_knockout_table(outcomes)))
        lines.append("\n")
        for o in outcomes:
            for k in o.knockouts:
                lines.append(f"- {o.model} / {o.language}, `{k.scope}` ({scope_words(k.scope)}): "
                             f"**{EFFECT_WORDS[k.effect]}** -- {k.words}.\n")  # fmt: skip
    lines.append("\n## Does each edit reach the output?\n\n")
    if floor:
        lines.append(
            "KL noise floor (largest KL between two unedited passes over identical prompts in "
            "different batch compositions and padding): "
            + ", ".join(f"{m}: {v:.2e} nats" for m, v in floor.items())
            + f". A scope *does not reach the output* when at most {100 * MAX_CHANGED:.0f}% of "
            "its knockout's generations differ from baseline and its next-token distribution "
            "at the prediction did not move: the median KL is at or below the floor, or no "
            "prompt's top-1 prediction changed.\n\n"
        )
    else:
        lines.append("_No noise_floor.parquet: reach is judged on generations alone._\n\n")
    if outcomes:
        lines.append(_md_table(pd.DataFrame([
            {"model": o.model, "language": o.language, "scope": k.scope,
             "reaches": "yes" if k.reach.reached else "**no**", "evidence": k.reach.words}
            for o in outcomes for k in o.knockouts
        ])))  # fmt: skip

    lines.append("\n## Steering (default scope) and its manipulation checks\n\n")
    lines.append(
        "A steering condition decides only when its achieved attention moved the intended way "
        "(Wilcoxon signed-rank, achieved vs baseline level at the edited rows, Bonferroni over "
        "the steering conditions), and only when it reaches the output (the knockouts' reach "
        "gate on its own KL, top-1 and generations). Python SetValue sets Python to its own "
        "level: the roadmap's control, never deciding.\n\n"
    )
    lines.append(_md_table(_steering_table(outcomes)) if outcomes else "_(none)_\n")

    lines.append("\n## H1: is the knockout effect larger in Python than in Rust?\n\n")
    lines.append(
        "Per scope and measure: each language's mean per-prompt effect of the knockout against "
        "its first control draw, with a paired BCa bootstrap 95% CI; then Python − Rust with an "
        "unpaired bootstrap CI (different prompts). Positive = a larger effect of the knockout "
        "(preservation drop and top-1 in pp).\n\n"
    )
    lines.extend(f"- **{k}**: {v}\n" for k, v in H1_MEASURES.items())
    lines.append("\n" + _md_table(_h1_table(h1s)))

    lines.append("\n## H2: preservation against the steering dose\n\n")
    if h2s:
        lines.append(_md_table(pd.DataFrame([
            {"model": r.model, "language": r.language, "prompts": r.n_prompts,
             "GEE slope / doubling": r.slope,
             "95% CI": f"[{r.slope_ci[0]:+.3g}, {r.slope_ci[1]:+.3g}]", "GEE p": r.slope_p,
             "permutation p": r.perm_p, "Python level at Scale": r.knot,
             "slope up to level": r.before[0], "slope beyond": r.after[0], "bend p": r.bend_p}
            for r in h2s
        ])))  # fmt: skip
        lines.extend(f"\n- {r.model} / {r.language}: {r.verdict}.\n" for r in h2s)
    else:
        lines.append("_No Scale dose-response in the generations._\n")

    lines.append("\n## Observe: Python vs Rust attention\n\n")
    if observed:
        lines.append(_md_table(pd.DataFrame([
            {"model": r.model, "view": r.view, "Python mean": r.python_mean,
             "Rust mean": r.rust_mean, "ratio": r.ratio, "Welch p": r.test.pvalue,
             "Cohen's d": r.d}
            for r in observed
        ])))  # fmt: skip
        lines.append(
            "\nThe position-normalised view multiplies each level by the number of keys the "
            "marker row can attend to (its level relative to uniform attention): a later marker "
            "spreads its attention over more keys.\n"
        )
    ctrl = tables.get("control_match")
    lines.append("\n## The random controls (matched on count and removed mass, per layer)\n\n")
    if ctrl is not None:
        lines.append(_md_table(_control_table(ctrl)))
        lines.append(
            "\nWhere the knockout's targets include token 0 (`def`/`fn` in a model without BOS) "
            "and it acts as an attention sink, no set of keys outside the signature can match "
            "the removed mass; the ratio then stays below 1 and the comparison is weaker there.\n"
        )
    else:
        lines.append("_No control_match.parquet in this run._\n")
    lines.append(heads_md)
    if figures:
        lines.append("\n## Figures\n\n")
        lines.extend(f"![{p.stem}](figures/{p.name})\n\n" for p in figures)
    lines.append("\n## Tests and corrections\n\n")
    lines.append(
        "Paired data get paired tests: preservation → exact McNemar with Newcombe CIs; "
        "attention before/after an edit → Wilcoxon signed-rank and paired t with d_z; KL "
        "knockout vs control → Wilcoxon signed-rank with a paired BCa bootstrap CI; Python vs "
        "Rust levels → Welch t with Cohen's d. Families (corrected within each model and "
        "language; `counted` marks the rows of a family; `p_bonferroni` is what decisions use, "
        "`p_holm` (Holm) is given alongside):\n\n"
    )
    lines.extend(f"- `{name}`: {text}\n" for name, text in FAMILIES.items())
    lines.append("\nAll rows are in `stats.csv`.\n\n")
    stat_cols = ["model", "test", "language", "condition", "pvalue", "p_bonferroni", "effect",
                 "ci_low", "ci_high", "n"]  # fmt: skip
    for family, grp in stats.groupby("family", sort=False):
        lines.append(f"### {family}\n\n")
        lines.append(_md_table(grp[stat_cols]) + "\n")
    lines.append("## What this data cannot show\n\n")
    lines.append(
        "- Each verdict holds for its scope: the edited rows, keys and layers, at every head of "
        "those layers. Other routes to the same information (the residual stream, other rows, "
        "heads left unedited) stay open.\n"
        "- A knockout effect beyond the mass-matched control shows that these edges matter more "
        "than as much attention elsewhere, not *why*; where the control could not match the "
        "mass (token-0 sinks, see the control table) the comparison is weaker.\n"
        '- "No effect" means the 90% CI lies inside the stated margin; changes smaller than the '
        "margin are not ruled out, and an inconclusive scope may still hide an effect of that "
        "size (see the power column).\n"
        "- Steering edits probabilities directly: a rise shows the pathway is usable, not that the "
        "model uses it this way. The calibrated dose is a median over Rust prompts and over heads "
        "and rows; individual prompts get more or less.\n"
        "- Preservation is syntactic (a call by name with the declared arity that parses) and "
        "greedy; `executes` needs the sandbox and, for Rust, rustc. Decoding with sampling, "
        "other seeds and other corpora may differ.\n"
        f"- A generated Rust test may name the function in its own header (`fn test_<name>`) and "
        f"copy the call from there rather than from the function{_header_share(tables)}; "
        "knockouts in `marker_span` rows leave that path open (`continuation` rows close it).\n"
        "- The embedded model is tiny and trained on synthetic copy tasks; results hold for this "
        "model, this corpus and these seeds only.\n"
    )
    return "".join(lines)


def _header_share(tables: dict[str, pd.DataFrame]) -> str:
    """ ", as N% of the baseline's preserved Rust tests do" -- measured, or "" without data."""
    gens = tables.get("generations")
    if gens is None or "function_name" not in gens or "text" not in gens:
        return ""
    rs = gens[(gens["language"] == "rust") & (gens["condition"] == "baseline") & gens["preserved"]]
    if not len(rs):
        return ""
    named = [
        bool(re.search(rf"fn\s+\w*{re.escape(str(name))}\w*\s*\(", str(text)))
        for name, text in zip(rs["function_name"], rs["text"], strict=True)
    ]
    return f", as {100 * sum(named) / len(named):.0f}% of the {len(named)} preserved Rust tests at baseline do"


def _meta_value(metas: list[dict[str, Any]], key: str, default: float) -> float:
    for meta in metas:
        v = (meta.get("config") or {}).get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return default


def analyze(
    run_dirs: Path | str | Sequence[Path | str], *, out: Path | str | None = None,
    alpha: float | None = None, margin: float | None = None,
) -> Path:  # fmt: skip
    """Write ``stats.csv``, ``report.md`` and ``figures/`` for one or more runs; returns report.md.

    Args:
        run_dirs: one run directory, or several (one model each).
        out: where to write; defaults to the run directory when there is one, required for
            several.
        alpha: significance level (default: the run's ``--alpha``, else 0.05).
        margin: equivalence margin on preservation (default: the run's ``--margin``, else 0.10).

    Raises:
        ValueError: a directory is missing or holds no non-empty record table, two runs hold
            the same model, or several runs are given without ``out``.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, str | Path) else [Path(p) for p in run_dirs]
    if not dirs:
        raise ValueError("analyze needs at least one run directory")
    if out is None:
        if len(dirs) > 1:
            raise ValueError(
                f"{len(dirs)} run directories given: pass --out DIR for the combined report"
            )
        out = dirs[0]
    out = Path(out)
    loaded = [_load(d) for d in dirs]
    owner: dict[str, Path] = {}
    for d, (tabs, _) in zip(dirs, loaded, strict=True):
        in_run = {str(m) for t in tabs.values() if "model" in t for m in t["model"].unique()}
        for m in sorted(in_run):
            if m in owner:
                raise ValueError(
                    f"model {m!r} is in both {owner[m]} and {d}; analyze one run per model "
                    "(or resume the first run instead of starting a second)"
                )
            owner[m] = d
    tables: dict[str, pd.DataFrame] = {}
    for name in _TABLES:
        parts = [tabs[name] for tabs, _ in loaded if name in tabs]
        if parts:
            tables[name] = pd.concat(parts, ignore_index=True)
    for name in ("records", "generations"):
        if name in tables:
            tables[name] = with_scope(tables[name])
    metas = [meta for _, meta in loaded]
    alpha = _meta_value(metas, "alpha", DEFAULT_ALPHA) if alpha is None else alpha
    margin = _meta_value(metas, "margin", DEFAULT_MARGIN) if margin is None else margin
    recs, scan, gens = (tables.get(k) for k in ("records", "layer_scan", "generations"))
    noise = tables.get("noise_floor")
    models = sorted(owner)
    floor = {m: kl_floor(noise, m) for m in models} if noise is not None else {}
    observed = observe(scan, _layer_of(tables, metas)) if scan is not None else []
    rows: list[dict[str, Any]] = list(_observe_rows(observed))
    if recs is not None:
        rows.extend(_knockout_kl_rows(recs))
    if gens is not None:
        rows.extend(_preservation_rows(gens))
    outcomes: list[TriangleOutcome] = []
    h1s: list[H1Result] = []
    h2s: list[H2Result] = []
    if recs is not None or gens is not None:
        outcomes = classify_all(recs, gens, noise, alpha=alpha, margin=margin)
        rows.extend(_outcome_rows(outcomes))
        for m in models:
            h1s.extend(h1(recs, gens, m))
    if gens is not None:
        for m in models:
            for lang in sorted(set(gens.loc[gens["model"] == m, "language"])):
                r = h2(gens, model=m, language=lang, alpha=alpha)
                if r is not None:
                    h2s.append(r)
    rows.extend(_h1_rows(h1s))
    rows.extend(_h2_rows(h2s))
    out.mkdir(parents=True, exist_ok=True)
    heads = analyze_heads(tables, metas, out, alpha=alpha, margin=margin)
    rows.extend(heads.rows if heads else [])
    stats = _stats_table(rows)
    atomic_write_text(out / "stats.csv", stats.to_csv(index=False))
    layer = "the chosen layer"
    if len(metas) == 1 and "layer" in metas[0].get("manifest", {}):
        by_half = metas[0]["manifest"].get("layer_by_half") or {}
        if len(set(by_half.values())) <= 1:
            layer = f"layer {metas[0]['manifest']['layer']}"
    found = findings(outcomes, h1s, h2s, observed, layer=layer)
    figures = save_all(out, tables, outcomes, floor=max(floor.values()) if floor else None)
    report = out / "report.md"
    label = str(out) if len(dirs) > 1 else out.name
    text = _report(label, dirs, tables, metas, stats, outcomes, h1s, h2s, observed, found,
                   figures, alpha, margin, floor, heads.section if heads else "")  # fmt: skip
    atomic_write_text(report, text)
    log.info("wrote %s (%d tests, %d figures)", report, len(stats), len(figures))
    return report


def report_findings(report: Path) -> list[str]:
    """The Findings bullets of a written report.md (what ``plip-nn triangle`` prints)."""
    text = Path(report).read_text(encoding="utf-8")
    if "## Findings" not in text:
        return []
    body = text.split("## Findings", 1)[1].split("\n## ", 1)[0]
    return [line[2:].strip() for line in body.splitlines() if line.startswith("- ")]


def execute_notes(run: Path | str) -> list[str]:
    """Why ``executes`` was not measured (or ran without a sandbox): the manifest's note.

    ``run`` is one run directory, or the ``--out`` of several models (one note per sub-run,
    prefixed with its directory name). Empty when every generated test ran in the sandbox.
    """
    run = Path(run)
    own = run / "manifest.json"
    manifests = [own] if own.exists() else sorted(run.glob("*/manifest.json"))
    notes = []
    for path in manifests:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        note = (manifest.get("execute") or {}).get("note")
        if note:
            notes.append(note if path == own else f"[{path.parent.name}] {note}")
    return notes


def cli_analyze(run_dirs: Path | str | Sequence[Path | str], out: Path | str | None = None) -> int:
    """``plip-nn analyze RUN_DIR [RUN_DIR ...] [--out DIR]``: 0 ok, 2 bad input (one line)."""
    try:
        analyze(run_dirs, out=out)
    except ValueError as exc:
        sys.stderr.write(f"plip-nn analyze: {exc}\n")
        return 2
    return 0
