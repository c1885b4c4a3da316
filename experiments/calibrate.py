"""Choose the layer and calibrate steering there: the step every editing experiment begins with.

:func:`resolve_layer` scans, takes ``--layer`` or the scan's peak, calibrates at that layer
(``calibration.json``) and records the layer in the manifest; calibrate, steer, generate,
triangle and knockout (unless ``--layer all``) all start with it. :func:`calibrate` is how much to lift Rust
marker->function attention to the Python level, from the scan at one layer:

* ``set_value``: the mean Python attention level (per target edge, head-mean). ``SetValue``
  gives every Rust target edge exactly this weight, so the Rust level equals the Python level.
* ``scale_factor``: the median over Rust samples of the factor ``f`` that maps the sample's
  head-mean target mass ``m`` to the mass it would have at the Python level, ``M = L_py * |T|``,
  by inverting the Scale formula (:meth:`plip_nn.edits.Scale.factor_for`). Scale acts per
  head, so on the head-mean this is an approximation (stated in the file).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.scan import choose_layer, run_scan
from experiments.study import CommonConfig, ConfigError, Study, open_study
from plip_nn.edits import Scale

__all__ = ["Config", "LayerChoice", "calibrate", "main", "resolve_layer"]


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


@dataclass(frozen=True)
class LayerChoice:
    """The layer an experiment edits and what was measured to choose it.

    Attributes:
        layer: the edited / read layer.
        chosen_by: ``"flag"`` (``--layer``) or ``"scan peak"`` (:func:`choose_layer`).
        scan: the ``layer_scan`` table; None when nothing needed a scan.
        calibration: the content of ``calibration.json``; None when not calibrated.
    """

    layer: int
    chosen_by: str
    scan: pd.DataFrame | None
    calibration: dict[str, Any] | None

    @property
    def set_value(self) -> float | None:
        """The calibrated SetValue level (the Python level), or None when not calibrated."""
        return None if self.calibration is None else float(self.calibration["set_value"])


def resolve_layer(
    study: Study,
    kinds: Sequence[str],
    *,
    calibration: bool,
    always_scan: bool = False,
    note_choice: bool = False,
) -> LayerChoice:
    """Scan, choose the layer, calibrate at it, record it: one step, written once.

    1. Scan ``kinds`` at every layer (``layer_scan.parquet``) when there is no ``--layer`` to
       take, when calibrating, or with ``always_scan``.
    2. The layer is ``--layer``, else the scan's peak (:func:`choose_layer`).
    3. With ``calibration``: :func:`calibrate` at that layer, written to ``calibration.json``.
    4. The manifest records ``layer`` (and, with ``note_choice``, ``layer_choice``: how).

    Args:
        study: the open study (``study.cfg.layer`` is ``--layer``).
        kinds: corpus kinds to scan.
        calibration: calibrate SetValue / Scale at the layer.
        always_scan: scan even when ``--layer`` is given and nothing is calibrated.
        note_choice: also record ``layer_choice`` (``flag`` / ``scan peak``) in the manifest.
    """
    flag = study.cfg.layer
    scan = None
    if always_scan or calibration or flag is None:
        scan = run_scan(study, tuple(kinds))
    if flag is not None:
        layer, chosen_by = flag, "flag"
    else:
        assert scan is not None
        layer, chosen_by = choose_layer(scan), "scan peak"
    cal = None
    if calibration:
        assert scan is not None
        cal = calibrate(scan, layer)
        study.run.write_json("calibration.json", cal)
    fields: dict[str, Any] = {"layer": layer}
    if note_choice:
        fields["layer_choice"] = chosen_by
    study.run.update_manifest(**fields)
    return LayerChoice(layer=layer, chosen_by=chosen_by, scan=scan, calibration=cal)


def main(cfg: Config) -> Path:
    """Write ``calibration.json`` for the model and return the run directory."""
    study = open_study(cfg, "calibrate", ("test",), cfg.to_dict())
    resolve_layer(study, ("test",), calibration=True)
    study.run.finish()
    return study.run.path
