"""Figures over run-directory tables: each function takes DataFrames (or outcomes) and returns a
Figure.

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

from analysis.dose import dose_rates
from analysis.scopes import scope_order, with_scope
from analysis.triangle import UNREACHED, TriangleOutcome
from plip_nn.atomic import atomic_write

__all__ = [
    "dose_response",
    "kl_by_scope",
    "kl_vs_mass",
    "layer_scan_curves",
    "outcome_matrix",
    "save_all",
    "save_figure",
    "scope_forest",
]

log = logging.getLogger(__name__)
_PALETTE = {"python": "#3572A5", "rust": "#DEA584"}


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise ValueError(f"{what} needs columns {missing} (see docs/RECORDS.md)")
    if df.empty:
        raise ValueError(f"{what} got an empty table")


def _fit(fig: Figure) -> Figure:
    """Lay ``fig`` out so that no title or axis label is cut: each wraps at the canvas edge
    (a long model name in a title) and ``tight_layout`` then makes room for it."""
    for ax in fig.axes:
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            text.set_wrap(True)
    fig.tight_layout()
    return fig


def layer_scan_curves(scan: pd.DataFrame) -> Figure:
    """Attention level from marker to function per layer, Python vs Rust, mean with 95% CI, one
    panel per (model, scope)."""
    _require(scan, ["model", "language", "layer", "attn_level"], "layer_scan_curves")
    data = scan[scan["kind"] == "test"] if "kind" in scan else scan
    if "rows" in data:
        data = data.assign(scope=data["rows"] + " → " + data["targets"])
    else:
        data = data.assign(scope="marker → targets")
    panels = sorted({(str(m), str(s)) for m, s in zip(data["model"], data["scope"], strict=True)})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (model, scope) in zip(axes[0], panels, strict=True):
        sub = data[(data["model"] == model) & (data["scope"] == scope)]
        sns.lineplot(data=sub, x="layer", y="attn_level", hue="language", palette=_PALETTE,
                     errorbar=("ci", 95), marker="o", ax=ax)  # fmt: skip
        ax.set(title=f"{model}\n{scope}", xlabel="layer", ylabel="attention level per target")
        ax.title.set_fontsize(8)
    return _fit(fig)


def scope_forest(outcomes: Sequence[TriangleOutcome]) -> Figure:
    """Knockout − control change in preservation per scope and language: 95% CI (thin) and 90%
    CI (thick) of the first draw, the other draws as dots, and the ±margin band."""
    rows = []
    for o in outcomes:
        for k in o.knockouts:
            for d in k.draws:
                if d.diff is not None:
                    rows.append((o.model, o.language, k.scope, d.draw, d.diff, k.effect, o.margin))
    if not rows:
        raise ValueError("scope_forest needs knockout vs control generations")
    models = sorted({r[0] for r in rows})
    scopes = scope_order(sorted({r[2] for r in rows}))
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 0.55 * len(scopes) + 1.6),
                             squeeze=False)  # fmt: skip
    for ax, model in zip(axes[0], models, strict=True):
        margin = next(r[6] for r in rows if r[0] == model)
        ax.axvspan(-100 * margin, 100 * margin, color="0.9", zorder=0)
        ax.axvline(0, color="0.5", lw=0.8)
        for j, lang in enumerate(("python", "rust")):
            for i, scope in enumerate(scopes):
                y = i + (j - 0.5) * 0.3
                for r in rows:
                    if r[0] != model or r[1] != lang or r[2] != scope:
                        continue
                    diff = r[4]
                    if r[3] == 0:
                        ax.plot([100 * v for v in diff.ci95], [y, y], color=_PALETTE[lang], lw=1)
                        ax.plot([100 * v for v in diff.ci90], [y, y], color=_PALETTE[lang], lw=3.5)
                        marker = "x" if r[5] == "unreached" else "o"
                        ax.plot(100 * diff.effect, y, marker, color="k", ms=4)
                    else:
                        ax.plot(100 * diff.effect, y, ".", color=_PALETTE[lang], ms=5, alpha=0.7)
        ax.set_yticks(range(len(scopes)), scopes, fontsize=8)
        ax.invert_yaxis()
        ax.set(
            xlabel="preservation, knockout − mass-matched control [pp]",
            title=f"{model}: knockout by scope (grey: ±margin; × does not reach the output)",
        )
        ax.title.set_fontsize(9)
        handles = [plt.Line2D([], [], color=c, lw=3, label=lang) for lang, c in _PALETTE.items()]
        ax.legend(handles=handles, fontsize=8, loc="lower right")
    return _fit(fig)


def kl_by_scope(records: pd.DataFrame, floor: float | None = None) -> Figure:
    """KL at the prediction per scope: knockout vs its first control draw, per language, with
    the KL noise floor."""
    _require(records, ["condition", "language", "kl", "model"], "kl_by_scope")
    data = with_scope(records)
    data = data[data["arm"].isin(["knockout", "random_control"]) & (data["draw"] <= 0)]
    if "kind" in data:
        gen = data[data["kind"] == "generation"]
        data = gen if len(gen) else data[data["kind"] == "test"]
    if data.empty:
        raise ValueError("kl_by_scope needs knockout / random_control rows")
    data = data.assign(
        what=data["language"] + " " + data["arm"].str.replace("random_control", "control"),
        kl_plot=data["kl"].clip(lower=1e-12),
    )
    scopes = scope_order(sorted(set(data["scope"])))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(scopes) + 1.8))
    sns.boxplot(data=data, y="scope", x="kl_plot", hue="what", order=scopes, showfliers=False,
                orient="h", ax=ax)  # fmt: skip
    if floor is not None and np.isfinite(floor):
        ax.axvline(max(floor, 1e-12), color="r", ls="--", lw=1, label="KL noise floor")
    ax.set(xscale="log", xlabel="KL(baseline ‖ condition) at the prediction [nats]", ylabel="",
           title="KL at the prediction by scope: knockout vs its control")  # fmt: skip
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return _fit(fig)


def dose_response(records: pd.DataFrame | None, generations: pd.DataFrame | None) -> Figure:
    """Preservation (Wilson 95% CI) and achieved attention against the Scale dose, per
    language, with SetValue and the calibrated doses marked."""
    panels = [p for p in ("gen", "rec") if (generations if p == "gen" else records) is not None]
    if not panels:
        raise ValueError("dose_response needs generations or records")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "gen":
            assert generations is not None
            g = with_scope(generations)
            for lang, grp in g.groupby("language"):
                rates = dose_rates(grp)
                if not rates:
                    continue
                x = [r.dose for r in rates]
                y = [r.rate for r in rates]
                err = np.clip(
                    [[r.rate - r.ci[0] for r in rates], [r.ci[1] - r.rate for r in rates]], 0, None
                )  # rounding can put a Wilson bound a hair past the rate
                ax.errorbar(x, y, yerr=err, fmt="o-", color=_PALETTE.get(str(lang)), capsize=3,
                            label=str(lang))  # fmt: skip
                for r in rates:
                    if r.arm.startswith("scale_calibrated"):
                        ax.annotate("cal" if r.arm == "scale_calibrated" else "2×cal",
                                    (r.dose, r.rate), fontsize=7, xytext=(3, 3),
                                    textcoords="offset points")  # fmt: skip
                sv = grp[grp["arm"] == "set_value_calibrated"]
                if len(sv):
                    ax.axhline(float(sv["preserved"].astype(float).mean()), ls=":", lw=1,
                               color=_PALETTE.get(str(lang)), label=f"{lang} SetValue")  # fmt: skip
            ax.set(xscale="log", ylim=(-0.05, 1.05), xlabel="Scale dose (baseline = 1)",
                   ylabel="preservation rate", title="H2: preservation dose-response")  # fmt: skip
        else:
            assert records is not None
            r = with_scope(records)
            r = r[(r["arm"] == "baseline") | (r["op"] == "scale")]
            if "kind" in r:
                gen = r[r["kind"] == "generation"]
                r = gen if len(gen) else r[r["kind"] == "test"]
            r = r.assign(dose=np.where(r["arm"] == "baseline", 1.0, r["factor"]))
            sns.lineplot(data=r, x="dose", y="attn_achieved", hue="language", palette=_PALETTE,
                         errorbar=("ci", 95), marker="o", ax=ax)  # fmt: skip
            ax.set(xscale="log", xlabel="Scale dose (baseline = 1)",
                   ylabel="achieved attention level", title="attention dose-response")  # fmt: skip
        ax.legend(fontsize=7)
    return _fit(fig)


_CELL_COLOURS = {
    "causal and malleable": "#1b7837",
    "causal one-way": "#7fbf7b",
    "confounded": "#d9f0d3",
    "epiphenomenal": "#e7d4e8",
    "inconclusive": "#f0f0f0",
    UNREACHED: "#bdbdbd",
}


def outcome_matrix(outcomes: Sequence[TriangleOutcome]) -> Figure:
    """The outcome matrix: one row per scope, one column per (model, language)."""
    if not outcomes:
        raise ValueError("outcome_matrix needs at least one TriangleOutcome")
    scopes = scope_order(sorted({s for o in outcomes for s in o.cells}))
    cols = [f"{o.model}\n{o.language}" for o in outcomes]
    fig, ax = plt.subplots(figsize=(2.6 * len(cols) + 3, 0.5 * len(scopes) + 1.5))
    for j, o in enumerate(outcomes):
        for i, scope in enumerate(scopes):
            cell = o.cells.get(scope, "not run")
            colour = _CELL_COLOURS.get(cell, "#fddbc7" if cell.startswith("opposite") else "white")
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color=colour, ec="white"))
            ax.text(j + 0.5, i + 0.5, cell, ha="center", va="center", fontsize=7, wrap=True)
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(scopes), 0)
    ax.set_xticks(np.arange(len(cols)) + 0.5, cols, fontsize=8)
    ax.set_yticks(np.arange(len(scopes)) + 0.5, scopes, fontsize=8)
    ax.set_title(
        f"outcome matrix by scope (α = {outcomes[0].alpha}, margin ±"
        f"{100 * outcomes[0].margin:.0f} pp; steering in the default scope)",
        fontsize=9,
    )
    return _fit(fig)


def kl_vs_mass(records: pd.DataFrame) -> Figure:
    """KL at the prediction against the attention mass removed, knockout vs control, in the
    scopes at the chosen layer."""
    _require(records, ["condition", "kl", "mass_removed", "model", "language"], "kl_vs_mass")
    data = with_scope(records)
    data = data[data["arm"].isin(["knockout", "random_control"]) & (data["layers"] == "L")]
    if "kind" in data:
        data = data[data["kind"] == "generation"] if (data["kind"] == "generation").any() else data
    data = data.dropna(subset=["mass_removed", "kl"])
    if data.empty:
        raise ValueError("kl_vs_mass needs knockout / random_control rows with mass_removed")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sns.scatterplot(data=data, x="mass_removed", y="kl", hue="arm", style="language", alpha=0.6,
                    s=16, ax=ax)  # fmt: skip
    ax.set(
        yscale="symlog",
        xlabel="attention mass removed (head-mean, mean over rows)",
        ylabel="KL at the prediction [nats]",
        title="knockout vs control at the chosen layer",
    )
    return _fit(fig)


def save_figure(fig: Figure, path: Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically (:func:`plip_nn.atomic.atomic_write`) and close it."""
    try:
        return atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def save_all(
    out_dir: Path,
    tables: dict[str, pd.DataFrame],
    outcomes: Sequence[TriangleOutcome] | None = None,
    floor: float | None = None,
) -> list[Path]:
    """Write every figure whose tables exist into ``out_dir/figures``; returns the paths."""
    out = Path(out_dir) / "figures"
    recs, gens = tables.get("records"), tables.get("generations")
    jobs = []
    if "layer_scan" in tables and not tables["layer_scan"].empty:
        jobs.append(("layer_scan", lambda: layer_scan_curves(tables["layer_scan"])))
    if outcomes and any(d.diff is not None for o in outcomes for k in o.knockouts for d in k.draws):
        jobs.append(("knockout_by_scope", lambda: scope_forest(outcomes)))
    if recs is not None and recs["condition"].astype(str).str.startswith("knockout@").any():
        jobs.append(("kl_by_scope", lambda: kl_by_scope(recs, floor)))
        if "mass_removed" in recs and recs["mass_removed"].notna().any():
            jobs.append(("kl_vs_removed_mass", lambda: kl_vs_mass(recs)))
    has_scale = any(
        t is not None and "op" in t and (t["op"] == "scale").any() for t in (recs, gens)
    )
    if has_scale:
        jobs.append(("dose_response", lambda: dose_response(recs, gens)))
    if outcomes:
        jobs.append(("outcome_matrix", lambda: outcome_matrix(outcomes)))
    written = []
    for name, make in jobs:
        try:
            fig = make()
        except ValueError as exc:  # a table without what this figure needs
            log.info("figure %s skipped: %s", name, exc)
            continue
        written.append(save_figure(fig, out / f"{name}.png"))
        log.info("wrote %s", written[-1])
    return written
