"""Remove: knock out marker->function attention and compare with a random-edge control.

Conditions per sample: ``baseline``, ``knockout`` (at the layer), ``knockout_all_layers``,
``knockout_window`` (layers L-r..L+r) and ``random_control`` (the same number of random causally
valid non-target keys of the marker row, same layer, seeded, matched on removed attention mass:
``experiments.control``, ``control_match.parquet``). ``--layer all`` instead knocks out
the target edges at every layer separately (one ``knockout`` row per layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from experiments import conditions
from experiments.calibrate import resolve_layer
from experiments.conditions import Unit
from experiments.control import match_controls
from experiments.records import run_records
from experiments.study import CommonConfig, ConfigError, Study, open_study

__all__ = ["Config", "main", "run_knockout"]

CONDITIONS = ("baseline", "knockout", "knockout_all_layers", "knockout_window", "random_control")


@dataclass(frozen=True, kw_only=True)
class Config(CommonConfig):
    """Knockout config.

    Attributes:
        every_layer: knock out at each layer separately (``--layer all``).
        window: half-width r of the window condition (layers L-r..L+r).
        kinds: corpus kinds (tests and false-marker baselines by default).
    """

    every_layer: bool = False
    window: int = 1
    kinds: tuple[str, ...] = ("test", "baseline")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.every_layer and self.layer is not None:
            raise ConfigError("--layer all and --layer N exclude each other; pass one")
        if not isinstance(self.window, int) or self.window < 0:
            raise ConfigError(f"--window {self.window!r}: use an integer >= 0")
        object.__setattr__(self, "kinds", tuple(self.kinds))


def run_knockout(study: Study, cfg: Config, layer: int | None) -> None:
    """Records of the knockout conditions at ``layer``; ``None``: a knockout at every layer."""
    n_layers = study.handle.n_layers
    units: list[Unit] = []
    samples = [p for kind in cfg.kinds for p in study.select(kind)]
    if layer is None:
        for p in samples:
            cond, _ = conditions.build("baseline", p.positions, layer=0, n_layers=n_layers)
            units.append(Unit(p, cond, conditions.ALL_LAYERS, 0))
            for lay in range(n_layers):
                cond, rec_layer = conditions.build(
                    "knockout", p.positions, layer=lay, n_layers=n_layers
                )
                units.append(Unit(p, cond, rec_layer, 1))
    else:
        controls = match_controls(study, samples, layer)
        for p in samples:
            for order, name in enumerate(CONDITIONS):
                cond, rec_layer = conditions.build(
                    name,
                    p.positions,
                    layer=layer,
                    n_layers=n_layers,
                    seed=cfg.seed,
                    window=cfg.window,
                    control=controls.get(p.id),
                )
                units.append(Unit(p, cond, rec_layer, order))
    run_records(study, units, experiment="knockout", desc="knockout")


def main(cfg: Config) -> Path:
    """Run the knockout experiment; return the run directory."""
    study = open_study(cfg, "knockout", cfg.kinds, cfg.to_dict())
    if cfg.every_layer:  # no layer to choose
        study.run.update_manifest(layer="all")
        run_knockout(study, cfg, None)
    else:
        run_knockout(study, cfg, resolve_layer(study, cfg.kinds, calibration=False).layer)
    study.run.finish()
    return study.run.path
