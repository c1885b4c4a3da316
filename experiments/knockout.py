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
from experiments.control import match_controls
from experiments.records import run_records
from experiments.scan import choose_layer, run_scan
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


def run_knockout(study: Study, cfg: Config, layer: int) -> None:
    n_layers = study.handle.n_layers
    units = []
    samples = [p for kind in cfg.kinds for p in study.select(kind)]
    controls = {} if cfg.every_layer else match_controls(study, samples, layer)
    for p in samples:
        if cfg.every_layer:
            cond, _ = conditions.build("baseline", p.positions, layer=0, n_layers=n_layers)
            units.append((p, cond, -1, 0))
            for lay in range(n_layers):
                cond, rec_layer = conditions.build(
                    "knockout", p.positions, layer=lay, n_layers=n_layers
                )
                units.append((p, cond, rec_layer, 1))
            continue
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
            units.append((p, cond, rec_layer, order))

    def probe_layers(rec_layer: int) -> tuple[int, ...]:
        return tuple(range(n_layers)) if rec_layer == -1 else (rec_layer,)

    run_records(study, units, experiment="knockout", probe_layer=probe_layers, desc="knockout")


def main(cfg: Config) -> Path:
    """Run the knockout experiment; return the run directory."""
    study = open_study(cfg, "knockout", cfg.kinds, cfg.to_dict())
    layer = cfg.layer
    if layer is None and not cfg.every_layer:
        layer = choose_layer(run_scan(study, cfg.kinds))
    study.run.update_manifest(layer=layer if not cfg.every_layer else "all")
    run_knockout(study, cfg, layer if layer is not None else 0)
    study.run.finish()
    return study.run.path
