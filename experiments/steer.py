"""Enhance: dose-response of marker->function attention steering.

Conditions per test sample (both languages): ``baseline``, ``scale_<f>`` for each factor and
``set_value_calibrated`` (the Python level from ``calibration.json`` of this run, measured first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from experiments import conditions
from experiments.calibrate import resolve_layer
from experiments.records import run_records
from experiments.study import CommonConfig, ConfigError, Study, open_study

__all__ = ["Config", "main", "run_steer"]


@dataclass(frozen=True, kw_only=True)
class Config(CommonConfig):
    """Steering config.

    Attributes:
        factors: Scale factors of the dose-response curve.
        set_value: also run SetValue at the calibrated (Python) level.
    """

    factors: tuple[float, ...] = conditions.DOSE_FACTORS
    set_value: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        facs = tuple(float(f) for f in self.factors)
        bad = [f for f in facs if not (math.isfinite(f) and f > 0)]
        if bad or not facs:
            raise ConfigError(f"--factors {self.factors!r}: use positive finite numbers")
        object.__setattr__(self, "factors", facs)
        if self.set_value and set(self.languages) != {"python", "rust"}:
            raise ConfigError(
                "SetValue calibration lifts Rust to the Python level and needs both languages; "
                "pass --languages python rust or --no-set-value"
            )


def run_steer(study: Study, cfg: Config, layer: int, set_value: float | None) -> None:
    """Records of the dose-response conditions at ``layer``; SetValue too when ``set_value``."""
    names = ["baseline", *(conditions.scale_name(f) for f in cfg.factors)]
    if set_value is not None:
        names.append("set_value_calibrated")
    units = conditions.plan_units(
        study.select("test"),
        names,
        layer=layer,
        n_layers=study.handle.n_layers,
        set_value=set_value,
        seed=cfg.seed,
    )
    run_records(study, units, experiment="steer", desc="steer")


def main(cfg: Config) -> Path:
    """Run the dose-response experiment; return the run directory."""
    study = open_study(cfg, "steer", ("test",), cfg.to_dict())
    # The scan is part of the output even with --layer (the report's layer profile).
    choice = resolve_layer(study, ("test",), calibration=cfg.set_value, always_scan=True)
    run_steer(study, cfg, choice.layer, choice.set_value)
    study.run.finish()
    return study.run.path
