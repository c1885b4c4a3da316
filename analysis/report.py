"""``analyze(run_dir)``: statistics, outcome matrix, figures and report.md from records alone.

Reads whichever of ``records.parquet``, ``layer_scan.parquet``, ``generations.parquet``,
``calibration.json``, ``config.json``, ``manifest.json`` exist; writes ``stats.csv``,
``report.md`` and ``figures/*.png`` atomically. Never loads a model.

Test families (corrections are applied within each (model, family)):

* ``observe``: Welch t of the baseline attention level, Python vs Rust (+ Cohen's d, pooled).
* ``knockout_kl``: Wilcoxon signed-rank of per-sample KL, ``knockout`` and
  ``knockout_all_layers`` vs ``random_control`` (+ paired bootstrap CI of the mean difference).
* ``preservation``: exact McNemar, each condition vs ``baseline`` on ``preserved`` (paired by
  sample), + odds ratio (condition vs baseline preservation counts, 95% CI).
* ``attention``: Welch t of achieved vs baseline attention under each steering condition
  (+ paired Cohen's d): the manipulation check.
* ``triangle``: the deciding tests of the outcome matrix (``analysis.triangle``), whose
  Bonferroni adjustment over the deciding tests is the one the decision used.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.figures import save_all
from analysis.hypothesis import (
    TestResult,
    bootstrap_mean_diff,
    cohens_d,
    correct,
    mcnemar_from_pairs,
    odds_ratio,
    welch_t,
    wilcoxon_signed_rank,
)
from analysis.triangle import INCONCLUSIVE, TriangleOutcome, classify_all

__all__ = ["STATS_COLUMNS", "analyze", "cli_analyze"]

log = logging.getLogger(__name__)

STATS_COLUMNS = [
    "family", "model", "test", "language", "condition", "statistic", "pvalue", "p_bonferroni",
    "p_holm", "effect", "ci_low", "ci_high", "n", "note",
]  # fmt: skip
_TABLES = ("records", "layer_scan", "generations")
_JSONS = ("calibration", "config", "manifest")
_STEERING = ("scale_2", "set_value_calibrated", "scale_6")


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
    if not tables:
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
    family: str, model: str, lang: str, cond: str, res: TestResult, test: str = ""
) -> dict[str, Any]:
    return {
        "family": family, "model": model, "test": test or res.name, "language": lang,
        "condition": cond, "statistic": res.statistic,
        "pvalue": np.nan if res.pvalue is None else res.pvalue, "effect": res.effect,
        "ci_low": res.ci_low, "ci_high": res.ci_high, "n": res.n, "note": res.note,
    }  # fmt: skip


def _d_row(
    family: str, model: str, lang: str, cond: str, d: float, n: int, note: str
) -> dict[str, Any]:
    return {
        "family": family, "model": model, "test": "cohens_d", "language": lang, "condition": cond,
        "statistic": d, "pvalue": np.nan, "effect": d, "ci_low": np.nan, "ci_high": np.nan,
        "n": n, "note": note,
    }  # fmt: skip


def _try(what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    """Run one test; a test undefined on these data (ValueError) is logged and skipped."""
    try:
        return fn(*args, **kw)
    except ValueError as exc:
        log.info("skipped %s: %s", what, exc)
        return None


def _observe_rows(recs: pd.DataFrame | None, scan: pd.DataFrame | None) -> Iterable[dict[str, Any]]:
    if recs is not None:
        src = recs[(recs["condition"] == "baseline") & (recs.get("kind", "test") == "test")]
        col = "attn_baseline"
    elif scan is not None:
        src, col = scan[scan.get("kind", "test") == "test"], "attn_level"
        src = src.groupby(["model", "language", "sample_id"], as_index=False)[col].max()
    else:
        return
    for model, grp in src.groupby("model"):
        py = grp.loc[grp["language"] == "python", col].dropna()
        rs = grp.loc[grp["language"] == "rust", col].dropna()
        res = _try("observe welch", welch_t, py, rs)
        if res is not None:
            yield _row("observe", str(model), "python-rust", "baseline", res)
        d = _try("observe d", cohens_d, py, rs)
        if d is not None:
            yield _d_row("observe", str(model), "python-rust", "baseline", d, len(py) + len(rs),
                         "Cohen's d, pooled SD (python - rust)")  # fmt: skip


def _pairs(df: pd.DataFrame, column: str, cond: str, ref: str, keys: list[str]) -> pd.DataFrame:
    a = df[df["condition"] == ref].drop_duplicates(keys).set_index(keys)[column].rename("ref")
    b = df[df["condition"] == cond].drop_duplicates(keys).set_index(keys)[column].rename("cond")
    return pd.concat([a, b], axis=1, join="inner").dropna()


def _knockout_rows(recs: pd.DataFrame) -> Iterable[dict[str, Any]]:
    sub = recs[recs["kind"] == "test"] if "kind" in recs else recs
    for (model, lang), grp in sub.groupby(["model", "language"]):
        for cond in ("knockout", "knockout_all_layers"):
            if cond not in set(grp["condition"]) or "random_control" not in set(grp["condition"]):
                continue
            p = _pairs(grp, "kl", cond, "random_control", ["sample_id"])
            if len(p) == 0:
                continue
            res = _try("wilcoxon", wilcoxon_signed_rank, p["cond"], p["ref"])
            if res is not None:
                yield _row("knockout_kl", str(model), str(lang), cond, res)
            boot = _try(
                "bootstrap",
                bootstrap_mean_diff,
                p["cond"],
                p["ref"],
                paired=True,
                n_resamples=2000,
                seed=0,
            )
            if boot is not None:
                yield _row("knockout_kl", str(model), str(lang), cond, boot)


def _preservation_rows(gens: pd.DataFrame) -> Iterable[dict[str, Any]]:
    for (model, lang), grp in gens.groupby(["model", "language"]):
        for cond in sorted(set(grp["condition"]) - {"baseline"}):
            p = _pairs(grp, "preserved", cond, "baseline", ["sample_id"])
            if len(p) == 0:
                continue
            base, new = p["ref"].astype(bool), p["cond"].astype(bool)
            yield _row("preservation", str(model), str(lang), cond, mcnemar_from_pairs(base, new))
            table = [[int(new.sum()), int((~new).sum())], [int(base.sum()), int((~base).sum())]]
            res = odds_ratio(table)
            yield _row("preservation", str(model), str(lang), cond, res)


def _attention_rows(recs: pd.DataFrame) -> Iterable[dict[str, Any]]:
    for (model, lang), grp in recs.groupby(["model", "language"]):
        for cond in _STEERING:
            rows = grp[grp["condition"] == cond].dropna(subset=["attn_achieved", "attn_baseline"])
            if len(rows) < 2:
                continue
            res = _try("attention welch", welch_t, rows["attn_achieved"], rows["attn_baseline"])
            if res is not None:
                yield _row("attention", str(model), str(lang), cond, res)
            d = _try(
                "attention d", cohens_d, rows["attn_achieved"], rows["attn_baseline"], paired=True
            )
            if d is not None:
                yield _d_row("attention", str(model), str(lang), cond, d, len(rows),
                             "Cohen's d_z, paired: mean(achieved - baseline) / SD(diff)")  # fmt: skip


def _triangle_rows(outcomes: list[TriangleOutcome]) -> Iterable[dict[str, Any]]:
    for o in outcomes:
        for t in o.tests:
            if t.decides:
                row = _row("triangle", o.model, o.language, t.condition, t.result,
                           test=f"{t.result.name} ({t.measure} vs {t.reference})")  # fmt: skip
                row["note"] += (
                    f"; deciding test, Bonferroni over deciding tests p_adj={t.p_adjusted:.4g}"
                )
                yield row


def _stats_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(
        rows, columns=[c for c in STATS_COLUMNS if c not in ("p_bonferroni", "p_holm")]
    )
    df["p_bonferroni"] = np.nan
    df["p_holm"] = np.nan
    for _, idx in df.groupby(["model", "family"]).groups.items():
        sub = df.loc[idx]
        has_p = sub["pvalue"].notna()
        if has_p.any():
            keep = sub.index[has_p]
            df.loc[keep, "p_bonferroni"] = correct(sub.loc[keep, "pvalue"], "bonferroni")
            df.loc[keep, "p_holm"] = correct(sub.loc[keep, "pvalue"], "holm")
    return df[STATS_COLUMNS]


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


def _conclusion(o: TriangleOutcome) -> str:
    words = {
        "causal and malleable": "removing the marker→function attention changed behaviour beyond a random-edge control, and raising it improved preservation: the attention is causal and malleable",
        "causal one-way": "removing the attention changed behaviour beyond the random-edge control, but raising it did not improve preservation: causal, one-way",
        "confounded": "removing the attention did not change behaviour beyond the control, yet raising it improved preservation: the manipulation works but the attention itself is not shown to be necessary (confounded)",
        "epiphenomenal": "neither removing nor raising the attention changed behaviour detectably: the attention looks epiphenomenal at this power",
        INCONCLUSIVE: "the data are too few (or lack the needed conditions) to decide; see the directions below",
    }
    return (
        f"- **{o.model} / {o.language}: {o.interpretation}.** In plain words, {words[o.interpretation]}. "
        f"Knockout: {o.knockout_direction}. Steering: {o.steering_direction}. Pairs: {o.n_pairs}.\n"
    )


def _report(run_dir: Path, tables: dict[str, pd.DataFrame], meta: dict[str, Any], stats: pd.DataFrame,
            outcomes: list[TriangleOutcome], figures: list[Path], alpha: float) -> str:  # fmt: skip
    man = meta.get("manifest", {})
    lines = [f"# plip-nn analysis: `{run_dir.name}`\n\n"]
    lines.append("Regenerate with `plip-nn analyze " + str(run_dir) + "` (reads records only).\n\n")
    lines.append("## Run\n\n")
    info = {
        k: man.get(k)
        for k in (
            "model",
            "git_commit",
            "seed",
            "remote",
            "start",
            "end",
            "torch",
            "transformers",
            "nnsight",
        )
        if k in man
    }
    info.update({f"rows in {k}.parquet": len(v) for k, v in tables.items()})
    lines.append(
        _md_table(pd.DataFrame({"item": list(info), "value": [str(v) for v in info.values()]}))
    )
    execute_note = (man.get("execute") or {}).get("note")
    if execute_note:  # no sandbox (auto) or no sandbox by choice (unsafe): say so
        lines.append(f"\n**Generated tests (`executes`)**: {execute_note}.\n")
    if "calibration" in meta:
        cal = meta["calibration"]
        lines.append("\n## Calibration\n\n")
        lines.append(
            _md_table(
                pd.DataFrame({"quantity": list(cal), "value": [str(v) for v in cal.values()]})
            )
        )
    lines.append("\n## Outcome matrix (causal triangle)\n\n")
    if outcomes:
        lines.append(f"α = {alpha}. Rule: {outcomes[0].rule}.\n\n")
        lines.append(_md_table(pd.DataFrame([
            {"model": o.model, "language": o.language, "knockout effect": o.knockout_effect,
             "steering effect": o.steering_effect, "interpretation": o.interpretation}
            for o in outcomes
        ])))  # fmt: skip
    else:
        lines.append("_No knockout/steering data in this run: the triangle was not classified._\n")
    lines.append("\n## Conclusions\n\n")
    lines.extend(_conclusion(o) for o in outcomes) if outcomes else lines.append("_(none)_\n")
    if figures:
        lines.append("\n## Figures\n\n")
        lines.extend(f"![{p.stem}](figures/{p.name})\n\n" for p in figures)
    lines.append("\n## Tests and corrections\n\n")
    lines.append(
        "Paired preservation: exact (binomial) McNemar; odds ratios with Woolf 95% CI and the "
        "Haldane-Anscombe +0.5 only where a cell is 0 (stated per row). Attention levels: Welch t "
        "(+ Cohen's d: pooled SD for unpaired, d_z for paired). KL: Wilcoxon signed-rank vs the "
        "random-edge control, with a seeded paired BCa bootstrap CI of the mean difference. "
        "Bonferroni (`p_bonferroni`) and Holm (`p_holm`) correct over all tests with a p-value in the same (model, "
        "family). All rows are in `stats.csv`.\n\n"
    )
    for family, grp in stats.groupby("family", sort=False):
        lines.append(f"### {family}\n\n")
        cols = [
            "model",
            "test",
            "language",
            "condition",
            "statistic",
            "pvalue",
            "p_holm",
            "effect",
            "ci_low",
            "ci_high",
            "n",
        ]
        lines.append(_md_table(grp[cols]) + "\n")
    lines.append("## What this data cannot show\n\n")
    lines.append(
        "- Causality is shown only for the edited edges (marker → function tokens) at the edited "
        "layer(s) and heads, in these models; other routes to the same information are untouched.\n"
        "- A knockout effect beyond the random-edge control shows the edges matter, not *why*; "
        "a null result is not proof of absence (see the power rule and the pair counts).\n"
        "- Steering edits attention probabilities directly: an improvement shows the pathway is "
        "usable, not that the model naturally uses it this way.\n"
        "- Preservation is syntactic (a call by name with the declared arity that parses); "
        "`executes` needs the function's source and, for Rust, rustc.\n"
        "- Tiny or synthetic models and short prompts may not transfer to production code models; "
        "results hold for this corpus, these seeds and this α only.\n"
    )
    return "".join(lines)


def analyze(run_dir: Path, *, alpha: float = 0.05) -> Path:
    """Write ``stats.csv``, ``report.md`` and ``figures/`` for ``run_dir``; returns report.md.

    Raises:
        ValueError: the directory is missing or holds no non-empty record table.
    """
    run_dir = Path(run_dir)
    tables, meta = _load(run_dir)
    recs, scan, gens = (tables.get(k) for k in _TABLES)
    rows: list[dict[str, Any]] = []
    rows.extend(_observe_rows(recs, scan))
    if recs is not None:
        rows.extend(_knockout_rows(recs))
        rows.extend(_attention_rows(recs))
    if gens is not None:
        rows.extend(_preservation_rows(gens))
    outcomes: list[TriangleOutcome] = []
    if recs is not None or gens is not None:
        outcomes = classify_all(recs, gens, alpha=alpha)
        rows.extend(_triangle_rows(outcomes))
    stats = _stats_table(rows)
    _atomic_write(run_dir / "stats.csv", stats.to_csv(index=False))
    figures = save_all(run_dir, outcomes)
    report = run_dir / "report.md"
    _atomic_write(report, _report(run_dir, tables, meta, stats, outcomes, figures, alpha))
    log.info("wrote %s (%d tests, %d figures)", report, len(stats), len(figures))
    return report


def cli_analyze(run_dir: Path | str) -> int:
    """``plip-nn analyze RUN_DIR``: 0 on success, 2 on bad input (one line on stderr)."""
    try:
        analyze(Path(run_dir))
    except ValueError as exc:
        sys.stderr.write(f"plip-nn analyze: {exc}\n")
        return 2
    return 0
