"""Calibrate steering: how much to lift Rust marker->function attention to the Python level.

Reads the scan at one layer and writes ``calibration.json``:

* ``set_value``: the mean Python attention level (per target edge, head-mean). ``SetValue``
  gives every Rust target edge exactly this weight, so the Rust level equals the Python level.
* ``scale_factor``: the median over Rust samples of the factor ``f`` that maps the sample's
  head-mean target mass ``m`` to the mass it would have at the Python level, ``M = L_py * |T|``,
  by inverting the Scale formula (:meth:`plip_nn.edits.Scale.factor_for`). Scale acts per
  head, so on the head-mean this is an approximation (stated in the file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.scan import choose_layer, run_scan
from experiments.study import CommonConfig, ConfigError, Study, open_study
from plip_nn.edits import Scale

__all__ = ["Config", "calibrate", "main", "run_calibration"]


@dataclass(frozen=True, kw_only=True)
class Config(CommonConfig):
    """Calibration config: the common flags (``--layer`` defaults to the scan's peak)."""


def calibrate(scan: pd.DataFrame, layer: int) -> dict[str, Any]:
    """Calibration at ``layer`` from ``layer_scan`` rows of test samples (pure function)."""
    at = scan[(scan["layer"] == layer) & (scan["kind"] == "test")]
    py = at[at["language"] == "python"]
    rs = at[at["language"] == "rust"]
    if py.empty or rs.empty:
        raise ConfigError(
            f"calibration at layer {layer} needs Python and Rust test samples "
            f"(found {len(py)} Python, {len(rs)} Rust); include both languages"
        )
    level_py = float(py["attn_level"].mean())
    level_rs = float(rs["attn_level"].mean())
    factors = []
    infeasible = []
    for row in rs.itertuples():
        target_mass = level_py * row.n_targets
        m = float(row.attn_mass)
        if target_mass >= 1.0:
            infeasible.append(row.sample_id)
            continue
        if not 0.0 < m < 1.0:  # nothing to scale, or nothing left outside the targets
            continue
        factors.append(Scale.factor_for(m, target_mass))
    factor = float(pd.Series(factors).median()) if factors else math.nan
    return {
        "layer": int(layer),
        "python_level": level_py,
        "rust_level": level_rs,
        "python_mass": float(py["attn_mass"].mean()),
        "rust_mass": float(rs["attn_mass"].mean()),
        "n_python": len(py),
        "n_rust": len(rs),
        "set_value": level_py,
        "scale_factor": factor,
        "set_value_infeasible": sorted(infeasible),
        "note": "set_value = mean Python level (per edge, head-mean); scale_factor = median over "
        "Rust samples of f solving f*m/(1-m+f*m) = python_level*|T| on head-mean mass "
        "(Scale acts per head, so this is approximate on the head-mean)",
    }


def run_calibration(study: Study, layer: int | None) -> dict[str, Any]:
    """Scan (or reuse the run's scan), pick the layer if needed, write calibration.json."""
    scan = run_scan(study, ("test",))
    layer = choose_layer(scan) if layer is None else layer
    cal = calibrate(scan, layer)
    study.run.write_json("calibration.json", cal)
    return cal


def main(cfg: Config) -> Path:
    """Write ``calibration.json`` for the model and return the run directory."""
    study = open_study(cfg, "calibrate", ("test",), cfg.to_dict())
    cal = run_calibration(study, cfg.layer)
    study.run.update_manifest(layer=cal["layer"])
    study.run.finish()
    return study.run.path
