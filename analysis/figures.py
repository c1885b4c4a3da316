"""Figures over run-directory tables: each function takes DataFrames and returns a Figure.

Matplotlib runs on the Agg backend (no display). ``save_all`` writes PNGs for the tables that
exist in a run directory into ``RUN_DIR/figures/`` (atomically: temp file, then rename).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from analysis.triangle import INTERPRETATIONS, TriangleOutcome

__all__ = [
    "dose_response",
    "kl_distributions",
    "layer_scan_curves",
    "outcome_matrix",
    "save_all",
    "save_figure",
]

log = logging.getLogger(__name__)
_PALETTE = {"python": "#3572A5", "rust": "#DEA584"}


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise ValueError(f"{what} needs columns {missing} (see docs/RECORDS.md)")
    if df.empty:
        raise ValueError(f"{what} got an empty table")


def layer_scan_curves(scan: pd.DataFrame) -> Figure:
    """Attention level from marker to function per layer, Python vs Rust, mean with 95% CI."""
    _require(scan, ["model", "language", "layer", "attn_level"], "layer_scan_curves")
    data = scan[scan["kind"] == "test"] if "kind" in scan else scan
    models = sorted(data["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        sns.lineplot(
            data=data[data["model"] == model], x="layer", y="attn_level", hue="language",
            palette=_PALETTE, errorbar=("ci", 95), marker="o", ax=ax,
        )  # fmt: skip
        ax.set(title=str(model), xlabel="layer", ylabel="attention level (marker → function)")
    fig.tight_layout()
    return fig


def kl_distributions(records: pd.DataFrame) -> Figure:
    """KL(P_baseline ‖ P_condition) per sample: knockout vs random_control, per language."""
    _require(records, ["condition", "language", "kl", "model"], "kl_distributions")
    conds = ["knockout", "random_control", "knockout_all_layers"]
    data = records[records["condition"].isin(conds)]
    if "kind" in data:
        data = data[data["kind"] == "test"]
    if data.empty:
        raise ValueError("kl_distributions needs knockout / random_control rows")
    order = [c for c in conds if c in set(data["condition"])]
    models = sorted(data["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        sub = data[data["model"] == model]
        sns.boxplot(data=sub, x="condition", y="kl", hue="language", order=order,
                    palette=_PALETTE, showfliers=False, ax=ax)  # fmt: skip
        sns.stripplot(data=sub, x="condition", y="kl", hue="language", order=order, dodge=True,
                      palette=_PALETTE, size=2.5, alpha=0.6, legend=False, ax=ax)  # fmt: skip
        ax.set(title=str(model), xlabel="", ylabel="KL(baseline ‖ condition) [nats]")
    fig.tight_layout()
    return fig


def dose_response(records: pd.DataFrame, generations: pd.DataFrame | None = None) -> Figure:
    """Achieved attention (and preservation, when generations exist) vs Scale factor."""
    _require(records, ["op", "factor", "attn_achieved", "language", "condition"], "dose_response")
    rec = records[records["op"].isin(["scale", "none"])].copy()
    if "kind" in rec:
        rec = rec[rec["kind"] == "test"]
    rec["factor"] = rec["factor"].where(rec["op"] == "scale", 1.0)
    if rec.empty:
        raise ValueError("dose_response needs scale or baseline rows")
    panels = 2 if generations is not None and not generations.empty else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False)
    ax = axes[0][0]
    sns.lineplot(data=rec, x="factor", y="attn_achieved", hue="language", palette=_PALETTE,
                 errorbar=("ci", 95), marker="o", ax=ax)  # fmt: skip
    sv = records[records["op"] == "set_value"]
    for lang, grp in sv.groupby("language"):
        ax.axhline(float(grp["attn_achieved"].mean()), ls="--", lw=1, color=_PALETTE.get(str(lang)),
                   label=f"{lang} set_value")  # fmt: skip
    ax.set(xscale="log", xlabel="Scale factor f", ylabel="achieved attention level",
           title="attention dose-response")  # fmt: skip
    _factor_ticks(ax, rec["factor"])
    ax.legend(fontsize=8)
    if panels == 2:
        assert generations is not None
        gen = generations[generations["op"].isin(["scale", "none"])].copy()
        gen["factor"] = gen["factor"].where(gen["op"] == "scale", 1.0)
        gen["preserved"] = gen["preserved"].astype(float)
        ax2 = axes[0][1]
        sns.pointplot(data=gen, x="factor", y="preserved", hue="language", palette=_PALETTE,
                      errorbar=("ci", 95), native_scale=True, ax=ax2)  # fmt: skip
        ax2.set(xscale="log", ylim=(-0.05, 1.05), xlabel="Scale factor f",
                ylabel="preservation rate", title="preservation dose-response")  # fmt: skip
        _factor_ticks(ax2, gen["factor"])
    fig.tight_layout()
    return fig


def _factor_ticks(ax: plt.Axes, factors: pd.Series) -> None:
    ticks = sorted(float(f) for f in factors.dropna().unique())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def outcome_matrix(outcomes: Sequence[TriangleOutcome]) -> Figure:
    """The seed's 2×2 outcome matrix with each (model, language) placed in its cell."""
    if not outcomes:
        raise ValueError("outcome_matrix needs at least one TriangleOutcome")
    counts = np.zeros((2, 2))
    labels: dict[tuple[int, int], list[str]] = {(i, j): [] for i in range(2) for j in range(2)}
    inconclusive = []
    for o in outcomes:
        tag = f"{o.model}/{o.language}"
        if o.knockout_effect is None or o.steering_effect is None:
            inconclusive.append(tag)
            continue
        cell = (0 if o.knockout_effect else 1, 0 if o.steering_effect else 1)
        counts[cell] += 1
        labels[cell].append(tag)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sns.heatmap(counts, cmap="Blues", vmin=0, vmax=2 * max(1.0, counts.max()), cbar=False,
                linewidths=1, linecolor="white", ax=ax)  # fmt: skip
    for (i, j), tags in labels.items():
        name = INTERPRETATIONS[(i == 0, j == 0)]
        ax.text(j + 0.5, i + 0.35, name, ha="center", va="center", fontsize=10, weight="bold")
        ax.text(j + 0.5, i + 0.62, "\n".join(tags) or "—", ha="center", va="center", fontsize=8)
    ax.set_xticklabels(["steering improves", "no improvement"])
    ax.set_yticklabels(["knockout effect", "no knockout effect"], rotation=90, va="center")
    alpha = outcomes[0].alpha
    title = f"causal triangle outcome matrix (α = {alpha})"
    if inconclusive:
        title += "\ninconclusive (low power): " + ", ".join(inconclusive)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_all(run_dir: Path, outcomes: Sequence[TriangleOutcome] | None = None) -> list[Path]:
    """Write every figure whose tables exist into ``run_dir/figures``; returns the paths."""
    run_dir = Path(run_dir)
    out = run_dir / "figures"
    tables = {
        name: pd.read_parquet(run_dir / f"{name}.parquet")
        for name in ("records", "layer_scan", "generations")
        if (run_dir / f"{name}.parquet").exists()
    }
    recs, gens = tables.get("records"), tables.get("generations")
    jobs = []
    if "layer_scan" in tables and not tables["layer_scan"].empty:
        jobs.append(("layer_scan", lambda: layer_scan_curves(tables["layer_scan"])))
    if recs is not None and recs["condition"].isin(["knockout", "random_control"]).any():
        jobs.append(("kl_knockout_vs_control", lambda: kl_distributions(recs)))
    if recs is not None and (recs["op"] == "scale").any():
        jobs.append(("dose_response", lambda: dose_response(recs, gens)))
    if outcomes:
        jobs.append(("outcome_matrix", lambda: outcome_matrix(outcomes)))
    written = []
    for name, make in jobs:
        written.append(save_figure(make(), out / f"{name}.png"))
        log.info("wrote %s", written[-1])
    return written
