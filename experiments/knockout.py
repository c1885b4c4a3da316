"""Remove: knock out marker->function attention and compare with random-edge controls.

Conditions per sample, in the default scope (``--rows``, ``--targets``): ``baseline``, the
knockout at the chosen layer, at all layers and in each window of the sweep (``--window``
layers wide), each with ``--draws`` mass-matched random controls in the same rows and layers
(``experiments.control``, ``control_match.parquet``). ``--layer all`` instead knocks out the
target edges at every layer separately (one single-layer window per layer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from experiments import conditions
from experiments.calibrate import resolve_layer
from experiments.conditions import Arm
from experiments.control import match_controls
from experiments.records import run_records
from experiments.study import CommonConfig, ConfigError, Study, layer_index, open_study
from plip_nn.scope import BASELINE, Scope, window_label

__all__ = ["Config", "layer_or_all", "main", "run_knockout"]

EVERY_LAYER = "all"


def layer_or_all(value: str) -> int | str:
    """``--layer``: a layer index, or ``all`` (a knockout at every layer separately)."""
    return EVERY_LAYER if value == EVERY_LAYER else layer_index(value)


@dataclass(frozen=True, kw_only=True)
class Config(CommonConfig):
    """Knockout config.

    Attributes:
        layer: edited layer, or ``all``: a knockout at every layer separately (the same as
            --every-layer); ``None``: the layer where Python marker->function attention peaks
            in a scan.
        every_layer: knock out at each layer separately (--layer all).
        window: width of the windows of the layer sweep (0: no sweep).
        draws: seeded draws of the mass-matched random control per scope.
        kinds: corpus kinds (tests and false-marker baselines by default).
    """

    every_layer: bool = False
    window: int = 2
    draws: int = 3
    kinds: tuple[str, ...] = ("test", "baseline")

    FLAG_TYPES: ClassVar[Mapping[str, Callable[[str], Any]]] = {
        **CommonConfig.FLAG_TYPES,
        "layer": layer_or_all,
    }

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> Config:
        """``--layer all`` is ``every_layer`` (and no ``layer``)."""
        if values.get("layer") == EVERY_LAYER:
            values = {**values, "layer": None, "every_layer": True}
        return cls(**values)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.every_layer and self.layer is not None:
            raise ConfigError("--layer all and --layer N exclude each other; pass one")
        if not isinstance(self.window, int) or self.window < 0:
            raise ConfigError(f"--window {self.window!r}: use an integer >= 0")
        if not isinstance(self.draws, int) or self.draws < 1:
            raise ConfigError(f"--draws {self.draws!r}: use an integer >= 1")
        object.__setattr__(self, "kinds", tuple(self.kinds))


def run_knockout(study: Study[Config], layer_of: dict[str, int] | None) -> None:
    """Records of the knockout conditions (``layer_of``: sample -> chosen layer); ``None``: a
    knockout at every layer separately."""
    cfg = study.cfg
    n_layers = study.handle.n_layers
    samples = [p for kind in cfg.kinds for p in study.select(kind)]
    if layer_of is None:
        arms = [Arm(BASELINE)] + [
            Arm(conditions.KNOCKOUT, Scope(cfg.rows, cfg.targets, window_label(lay, lay)))
            for lay in range(n_layers)
        ]
        units = conditions.plan_units(samples, arms, layer_of=0, n_layers=n_layers)
    else:
        knock = conditions.knockout_arms(
            rows=(cfg.rows,), targets=cfg.targets,
            layer_scopes=("layer", "all", "window") if cfg.window else ("layer", "all"),
            n_layers=n_layers, window=max(cfg.window, 1), stride=1, plip=False,
            draws=cfg.draws,
        )  # fmt: skip
        arms = [Arm(BASELINE), *knock]
        controls = match_controls(study, samples, [(cfg.rows, cfg.targets)], cfg.draws)
        units = conditions.plan_units(
            samples, arms, layer_of=layer_of, n_layers=n_layers, controls=controls
        )
    run_records(study, units, experiment="knockout", desc="knockout")


def main(cfg: Config) -> Path:
    """Run the knockout experiment; return the run directory."""
    study = open_study(cfg, "knockout", cfg.kinds, cfg.to_dict())
    if cfg.every_layer:  # no layer to choose
        study.run.update_manifest(layer="all")
        run_knockout(study, None)
    else:
        choice = resolve_layer(study, cfg.kinds, calibration=False)
        run_knockout(study, choice.layers_of([p.id for p in study.samples]))
    study.run.finish()
    return study.run.path
