"""Enhance: dose-response of marker->function attention steering.

Conditions per test sample (both languages), in the default scope at the chosen layer:
``baseline``, Scale at each factor, and the calibrated Scale, twice it and SetValue (the
Python level from ``calibration.json`` of this run, measured first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from experiments import conditions
from experiments.calibrate import LayerChoice, resolve_layer
from experiments.conditions import Arm
from experiments.records import run_records
from experiments.study import CommonConfig, ConfigError, Study, open_study
from plip_nn.scope import BASELINE

__all__ = ["Config", "main", "run_steer"]


@dataclass(frozen=True, kw_only=True)
class Config(CommonConfig):
    """Steering config.

    Attributes:
        factors: Scale factors of the dose-response curve.
        calibrated: also run the calibrated Scale, twice it and SetValue at the Python level;
            --no-calibrated: Scale at --factors only, nothing calibrated.
    """

    factors: tuple[float, ...] = conditions.DOSE_FACTORS
    calibrated: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        facs = tuple(float(f) for f in self.factors)
        bad = [f for f in facs if not (math.isfinite(f) and f > 0)]
        if bad or not facs:
            raise ConfigError(f"--factors {self.factors!r}: use positive finite numbers")
        object.__setattr__(self, "factors", facs)
        if self.calibrated and set(self.languages) != {"python", "rust"}:
            raise ConfigError(
                "calibration lifts Rust to the Python level and needs both languages; "
                "pass --languages python rust or --no-calibrated"
            )


def run_steer(study: Study[Config], choice: LayerChoice) -> None:
    """Records of the dose-response conditions at each sample's chosen layer."""
    cfg = study.cfg
    samples = study.select("test")
    steering = conditions.steering_arms(
        cfg.factors, rows=cfg.rows, targets=cfg.targets, calibrated=bool(choice.calibration)
    )
    arms = [Arm(BASELINE), *steering]
    units = conditions.plan_units(
        samples, arms, layer_of=choice.layers_of([p.id for p in samples]),
        n_layers=study.handle.n_layers, calibration=choice.calibrations,
    )  # fmt: skip
    run_records(study, units, experiment="steer", desc="steer")


def main(cfg: Config) -> Path:
    """Run the dose-response experiment; return the run directory."""
    study = open_study(cfg, "steer", ("test",), cfg.to_dict())
    # The scan is part of the output even with --layer (the report's layer profile).
    choice = resolve_layer(study, ("test",), calibration=cfg.calibrated, always_scan=True)
    run_steer(study, choice)
    study.run.finish()
    return study.run.path
