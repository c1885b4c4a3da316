"""Every figure of ``analysis.figures``, rendered from a small synthetic run with a long model
name, keeps each title, axis label, tick label and legend text inside its canvas (nothing cut)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import make_run_dir

from analysis import figures
from analysis.triangle import classify_all

LONG = "plip-nn/embedded-tiny-qwen2-with-a-long-model-name"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run = make_run_dir(tmp_path_factory.mktemp("figs") / "run", n=12)
    t = {
        name: pd.read_parquet(run / f"{name}.parquet").assign(model=LONG)
        for name in ("records", "layer_scan", "generations", "noise_floor")
    }
    outcomes = classify_all(t["records"], t["generations"], t["noise_floor"])
    return {
        "layer_scan_curves": lambda: figures.layer_scan_curves(t["layer_scan"]),
        "scope_forest": lambda: figures.scope_forest(outcomes),
        "kl_by_scope": lambda: figures.kl_by_scope(t["records"], 0.0),
        "dose_response": lambda: figures.dose_response(t["records"], t["generations"]),
        "outcome_matrix": lambda: figures.outcome_matrix(outcomes),
        "kl_vs_mass": lambda: figures.kl_vs_mass(t["records"]),
    }


def _texts(fig) -> list:
    out = list(fig.texts)
    for ax in fig.axes:
        out += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        out += [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]  # drawn ones
        out += [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
        if ax.get_legend() is not None:
            out += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
    return [t for t in out if t.get_visible() and t.get_text()]


def test_every_public_figure_is_covered(made):
    public = {n for n in figures.__all__ if n not in ("save_all", "save_figure")}
    assert set(made) == public


@pytest.mark.parametrize(
    "name",
    ["layer_scan_curves", "scope_forest", "kl_by_scope", "dose_response", "outcome_matrix",
     "kl_vs_mass"],
)  # fmt: skip
def test_no_title_or_label_is_cut(made, name):
    import matplotlib.pyplot as plt

    fig = made[name]()
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        canvas = fig.bbox
        texts = _texts(fig)
        titles = [t for t in texts if t in fig.texts or any(t is ax.title for ax in fig.axes)]
        assert titles, f"{name}: no title to check"
        for t in texts:
            box = t.get_window_extent(renderer)
            inside = (box.x0 >= canvas.x0 - 0.5 and box.y0 >= canvas.y0 - 0.5
                      and box.x1 <= canvas.x1 + 0.5 and box.y1 <= canvas.y1 + 0.5)  # fmt: skip
            assert inside, f"{name}: {t.get_text()[:50]!r} at {box.bounds} outside {canvas.bounds}"
    finally:
        plt.close(fig)


def test_the_check_sees_a_cut_title():
    """The same check fails on a title wider than its canvas (as before _fit wrapped it)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title(LONG * 2)
    fig.canvas.draw()
    box = ax.title.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 < fig.bbox.x0 or box.x1 > fig.bbox.x1
    plt.close(fig)
    assert Path(figures.__file__).name == "figures.py"
