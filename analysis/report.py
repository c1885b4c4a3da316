"""``analyze(RUN_DIR ...)``: statistics, outcome matrix, figures and report.md from records alone.

Reads whichever of ``records.parquet``, ``layer_scan.parquet``, ``generations.parquet``,
``control_match.parquet``, ``noise_floor.parquet``, ``calibration.json``, ``config.json``,
``manifest.json`` exist in one or more run directories (one model each); writes ``stats.csv``,
``report.md`` and ``figures/*.png`` atomically into the run directory or ``out``. Never loads a
model. A run written before the call-site readout, the inert control or per-layer control
matching (an old run) is analysed as far as its columns allow, and the report says what it
lacks.

The rows of ``stats.csv`` come from :mod:`analysis.report_rows` (families in
:mod:`analysis.families`), the text from :mod:`analysis.report_md`; rows are paired by
:func:`analysis.pairing.paired`, the same helper the decision uses (:mod:`analysis.triangle`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.dose import H2Result, h2
from analysis.figures import save_all
from analysis.findings import findings
from analysis.heads import HEADS_TABLES, analyze_heads
from analysis.languages import H1Result, h1, observe, real_vs_false
from analysis.matching import matching_table
from analysis.power_report import power_flags, power_frame, power_stats_rows
from analysis.reach import kl_floor
from analysis.report_md import Inputs, render
from analysis.report_rows import (
    STATS_COLUMNS,
    callsite_rows,
    equivalence_rows,
    h1_rows,
    h2_rows,
    knockout_kl_rows,
    marker_rows,
    observe_rows,
    outcome_rows,
    preservation_rows,
    stats_table,
)
from analysis.robust_report import (
    finding_id,
    greedy_only,
    half_filters,
    has_sampled,
    rate_verdicts,
    robustness_frame,
    study_groups,
)
from analysis.scopes import with_scope
from analysis.triangle import TriangleOutcome, classify_all
from plip_nn.atomic import atomic_write_text
from plip_nn.scope import function_half

__all__ = ["STATS_COLUMNS", "analyze", "cli_analyze", "execute_notes", "report_findings"]

log = logging.getLogger(__name__)

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
    every = [_load(d) for d in dirs]
    groups = study_groups([meta for _, meta in every])
    for g in groups:  # seeds of one study must differ in seed
        seen: dict[str, Path] = {}
        for i in g:
            seed = str((every[i][1].get("config") or {}).get("seed"))
            if seed in seen:
                models = sorted({str(m) for t in every[i][0].values() if "model" in t
                                 for m in t["model"].unique()})  # fmt: skip
                raise ValueError(
                    f"model {models[0] if models else '?'!r} is in both {seen[seed]} and "
                    f"{dirs[i]} with the same seed {seed}; analyze one run per model and seed"
                )
            seen[seed] = dirs[i]
    mains = [g[0] for g in groups]
    loaded = [every[i] for i in mains]
    owner: dict[str, Path] = {}
    for i, (tabs, _) in zip(mains, loaded, strict=True):
        d = dirs[i]
        in_run = {str(m) for t in tabs.values() if "model" in t for m in t["model"].unique()}
        for m in sorted(in_run):
            if m in owner:
                raise ValueError(
                    f"model {m!r} is in both {owner[m]} and {d}; analyze one run per model "
                    "(or resume the first run instead of starting a second); runs of one model "
                    "are seeds of one study only when their config.json differs in `seed` alone"
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
    all_gens = tables.get("generations")
    if all_gens is not None:  # every test but the per-prompt rates reads the greedy decodings
        tables["generations"] = greedy_only(all_gens)
    metas = [meta for _, meta in loaded]
    alpha = _meta_value(metas, "alpha", DEFAULT_ALPHA) if alpha is None else alpha
    margin = _meta_value(metas, "margin", DEFAULT_MARGIN) if margin is None else margin
    recs, scan, gens = (tables.get(k) for k in ("records", "layer_scan", "generations"))
    noise, control = tables.get("noise_floor"), tables.get("control_match")
    models = sorted(owner)
    floor = {m: kl_floor(noise, m) for m in models} if noise is not None else {}
    observed = observe(scan, _layer_of(tables, metas)) if scan is not None else []
    markers = real_vs_false(scan) if scan is not None else []
    rows: list[dict[str, Any]] = [*observe_rows(observed), *marker_rows(markers)]
    if recs is not None:
        rows.extend(knockout_kl_rows(recs))
        rows.extend(callsite_rows(recs))
    if gens is not None:
        rows.extend(preservation_rows(gens))
    outcomes: list[TriangleOutcome] = []
    h1s: list[H1Result] = []
    if recs is not None or gens is not None:
        outcomes = classify_all(recs, gens, noise, alpha=alpha, margin=margin,
                                control_match=control)  # fmt: skip
        rows.extend(outcome_rows(outcomes))
        rows.extend(equivalence_rows(outcomes))
        for m in models:
            h1s.extend(h1(recs, gens, m, alpha=alpha))
    h2s = _h2_all(gens, outcomes, alpha) if gens is not None else []
    powers = power_frame(outcomes, all_gens)
    rows.extend(power_stats_rows(powers))
    rates = rate_verdicts(all_gens, outcomes)
    seeds = _seed_outcomes(groups, every, outcomes, alpha=alpha, margin=margin)
    halves = _half_outcomes(tables, metas, alpha=alpha, margin=margin)
    robust = robustness_frame(outcomes, halves=halves, seeds=seeds, rates=rates)
    rows.extend(h1_rows(h1s))
    rows.extend(h2_rows(h2s))
    out.mkdir(parents=True, exist_ok=True)
    heads = analyze_heads(tables, metas, out, alpha=alpha, margin=margin)
    rows.extend(heads.rows if heads else [])
    stats = stats_table(rows)
    atomic_write_text(out / "stats.csv", stats.to_csv(index=False))
    layer = "the chosen layer"
    if len(metas) == 1 and "layer" in metas[0].get("manifest", {}):
        by_half = metas[0]["manifest"].get("layer_by_half") or {}
        if len(set(by_half.values())) <= 1:
            layer = f"layer {metas[0]['manifest']['layer']}"
    agree = _agreement(robust, outcomes)
    found = findings(
        outcomes,
        h1s,
        h2s,
        observed,
        layer=layer,
        markers=markers,
        power=power_flags(powers, outcomes),
        robust=agree,
    )
    figures = save_all(out, tables, outcomes, floor=max(floor.values()) if floor else None)
    report = out / "report.md"
    scopes = [(o.model, o.language, k.scope) for o in outcomes for k in o.knockouts]
    text = render(Inputs(
        label=str(out) if len(dirs) > 1 else out.name, sources=[dirs[i] for i in mains],
        tables=tables, metas=metas,
        stats=stats, outcomes=outcomes, h1s=h1s, h2s=h2s, observed=observed, markers=markers,
        matching=matching_table(control, recs, scopes), found=found, figures=figures,
        alpha=alpha, margin=margin, floor=floor, heads_md=heads.section if heads else "",
        power=powers, robust=robust, rates=rates, sampled=has_sampled(all_gens),
        seed_sources=[dirs[i] for g in groups for i in g[1:]],
    ))  # fmt: skip
    atomic_write_text(report, text)
    log.info("wrote %s (%d tests, %d figures)", report, len(stats), len(figures))
    return report


def _agreement(
    robust: pd.DataFrame, outcomes: list[TriangleOutcome]
) -> dict[tuple[str, str, str], tuple[bool, str]]:
    """(model, language, scope) -> (every level agrees, the robustness sentence); the
    "· preservation" row (greedy vs sampled decoding) is folded in where it exists."""
    by_id = {str(r.finding): (bool(r.agree), str(r.sentence)) for r in robust.itertuples()}
    out = {}
    for o in outcomes:
        for k in o.knockouts:
            fid = finding_id(o.model, o.language, k.scope)
            if fid not in by_id:
                continue
            ok, words = by_id[fid]
            pres = by_id.get(fid + " · preservation")
            if pres is not None and ok and pres[0]:
                words += f"; preservation (greedy vs sampled decoding): {pres[1]}"
            elif pres is not None:  # only what disagrees: "the <verdict differs ...>"
                differs = [words] if not ok else []
                differs += [] if pres[0] else [f"preservation {pres[1]}"]
                ok, words = False, "; the ".join(differs)
            out[(o.model, o.language, k.scope)] = (ok, words)
    return out


def _seed_outcomes(
    groups: list[list[int]], every: list[tuple[dict[str, pd.DataFrame], dict[str, Any]]],
    outcomes: list[TriangleOutcome], *, alpha: float, margin: float,
) -> dict[str, list[TriangleOutcome]]:  # fmt: skip
    """ "seed N" -> the outcomes of every study's run with that seed (the main runs' own seed
    included); {} when no study has a second seed."""
    if all(len(g) == 1 for g in groups):
        return {}
    out: dict[str, list[TriangleOutcome]] = {}
    for g in groups:
        for i in g:
            tabs, meta = every[i]
            label = str((meta.get("config") or {}).get("seed", i))
            if i == g[0]:
                models = {str(m) for t in tabs.values() if "model" in t for m in t["model"]}
                out.setdefault(label, []).extend(o for o in outcomes if o.model in models)
                continue
            recs, gens = (with_scope(tabs[k]) if k in tabs else None
                          for k in ("records", "generations"))  # fmt: skip
            if recs is None and gens is None:
                continue
            out.setdefault(label, []).extend(classify_all(
                recs, greedy_only(gens), tabs.get("noise_floor"), alpha=alpha, margin=margin,
                control_match=tabs.get("control_match")))  # fmt: skip
    return out


def _half_outcomes(
    tables: dict[str, pd.DataFrame], metas: list[dict[str, Any]], *, alpha: float, margin: float
) -> dict[str, list[TriangleOutcome]]:
    """ "0 (layer L)" -> the outcomes re-classified on that half's samples alone."""
    out: dict[str, list[TriangleOutcome]] = {}
    recs, gens = tables.get("records"), tables.get("generations")
    for name, keep in half_filters(metas).items():
        r = keep(recs) if recs is not None else None
        g = keep(gens) if gens is not None else None
        try:
            out[name] = classify_all(r if r is not None and len(r) else None,
                                     g if g is not None and len(g) else None,
                                     tables.get("noise_floor"), alpha=alpha, margin=margin,
                                     control_match=tables.get("control_match"))  # fmt: skip
        except ValueError as exc:
            log.info("half %s not classified: %s", name, exc)
    return out


def _h2_all(
    gens: pd.DataFrame, outcomes: Sequence[TriangleOutcome], alpha: float
) -> list[H2Result]:
    """H2 per model, language and steering scope where some steering reaches the output."""
    out = []
    for o in outcomes:
        for scope, st in o.steering_by_scope.items():
            if not any(t.reach is not None and t.reach.reached for t in st.tests):
                continue
            r = h2(gens, model=o.model, language=o.language, alpha=alpha, scope=scope)
            if r is not None:
                out.append(r)
    return out


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
