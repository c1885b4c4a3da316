"""``analyze(RUN_DIR ...)``: statistics, outcome matrix, figures and report.md from records alone.

Reads whichever of ``records.parquet``, ``layer_scan.parquet``, ``generations.parquet``,
``control_match.parquet``, ``calibration.json``, ``config.json``, ``manifest.json`` exist in
one or more run directories (one model each); writes ``stats.csv``, ``report.md`` and
``figures/*.png`` atomically into the run directory or ``out``. Never loads a model.

Test families and their correction are defined once in :mod:`analysis.families`; rows are
paired by :func:`analysis.pairing.paired`, the same helper the decision uses
(:mod:`analysis.triangle`). ``stats.csv``'s ``triangle`` rows are the deciding tests, and their
``p_bonferroni`` is the adjusted p the decision used.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.families import FAMILIES, adjust_table
from analysis.figures import save_all
from analysis.hypothesis import (
    TestResult,
    bootstrap_mean_diff,
    cohens_d,
    mcnemar_from_pairs,
    mcnemar_odds_ratio,
    welch_t,
    wilcoxon_signed_rank,
)
from analysis.pairing import paired
from analysis.triangle import (
    EFFECT_WORDS,
    INCONCLUSIVE,
    OPPOSITE_BOTH,
    OPPOSITE_KNOCKOUT,
    OPPOSITE_STEERING,
    TriangleOutcome,
    TriangleTest,
    classify_all,
    interpretation_table,
    manipulation_tests,
)
from plip_nn.atomic import atomic_write_text

__all__ = ["STATS_COLUMNS", "analyze", "cli_analyze"]

log = logging.getLogger(__name__)

STATS_COLUMNS = [
    "family", "model", "test", "language", "condition", "statistic", "pvalue", "p_bonferroni",
    "p_holm", "family_size", "counted", "effect", "ci_low", "ci_high", "n", "note",
]  # fmt: skip
_ADJUSTED = ("p_bonferroni", "p_holm", "family_size")
_TABLES = ("records", "layer_scan", "generations", "control_match")
_JSONS = ("calibration", "config", "manifest")
_STEERING = ("scale_2", "set_value_calibrated", "scale_6")


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
    family: str,
    model: str,
    lang: str,
    cond: str,
    res: TestResult,
    test: str = "",
    counted: bool = False,
) -> dict[str, Any]:
    return {
        "family": family, "model": model, "test": test or res.name, "language": lang,
        "condition": cond, "statistic": res.statistic,
        "pvalue": np.nan if res.pvalue is None else res.pvalue, "counted": counted,
        "effect": res.effect, "ci_low": res.ci_low, "ci_high": res.ci_high, "n": res.n,
        "note": res.note,
    }  # fmt: skip


def _d_row(
    family: str, model: str, lang: str, cond: str, d: float, n: int, note: str
) -> dict[str, Any]:
    return {
        "family": family, "model": model, "test": "cohens_d", "language": lang, "condition": cond,
        "statistic": d, "pvalue": np.nan, "counted": False, "effect": d, "ci_low": np.nan, "ci_high": np.nan,
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


def _knockout_rows(recs: pd.DataFrame) -> Iterable[dict[str, Any]]:
    sub = recs[recs["kind"] == "test"] if "kind" in recs else recs
    for (model, lang), grp in sub.groupby(["model", "language"]):
        for cond in ("knockout", "knockout_all_layers"):
            if cond not in set(grp["condition"]) or "random_control" not in set(grp["condition"]):
                continue
            if cond == "knockout":
                p = paired(grp, "kl", cond, "random_control", ["sample_id", "layer"])
            else:  # all layers (layer -1) against the single-layer control
                p = paired(grp, "kl", cond, "random_control")
            if len(p) == 0:
                continue
            res = _try("wilcoxon", wilcoxon_signed_rank, p["cond"], p["ref"])
            if res is not None:
                yield _row("knockout_kl", str(model), str(lang), cond, res, counted=True)
            boot = _try("bootstrap", bootstrap_mean_diff, p["cond"], p["ref"], paired=True,
                        n_resamples=2000, seed=0)  # fmt: skip
            if boot is not None:
                yield _row("knockout_kl", str(model), str(lang), cond, boot)


def _preservation_rows(gens: pd.DataFrame) -> Iterable[dict[str, Any]]:
    for (model, lang), grp in gens.groupby(["model", "language"]):
        for cond in sorted(set(grp["condition"]) - {"baseline"}):
            p = paired(grp, "preserved", cond, "baseline")
            if len(p) == 0:
                continue
            base, new = p["ref"].astype(bool), p["cond"].astype(bool)
            res = mcnemar_from_pairs(base, new)
            yield _row("preservation", str(model), str(lang), cond, res, counted=True)
            b, c = int((base & ~new).sum()), int((~base & new).sum())
            yield _row("preservation", str(model), str(lang), cond, mcnemar_odds_ratio(b, c))


def _attention_rows(recs: pd.DataFrame) -> Iterable[dict[str, Any]]:
    sub = recs[recs["kind"] == "test"] if "kind" in recs else recs
    for (model, lang), grp in sub.groupby(["model", "language"]):
        for cond in _STEERING:
            results, d_z = manipulation_tests(grp[grp["condition"] == cond])
            for res in results:
                yield _row("manipulation", str(model), str(lang), cond, res,
                           counted=res.name == "wilcoxon_signed_rank")  # fmt: skip
            if d_z is not None:
                n = int(grp[grp["condition"] == cond].dropna(subset=["attn_achieved"]).shape[0])
                yield _d_row("manipulation", str(model), str(lang), cond, d_z, n,
                             "Cohen's d_z, paired: mean(achieved - baseline) / SD(diff)")  # fmt: skip


def _triangle_rows(outcomes: list[TriangleOutcome]) -> Iterable[dict[str, Any]]:
    for o in outcomes:
        for t in o.tests:
            if t.decides:
                row = _row("triangle", o.model, o.language, t.condition, t.result,
                           test=f"{t.result.name} ({t.measure} vs {t.reference})",
                           counted=True)  # fmt: skip
                row["note"] += "; deciding test"
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


_PLAIN = {
    "causal and malleable": "removing the marker→function attention changed behaviour beyond "
    "the mass-matched random-edge control, and raising it improved preservation: the attention "
    "is causal and malleable",
    "causal one-way": "removing the attention changed behaviour beyond the mass-matched control, "
    "but raising it did not improve preservation (with enough pairs to see it): causal, one-way",
    "confounded": "removing the attention did not change behaviour beyond the control (with "
    "enough pairs to see it), yet raising it improved preservation: the manipulation works but "
    "the attention itself is not shown to be necessary (confounded)",
    "epiphenomenal": "neither removing nor raising the attention changed behaviour, with enough "
    "pairs to see an effect: the attention looks epiphenomenal at this power",
    INCONCLUSIVE: "the data are too few (or lack the needed conditions) to decide; a "
    "non-significant result here is not evidence of no effect",
    OPPOSITE_KNOCKOUT: "removing the marker→function edges hurt behaviour significantly LESS "
    "than removing mass-matched random edges (or preserved more): the opposite of the "
    "prediction; none of the seed's four interpretations applies",
    OPPOSITE_STEERING: "raising the attention significantly LOWERED preservation: the opposite "
    "of the prediction; none of the seed's four interpretations applies",
    OPPOSITE_BOTH: "both edits moved behaviour significantly against the prediction; none of "
    "the seed's four interpretations applies",
}


def _ci(res: TestResult) -> str:
    if math.isnan(res.ci_low) and math.isnan(res.ci_high):
        return ""
    return f" [95% CI {_fmt(res.ci_low)}, {_fmt(res.ci_high)}]"


def _test_line(t: TriangleTest) -> str:
    r = t.result
    p = "" if r.pvalue is None else f", p = {_fmt(float(r.pvalue))}"
    adj = "" if t.p_adjusted is None else f", p_adj = {_fmt(t.p_adjusted)} (deciding)"
    what = {
        "mcnemar_exact": "preservation difference (c-b)/n",
        "mcnemar_odds_ratio": "conditional odds ratio c/b",
        "wilcoxon_signed_rank": "median difference",
        "paired_t": "mean difference",
    }.get(r.name, "effect")
    return (
        f"  - {t.role}: {t.condition} vs {t.reference} on {t.measure}, {r.name}: {what} "
        f"{_fmt(r.effect)}{_ci(r)}{p}{adj}, n = {r.n}\n"
    )


def _conclusion(o: TriangleOutcome, boot: pd.DataFrame) -> str:
    lines = [
        f"### {o.model} / {o.language}: {o.interpretation}\n\n",
        f"In plain words, {_PLAIN[o.interpretation]}. ",
        f"Knockout effect: **{EFFECT_WORDS[o.knockout_effect]}** ({o.knockout_direction}). ",
        f"Steering effect: **{EFFECT_WORDS[o.steering_effect]}** ({o.steering_direction}). ",
        "Pairs: " + ", ".join(f"{k} {v}" for k, v in o.n_pairs.items()) + ". ",
        f"Bonferroni over {o.family_size} deciding test(s) at α = {o.alpha}. ",
        "Power rule: " + "; ".join(f"{k}: {v}" for k, v in o.power.items()) + ".\n\n",
    ]
    lines.extend(_test_line(t) for t in o.tests)
    if o.d_z:
        lines.append(
            "  - manipulation d_z: " + ", ".join(f"{c} {_fmt(v)}" for c, v in o.d_z.items()) + "\n"
        )
    b = boot[(boot["model"] == o.model) & (boot["language"] == o.language)]
    for row in b.itertuples():
        lines.append(
            f"  - knockout_kl: {row.condition} vs random_control, mean KL difference "
            f"{_fmt(row.effect)} nats [95% CI {_fmt(row.ci_low)}, {_fmt(row.ci_high)}] "
            f"(paired BCa bootstrap), n = {row.n}\n"
        )
    return "".join(lines) + "\n"


def _versions(man: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for k in ("experiment", "model", "model_revision", "git_commit", "seed", "remote", "device",
              "dtype", "layer", "started", "finished", "status"):  # fmt: skip
        if k in man:
            info[k] = man[k]
    for k, v in (man.get("versions") or {}).items():
        info[k] = v
    return info


def _control_section(control: pd.DataFrame | None, recs: pd.DataFrame | None) -> str:
    lines = ["\n## The random-edge control (matched on count and removed attention mass)\n\n"]
    if control is None:
        lines.append(
            "_No control_match.parquet: this run's random_control is matched on edge count "
            "only, so it may remove far more or far less attention than the knockout._\n"
        )
        return "".join(lines)
    rows = []
    for (model, lang), g in control[control["kind"] == "test"].groupby(["model", "language"]):
        ratio = g["mass_ratio"].dropna()
        rows.append({
            "model": model, "language": lang, "samples": len(g),
            "median control/knockout mass": float(ratio.median()) if len(ratio) else math.nan,
            "within ±10%": f"{100 * g['within_tolerance'].mean():.0f}%",
            "knockouts that include token 0": f"{100 * g['targets_include_token0'].mean():.0f}%",
            "median marker attention on token 0": float(g["token0_share"].median()),
        })  # fmt: skip
    lines.append(_md_table(pd.DataFrame(rows)))
    tests = control[control["kind"] == "test"]
    share = float(tests["token0_share"].median())
    with0 = float(tests["targets_include_token0"].mean())
    lines.append(
        f"\nThe marker's attention on token 0 (head-mean, at the edited layer) has median "
        f"{share:.2f} over test samples, and {100 * with0:.0f}% of the knockouts include token 0 "
        "among their targets. In a model without a BOS token (the embedded model, Qwen2.5) "
        "token 0 is often the function's `def`/`fn`; where it acts as an attention sink (a large "
        "share above), a knockout that includes it removes much more attention than a few "
        "random keys would, and a count-matched control would be unfair"
        + (" -- as here" if share >= 0.2 else "; here the share is small, so this matters less")
        + ". The control therefore picks its keys so that the attention it removes is within "
        "±10% of the knockout's (or as close as the sample allows; each sample's ratio is in "
        "`control_match.parquet`), and the deciding knockout test compares against it. Where a "
        "sample's knockout takes most of the row's mass, no set of other keys can match it and "
        "the ratio stays below 1: a knockout effect there may still partly be an effect of "
        "removing *much* attention rather than attention to the function.\n"
    )
    if recs is not None and "mass_removed" in recs:
        ko = recs[recs["condition"].isin(["knockout", "random_control"]) & (recs["kind"] == "test")]
        med = ko.groupby(["model", "language", "condition"])["mass_removed"].median().unstack()
        lines.append("\nMedian attention mass removed (records, edited pass):\n\n")
        lines.append(_md_table(med.reset_index()))
    return "".join(lines)


def _report(label: str, sources: list[Path], tables: dict[str, pd.DataFrame],
            metas: list[dict[str, Any]], stats: pd.DataFrame, outcomes: list[TriangleOutcome],
            study_wide: list[TriangleOutcome], figures: list[Path], alpha: float) -> str:  # fmt: skip
    lines = [f"# plip-nn analysis: `{label}`\n\n"]
    lines.append(
        "Regenerate with `plip-nn analyze " + " ".join(str(p) for p in sources)
        + (f" --out {label}" if len(sources) > 1 else "") + "` (reads records only).\n\n"
    )  # fmt: skip
    lines.append("## Run\n\n")
    for src, meta in zip(sources, metas, strict=True):
        info: dict[str, Any] = {"run directory": str(src), **_versions(meta.get("manifest", {}))}
        skipped = meta.get("manifest", {}).get("skipped_masked") or []
        info["samples skipped (--skip-masked)"] = len(skipped)
        lines.append(_md_table(pd.DataFrame({"item": list(info),
                                             "value": [str(v) for v in info.values()]})))  # fmt: skip
        if skipped:
            lines.append("\nSkipped because an edge is causally masked (`--skip-masked`):\n\n")
            lines.extend(f"- `{s['sample_id']}`: {s['reason']}\n" for s in skipped)
        execute_note = (meta.get("manifest", {}).get("execute") or {}).get("note")
        if execute_note:  # no sandbox (auto) or no sandbox by choice (unsafe): say so
            lines.append(f"\n**Generated tests (`executes`)**: {execute_note}.\n")
        lines.append("\n")
    counts = {f"rows in {k}.parquet": len(v) for k, v in tables.items()}
    lines.append(_md_table(pd.DataFrame({"table": list(counts),
                                         "rows": [str(v) for v in counts.values()]})))  # fmt: skip
    for src, meta in zip(sources, metas, strict=True):
        if "calibration" in meta:
            cal = {k: v for k, v in meta["calibration"].items() if not isinstance(v, list)}
            lines.append(f"\n## Calibration (`{src.name}`)\n\n")
            lines.append(_md_table(pd.DataFrame({"quantity": list(cal),
                                                 "value": [str(v) for v in cal.values()]})))  # fmt: skip
    lines.append("\n## Outcome matrix (causal triangle)\n\n")
    if outcomes:
        lines.append(f"α = {alpha}. Rule: {outcomes[0].rule}.\n\n")
        langs = sorted({o.language for o in outcomes})
        matrix = pd.DataFrame(
            [{"model": m, **{lang: next((o.interpretation for o in outcomes
                                         if o.model == m and o.language == lang), "not run")
                             for lang in langs}}
             for m in sorted({o.model for o in outcomes})]
        )  # fmt: skip
        lines.append(_md_table(matrix))
        lines.append("\nEffects behind each cell:\n\n")
        lines.append(_md_table(pd.DataFrame([
            {"model": o.model, "language": o.language,
             "knockout effect": EFFECT_WORDS[o.knockout_effect],
             "steering effect": EFFECT_WORDS[o.steering_effect],
             "outcome": o.interpretation,
             "study-wide Bonferroni": sw.interpretation}
            for o, sw in zip(outcomes, study_wide, strict=True)
        ])))  # fmt: skip
        total = study_wide[0].family_size if study_wide else 0
        lines.append(
            f"\nCorrection: each cell's verdict uses Bonferroni over its own deciding tests "
            f"(family `triangle`, per model and language). Taken as one family, the whole matrix "
            f"has {total} deciding test(s); the last column gives each verdict under Bonferroni "
            f"over all of them (α/{total} = {alpha / max(total, 1):.3g}).\n"
        )
        lines.append(
            "\nHow effects map to outcomes (the seed's four interpretations, extended): each "
            "effect is *in the predicted direction*, *no effect (powered)*, *opposite direction* "
            "(significant, against the prediction: reported as such, never as no effect) or "
            "*inconclusive (low power)*.\n\n"
        )
        lines.append(_md_table(interpretation_table()))
    else:
        lines.append("_No knockout/steering data in this run: the triangle was not classified._\n")
    lines.append("\n## Conclusions\n\n")
    boot = stats[(stats["family"] == "knockout_kl") & (stats["test"] == "bootstrap_mean_diff")]
    lines.extend(_conclusion(o, boot) for o in outcomes) if outcomes else lines.append("_(none)_\n")
    lines.append(_control_section(tables.get("control_match"), tables.get("records")))
    if figures:
        lines.append("\n## Figures\n\n")
        lines.extend(f"![{p.stem}](figures/{p.name})\n\n" for p in figures)
    lines.append("\n## Tests and corrections\n\n")
    lines.append(
        "Paired data get paired tests: preservation (condition vs baseline, knockout vs "
        "random_control, same samples) → exact McNemar with the conditional odds ratio c/b and "
        "its exact (Clopper-Pearson) CI; attention before/after an edit (same rows) → Wilcoxon "
        "signed-rank and paired t with d_z; KL knockout vs random_control (same samples) → "
        "Wilcoxon signed-rank with a seeded paired BCa bootstrap CI of the mean difference. "
        "Python vs Rust levels are unpaired → Welch t with pooled Cohen's d. Families "
        "(corrected within each model and language; `counted` marks the rows in the family, "
        "a second view of the same comparison is shown but not counted twice; "
        "`family_size` is m; `p_bonferroni` is what decisions use, `p_holm` (Holm) is given "
        "alongside):\n\n"
    )
    lines.extend(f"- `{name}`: {text}\n" for name, text in FAMILIES.items())
    lines.append("\nAll rows are in `stats.csv`.\n\n")
    cols = ["model", "test", "language", "condition", "statistic", "pvalue", "p_bonferroni",
            "effect", "ci_low", "ci_high", "n"]  # fmt: skip
    for family, grp in stats.groupby("family", sort=False):
        lines.append(f"### {family}\n\n")
        lines.append(_md_table(grp[cols]) + "\n")
    lines.append("## What this data cannot show\n\n")
    lines.append(
        "- Causality is shown only for the edited edges (marker → function tokens) at the edited "
        "layer(s) and heads, in these models; other routes to the same information are untouched.\n"
        "- A knockout effect beyond the mass-matched control shows the edges matter more than the "
        "same amount of other attention, not *why*; where the mass could not be matched (see the "
        "control section) the comparison is weaker. A null result is not proof of absence (see "
        "the power rule and the pair counts).\n"
        "- Steering edits attention probabilities directly: an improvement shows the pathway is "
        "usable, not that the model naturally uses it this way.\n"
        "- Preservation is syntactic (a call by name with the declared arity that parses); "
        "`executes` needs the function's source and, for Rust, rustc.\n"
        "- Tiny or synthetic models and short prompts may not transfer to production code models; "
        "results hold for this corpus, these seeds and this α only.\n"
    )
    return "".join(lines)


def analyze(
    run_dirs: Path | str | Sequence[Path | str], *, out: Path | str | None = None,
    alpha: float = 0.05,
) -> Path:  # fmt: skip
    """Write ``stats.csv``, ``report.md`` and ``figures/`` for one or more runs; returns report.md.

    Args:
        run_dirs: one run directory, or several (one model each, e.g. the sub-runs of
            ``plip-nn triangle --model A --model B``).
        out: where to write; defaults to the run directory when there is one, required for
            several.
        alpha: significance level.

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
        models = {str(m) for t in tabs.values() if "model" in t for m in t["model"].unique()}
        for m in sorted(models):
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
    metas = [meta for _, meta in loaded]
    recs, scan, gens = (tables.get(k) for k in ("records", "layer_scan", "generations"))
    rows: list[dict[str, Any]] = []
    rows.extend(_observe_rows(recs, scan))
    if recs is not None:
        rows.extend(_knockout_rows(recs))
        rows.extend(_attention_rows(recs))
    if gens is not None:
        rows.extend(_preservation_rows(gens))
    outcomes: list[TriangleOutcome] = []
    study_wide: list[TriangleOutcome] = []
    if recs is not None or gens is not None:
        outcomes = classify_all(recs, gens, alpha=alpha)
        study_wide = classify_all(recs, gens, alpha=alpha, study_wide=True)
        rows.extend(_triangle_rows(outcomes))
    stats = _stats_table(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "stats.csv", stats.to_csv(index=False))
    figures = save_all(out, tables, outcomes)
    report = out / "report.md"
    label = str(out) if len(dirs) > 1 else out.name
    text = _report(label, dirs, tables, metas, stats, outcomes, study_wide, figures, alpha)
    atomic_write_text(report, text)
    log.info("wrote %s (%d tests, %d figures)", report, len(stats), len(figures))
    return report


def cli_analyze(run_dirs: Path | str | Sequence[Path | str], out: Path | str | None = None) -> int:
    """``plip-nn analyze RUN_DIR [RUN_DIR ...] [--out DIR]``: 0 ok, 2 bad input (one line)."""
    try:
        analyze(run_dirs, out=out)
    except ValueError as exc:
        sys.stderr.write(f"plip-nn analyze: {exc}\n")
        return 2
    return 0
