"""Figures over run-directory tables: each function takes DataFrames and returns a Figure.

Matplotlib runs on the Agg backend (no display). ``save_all`` writes PNGs for the tables that
exist into ``OUT/figures/`` (atomically: temp file, then rename).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from analysis.triangle import TriangleOutcome, interpret
from plip_nn.atomic import atomic_write

__all__ = [
    "dose_response",
    "kl_distributions",
    "kl_vs_mass",
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
    """The outcome matrix (seed's 2×2 plus opposite directions), each (model, language) placed.

    Rows: knockout effect, columns: steering effect (predicted / none / opposite); outcomes
    with an inconclusive side that is not opposite are listed in the title.
    """
    if not outcomes:
        raise ValueError("outcome_matrix needs at least one TriangleOutcome")
    states = ("predicted", "none", "opposite")
    counts = np.zeros((3, 3))
    labels: dict[tuple[int, int], list[str]] = {(i, j): [] for i in range(3) for j in range(3)}
    inconclusive = []
    for o in outcomes:
        tag = f"{o.model}/{o.language}"
        if o.knockout_effect not in states or o.steering_effect not in states:
            inconclusive.append(f"{tag} ({o.interpretation})")
            continue
        cell = (states.index(o.knockout_effect), states.index(o.steering_effect))
        counts[cell] += 1
        labels[cell].append(tag)
    fig, ax = plt.subplots(figsize=(9, 6))
    sns.heatmap(counts, cmap="Blues", vmin=0, vmax=2 * max(1.0, counts.max()), cbar=False,
                linewidths=1, linecolor="white", ax=ax)  # fmt: skip
    for (i, j), tags in labels.items():
        name = interpret(states[i], states[j])
        ax.text(j + 0.5, i + 0.3, name, ha="center", va="center", fontsize=8, weight="bold",
                wrap=True)  # fmt: skip
        ax.text(j + 0.5, i + 0.62, "\n".join(tags) or "—", ha="center", va="center", fontsize=7)
    ax.set_xticklabels(["steering improves", "no change (powered)", "steering harms"])
    ax.set_yticklabels(
        ["knockout effect", "no effect (powered)", "knockout helps"], rotation=90, va="center"
    )
    alpha = outcomes[0].alpha
    title = f"causal triangle outcome matrix (α = {alpha})"
    if inconclusive:
        title += "\nnot placed: " + ", ".join(inconclusive)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically (:func:`plip_nn.atomic.atomic_write`) and close it."""
    try:
        return atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def kl_vs_mass(records: pd.DataFrame) -> Figure:
    """KL(P_baseline ‖ P_condition) against the attention mass removed, knockout vs control."""
    _require(records, ["condition", "kl", "mass_removed", "model", "language"], "kl_vs_mass")
    data = records[records["condition"].isin(["knockout", "random_control"])]
    if "kind" in data:
        data = data[data["kind"] == "test"]
    data = data.dropna(subset=["mass_removed", "kl"])
    if data.empty:
        raise ValueError("kl_vs_mass needs knockout / random_control rows with mass_removed")
    models = sorted(data["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        sns.scatterplot(data=data[data["model"] == model], x="mass_removed", y="kl",
                        hue="condition", style="language", alpha=0.7, s=18, ax=ax)  # fmt: skip
        ax.set(title=str(model), xlabel="attention mass removed from the marker row (head-mean)",
               ylabel="KL(baseline ‖ condition) [nats]")  # fmt: skip
    fig.tight_layout()
    return fig


def save_all(
    out_dir: Path,
    tables: dict[str, pd.DataFrame],
    outcomes: Sequence[TriangleOutcome] | None = None,
) -> list[Path]:
    """Write every figure whose tables exist into ``out_dir/figures``; returns the paths.

    ``tables``: run-directory tables by name (``records``, ``layer_scan``, ``generations``).
    """
    out = Path(out_dir) / "figures"
    recs, gens = tables.get("records"), tables.get("generations")
    jobs = []
    if "layer_scan" in tables and not tables["layer_scan"].empty:
        jobs.append(("layer_scan", lambda: layer_scan_curves(tables["layer_scan"])))
    if recs is not None and recs["condition"].isin(["knockout", "random_control"]).any():
        jobs.append(("kl_knockout_vs_control", lambda: kl_distributions(recs)))
        if "mass_removed" in recs and recs["mass_removed"].notna().any():
            jobs.append(("kl_vs_removed_mass", lambda: kl_vs_mass(recs)))
    if recs is not None and (recs["op"] == "scale").any():
        jobs.append(("dose_response", lambda: dose_response(recs, gens)))
    if outcomes:
        jobs.append(("outcome_matrix", lambda: outcome_matrix(outcomes)))
    written = []
    for name, make in jobs:
        written.append(save_figure(make(), out / f"{name}.png"))
        log.info("wrote %s", written[-1])
    return written
