"""Which heads carry it: per-head summaries, the attribution's validation, the held-out top-K test.

Pure functions over the tables of :mod:`experiments.heads` (never loads a model):

* :func:`summarize` -> ``heads.parquet``, one row per (model, language, layer, head): the
  marker->function attention level and mass of that head, its attribution (the estimated
  change of log p of the greedy token when its edges alone are knocked out, from one forward
  and one backward), and the measured effect of that knockout -- KL and the change of log p at
  the readout (and of the gold name token, ``dlogp_gold``, where the sweep has it) -- as means
  over samples with BCa bootstrap 95% CIs.
* :func:`validate_attribution`: Spearman ρ between attribution and measured change over the
  heads (head means) and over every (sample, head), and the overlap of the 10 heads each ranks
  most harmful; for the estimate used and for plain first-order attribution patching.
* :func:`held_out` (:mod:`analysis.heads_heldout`): the top-K heads chosen over every layer on
  the other half of the functions, tested at the call: against K random heads matched on mass,
  their share of the whole-model effect, and their steering.
* :func:`heads_heatmap`: layer × head heatmaps per language (level, measured, attribution).
* :func:`analyze_heads`: all of the above for :func:`analysis.report.analyze` -- writes
  ``heads.parquet`` and the figures, returns the report section
  (:func:`analysis.heads_report.heads_section`) and the ``stats.csv`` rows.

Family ``heads`` (:mod:`analysis.families`): per model and language, the top-K knockout vs its
first random-heads draw and ``steer_topk`` vs baseline are counted; the other draws are
adjusted with the same m and must agree (as in :mod:`analysis.triangle`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from analysis.heads_heldout import (
    MEASURES,
    Comparison,
    HeldOut,
    Share,
    _mean_ci,
    held_out,
    stats_rows,
    whole_model_share,
)
from analysis.heads_report import TOP_N, heads_section
from analysis.reach import kl_floor
from plip_nn.atomic import atomic_write_parquet

__all__ = [
    "HEADS_TABLES",
    "TOP_N",
    "Comparison",
    "HeadsAnalysis",
    "HeldOut",
    "Share",
    "analyze_heads",
    "heads_heatmap",
    "heads_section",
    "held_out",
    "stats_rows",
    "summarize",
    "top_overlap",
    "validate_attribution",
    "whole_model_share",
]

log = logging.getLogger(__name__)

HEADS_TABLES = ("head_sweep", "heads_selection", "heads_control", "heads_records",
                "heads_generations")  # fmt: skip
"""The tables :mod:`experiments.heads` writes."""


def summarize(sweep: pd.DataFrame, noise: pd.DataFrame | None = None) -> pd.DataFrame:
    """``heads.parquet``: one row per (model, language, layer, head) of ``head_sweep``.

    ``rank_measured`` / ``rank_attribution``: the head's place (1 = first) when the heads of
    the model and language are ordered by mean measured / estimated change of log p(top-1),
    most negative first. ``p_top1``: the mean probability of the greedy token at the
    prediction, unedited (a near-certain token leaves a knockout little to move). With the KL
    noise floor (``noise``): ``kl_floor``, and
    ``reaches_output`` -- the head's median KL at the prediction is above the floor (as in
    :mod:`analysis.reach`).
    """
    rows = []
    keys = ["model", "language", "layer", "head"]
    for (model, language, layer, head), g in sweep.groupby(keys, sort=True):
        row: dict[str, Any] = {
            "model": model, "language": language, "layer": int(layer), "head": int(head),
            "rows": str(g["rows"].iloc[0]), "targets": str(g["targets"].iloc[0]),
            "n_prompts": int(g["sample_id"].nunique()),
            "attn_level": float(g["attn_level"].mean()),
            "attn_mass": float(g["attn_mass"].mean()),
            "attribution": float(g["attribution"].mean()),
            "attribution_linear": float(g["attribution_linear"].mean()),
            "top1_changed": float((~g["top1_same"].astype(bool)).mean()),
            "kl_median": float(g["kl"].median()),
            "p_top1": float(np.exp(g.drop_duplicates("sample_id")["logp_top1"]).mean()),
        }  # fmt: skip
        floor = kl_floor(noise, str(model))
        row["kl_floor"] = floor
        row["reaches_output"] = bool(row["kl_median"] > floor) if math.isfinite(floor) else None
        for col in MEASURES:
            if col not in g or g[col].isna().all():  # dlogp_gold: only with the call readout
                continue
            mean, lo, hi = _mean_ci(g[col].dropna().to_numpy())
            row.update({col: mean, f"{col}_ci_low": lo, f"{col}_ci_high": hi})
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for col, name in (("dlogp_top1", "rank_measured"), ("attribution", "rank_attribution")):
        out[name] = (
            out.groupby(["model", "language"])[col].rank(method="first", ascending=True).astype(int)
        )
    return out


def top_overlap(a: Sequence[float], b: Sequence[float], n: int = TOP_N) -> tuple[int, int]:
    """(shared, n') of the ``n'`` = min(n, len) most negative entries of ``a`` and of ``b``."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    m = min(n, x.size)
    return len(set(np.argsort(x, kind="stable")[:m]) & set(np.argsort(y, kind="stable")[:m])), m


def validate_attribution(sweep: pd.DataFrame) -> pd.DataFrame:
    """Attribution vs measured knockout, per model and language (and both languages pooled).

    ``rho_heads``: Spearman ρ over the heads of the per-head means; ``rho_items``: over every
    (prompt, head); ``top_shared`` of ``top_n``: heads among the most harmful ``top_n`` in both
    rankings. ``estimator``: ``attribution`` (the log-odds estimate used) or
    ``attribution_linear`` (plain first-order attribution patching on log p).
    """
    rows = []
    for model, gm in sweep.groupby("model", sort=True):
        groups = [(str(lang), g) for lang, g in gm.groupby("language", sort=True)]
        if len(groups) > 1:
            groups.append(("both", gm))
        for language, g in groups:
            for est in ("attribution", "attribution_linear"):
                means = g.groupby(["language", "layer", "head"])[[est, "dlogp_top1"]].mean()
                if language == "both":  # pool the languages' head means
                    means = means.groupby(level=["layer", "head"]).mean()
                shared, n = top_overlap(means[est], means["dlogp_top1"])
                rows.append({
                    "model": model, "language": language, "estimator": est,
                    "n_heads": len(means), "n_items": len(g),
                    "rho_heads": _spearman(means[est], means["dlogp_top1"]),
                    "rho_items": _spearman(g[est], g["dlogp_top1"]),
                    "top_shared": shared, "top_n": n,
                    "mean_abs_error": float((g[est] - g["dlogp_top1"]).abs().mean()),
                })  # fmt: skip
    return pd.DataFrame(rows)


def _spearman(a: pd.Series, b: pd.Series) -> float:
    if len(a) < 3 or a.nunique() < 2 or b.nunique() < 2:
        return math.nan
    return float(spearmanr(a.to_numpy(), b.to_numpy()).statistic)


def heads_heatmap(summary: pd.DataFrame, model: str) -> Figure:
    """Layer × head heatmaps of one model, one row per language: attention level, measured
    Δlog p(top-1) of the head's knockout, and its attribution (shared colour scale)."""
    data = summary[summary["model"] == model]
    if data.empty:
        raise ValueError(f"heads_heatmap: no heads of model {model!r}")
    languages = sorted(set(data["language"]))
    lim = float(np.nanmax(np.abs(data[["dlogp_top1", "attribution"]].to_numpy())))
    lim = lim if lim > 0 else 1.0
    fig, axes = plt.subplots(len(languages), 3, squeeze=False,
                             figsize=(11, 0.4 + 2.6 * len(languages) * max(1, data["layer"].nunique() / 8)))  # fmt: skip
    panels = (("attn_level", "attention level (marker→function)", "viridis", 0.0, None),
              ("dlogp_top1", "measured Δlog p(top-1), head knocked out", "RdBu", -lim, lim),
              ("attribution", "attribution (1 forward + 1 backward)", "RdBu", -lim, lim))  # fmt: skip
    for i, lang in enumerate(languages):
        sub = data[data["language"] == lang]
        for j, (col, title, cmap, vmin, vmax) in enumerate(panels):
            grid = sub.pivot(index="layer", columns="head", values=col)
            sns.heatmap(grid, ax=axes[i][j], cmap=cmap, vmin=vmin, vmax=vmax, center=None if
                        col == "attn_level" else 0.0, annot=grid.size <= 128, fmt=".2f",
                        annot_kws={"size": 6}, cbar=True)  # fmt: skip
            axes[i][j].set_title(f"{lang}: {title}", fontsize=8)
    fig.suptitle(f"{model}: per-head marker→function attention and knockout effect", fontsize=9)
    fig.tight_layout()
    return fig


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


@dataclass(frozen=True)
class HeadsAnalysis:
    """What :func:`analyze_heads` adds to a report: the section, ``stats.csv`` rows, figures."""

    section: str
    rows: list[dict[str, Any]]
    figures: list[Path]


def analyze_heads(
    tables: dict[str, pd.DataFrame], metas: Sequence[dict[str, Any]], out: Path, *,
    alpha: float, margin: float,
) -> HeadsAnalysis | None:  # fmt: skip
    """Write ``heads.parquet`` and the heatmaps into ``out`` and build the heads section;
    None when the run has no ``head_sweep``."""
    sweep = tables.get("head_sweep")
    if sweep is None or not len(sweep):
        return None
    from analysis.figures import save_figure

    summary = summarize(sweep, tables.get("noise_floor"))
    atomic_write_parquet(Path(out) / "heads.parquet", summary)
    validation = validate_attribution(sweep)
    held = held_out(tables, alpha=alpha, margin=margin)
    figures = [
        save_figure(heads_heatmap(summary, m), Path(out) / "figures" / f"heads_{_slug(m)}.png")
        for m in sorted(set(summary["model"]))
    ]
    costs = {
        str(meta["manifest"].get("model")): meta["manifest"]["heads_cost"]
        for meta in metas
        if "heads_cost" in meta.get("manifest", {})
    }
    section = heads_section(summary, validation, held, costs, figures, margin=margin)
    return HeadsAnalysis(section=section, rows=stats_rows(validation, held), figures=figures)
