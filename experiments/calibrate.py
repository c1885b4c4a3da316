"""Choose the layer and calibrate steering there: the step every editing experiment begins with.

:func:`resolve_layer` scans, takes ``--layer`` or the scan's peak, calibrates at that layer
(``calibration.json``) and records the layer in the manifest; calibrate, steer, generate,
triangle and knockout (unless ``--layer all``) all start with it.

**Held-out choice (cross-fitting).** Without ``--layer``, the samples are split into two seeded
halves by function (:func:`plip_nn.scope.function_half`); each half is edited at the peak
layer of the *other* half's scan, so no sample is edited at a layer chosen on itself. When the
halves agree (the usual case) every sample has the same layer.

:func:`calibrate` is how much to lift Rust marker->function attention to the Python level, in
the default scope, from the scan at one layer:

* ``set_value``: the mean Python attention level (per target edge, head-mean). ``SetValue``
  gives every Rust target edge exactly this weight, so the Rust level equals the Python level.
* ``scale_factor``: the median over Rust samples of the factor ``f`` that maps the sample's
  head-mean target mass ``m`` to the mass it would have at the Python level, ``M = L_py * |T|``,
  by inverting the Scale formula (:meth:`plip_nn.edits.Scale.factor_for`). Scale acts per
  head and per row, so on the head- and row-mean this is an approximation (stated in the file).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.conditions import Calibration
from experiments.scan import choose_layer, run_scan
from experiments.study import CommonConfig, ConfigError, Study, open_study
from plip_nn.edits import Scale
from plip_nn.scope import function_half

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Config", "LayerChoice", "calibrate", "main", "needs_scan", "resolve_layer"]


@dataclass(frozen=True, kw_only=True)
class Config(CommonConfig):
    """Calibration config: the common flags (``--layer`` defaults to the scan's peak)."""


def calibrate(
    scan: pd.DataFrame, layer: int, rows: str | None = None, targets: str | None = None
) -> dict[str, Any]:
    """Calibration at ``layer`` from ``layer_scan`` rows of test samples (pure function), in
    the scope ``rows``/``targets`` (default: the scan's first scope)."""
    import pandas as pd

    at = scan[(scan["layer"] == layer) & (scan["kind"] == "test")]
    if "rows" in at and len(at):
        rows = rows if rows is not None else str(at["rows"].iloc[0])
        targets = targets if targets is not None else str(at["targets"].iloc[0])
        at = at[(at["rows"] == rows) & (at["targets"] == targets)]
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
        "rows": rows,
        "targets": targets,
        "python_level": level_py,
        "rust_level": level_rs,
        "python_mass": float(py["attn_mass"].mean()),
        "rust_mass": float(rs["attn_mass"].mean()),
        "n_python": len(py),
        "n_rust": len(rs),
        "set_value": level_py,
        "scale_factor": factor,
        "set_value_infeasible": sorted(infeasible),
        "note": "set_value = mean Python level (per edge, head-mean, row-mean); scale_factor = "
        "median over Rust samples of f solving f*m/(1-m+f*m) = python_level*|T| on head- and "
        "row-mean mass (Scale acts per head and row, so this is approximate on the mean)",
    }


@dataclass(frozen=True)
class LayerChoice:
    """The layer each sample is edited at and what was measured to choose it.

    Attributes:
        layer: the layer of the first half (the layer of every sample when the halves agree,
            or with ``--layer``); the report's "chosen layer".
        chosen_by: ``"flag"`` (``--layer``) or ``"cross-fitted scan peak"``.
        by_half: half (0/1) -> the layer its samples are edited at (chosen on the other half).
        seed: the seed of the split.
        scan: the ``layer_scan`` table; None when nothing needed a scan.
        calibration: layer -> the content of ``calibration.json`` at that layer; empty when
            not calibrated.
    """

    layer: int
    chosen_by: str
    by_half: dict[int, int]
    seed: int
    scan: pd.DataFrame | None
    calibration: dict[int, dict[str, Any]] = field(default_factory=dict)

    def layer_of(self, sample_id: str) -> int:
        """The layer sample ``sample_id`` is edited at."""
        return self.by_half[function_half(sample_id, self.seed)]

    def layers_of(self, sample_ids: Sequence[str]) -> dict[str, int]:
        return {s: self.layer_of(s) for s in sample_ids}

    @property
    def calibrations(self) -> dict[int, Calibration]:
        """layer -> the calibrated steering (for :func:`experiments.conditions.plan_units`)."""
        return {
            lay: Calibration(set_value=float(c["set_value"]), scale_factor=float(c["scale_factor"]))
            for lay, c in self.calibration.items()
        }

    @property
    def set_value(self) -> float | None:
        """The calibrated SetValue level at :attr:`layer`, or None when not calibrated."""
        cal = self.calibration.get(self.layer)
        return None if cal is None else float(cal["set_value"])


def needs_scan(layer: int | None, *, calibration: bool, always_scan: bool = False) -> bool:
    """Whether :func:`resolve_layer` scans: no ``--layer`` to take, calibrating, or asked to.

    An experiment that opens its study without the scanned kinds otherwise asks this first.
    """
    return always_scan or calibration or layer is None


def resolve_layer(
    study: Study,
    kinds: Sequence[str],
    *,
    calibration: bool,
    always_scan: bool = False,
    note_choice: bool = False,
) -> LayerChoice:
    """Scan, choose the layer (cross-fitted), calibrate at it, record it: one step, written once.

    1. Scan ``kinds`` at every layer (``layer_scan.parquet``) when :func:`needs_scan`: there
       is no ``--layer`` to take, when calibrating, or with ``always_scan``.
    2. The layer is ``--layer`` for every sample, else each half's layer is the peak
       (:func:`choose_layer`) of the other half's test samples (module docstring).
    3. With ``calibration``: :func:`calibrate` at each layer in use, written to
       ``calibration.json`` (the first half's layer at the top level, every layer under
       ``by_layer``).
    4. The manifest records ``layer``, ``layer_by_half`` (and, with ``note_choice``,
       ``layer_choice``: how).

    Args:
        study: the open study (``study.cfg.layer`` is ``--layer``).
        kinds: corpus kinds to scan.
        calibration: calibrate SetValue / Scale at the layer.
        always_scan: scan even when ``--layer`` is given and nothing is calibrated.
        note_choice: also record ``layer_choice`` in the manifest.
    """
    cfg = study.cfg
    flag = cfg.layer
    scan = None
    if needs_scan(flag, calibration=calibration, always_scan=always_scan):
        scan = run_scan(study, tuple(kinds))
    if flag is not None:
        by_half, chosen_by = {0: flag, 1: flag}, "flag"
    else:
        assert scan is not None
        ids = sorted(set(scan["sample_id"]))
        halves = {h: [s for s in ids if function_half(s, cfg.seed) == h] for h in (0, 1)}
        by_half = {}
        for h in (0, 1):
            other = halves[1 - h]
            try:
                by_half[h] = choose_layer(scan, cfg.rows, cfg.targets, other)
            except ConfigError:  # a half without test samples: fall back to every sample
                by_half[h] = choose_layer(scan, cfg.rows, cfg.targets)
        chosen_by = "cross-fitted scan peak"
    cals: dict[int, dict[str, Any]] = {}
    if calibration:
        assert scan is not None
        for lay in sorted(set(by_half.values())):
            cals[lay] = calibrate(scan, lay, cfg.rows, cfg.targets)
        top = dict(cals[by_half[0]])
        top["by_layer"] = {str(k): v for k, v in cals.items()}
        top["layer_by_half"] = {str(k): v for k, v in by_half.items()}
        study.run.write_json("calibration.json", top)
    fields: dict[str, Any] = {
        "layer": by_half[0],
        "layer_by_half": {str(k): v for k, v in by_half.items()},
    }
    if note_choice:
        fields["layer_choice"] = chosen_by
    study.run.update_manifest(**fields)
    return LayerChoice(
        layer=by_half[0], chosen_by=chosen_by, by_half=by_half, seed=cfg.seed, scan=scan,
        calibration=cals,
    )  # fmt: skip


def main(cfg: Config) -> Path:
    """Write ``calibration.json`` for the model and return the run directory."""
    study = open_study(cfg, "calibrate", ("test",), cfg.to_dict())
    resolve_layer(study, ("test",), calibration=True)
    study.run.finish()
    return study.run.path
