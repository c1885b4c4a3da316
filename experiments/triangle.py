"""The whole study in one command: observe, remove, enhance, then the statistics.

1. scan every layer (tests and false-marker baselines) -> ``layer_scan.parquet``; the layer is
   ``--layer`` or the Python peak;
2. calibrate SetValue / Scale at that layer -> ``calibration.json``;
3. the mass-matched random control: the marker row's attention per key at that layer
   -> ``control_match.parquet`` (experiments.control);
4. single-pass records for the seven study conditions plus the dose-response factors
   -> ``records.parquet``;
5. generation under the seven conditions -> ``generations.parquet`` (with preservation);
6. :func:`analysis.report.analyze` -> ``stats.csv``, ``report.md``, ``figures/``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from experiments import conditions
from experiments.calibrate import resolve_layer
from experiments.control import match_controls
from experiments.generate import Config as GenerateConfig
from experiments.generate import GenerationFlags, resolve_execute, run_generation
from experiments.records import run_records
from experiments.study import ConfigError, default_out, open_study

__all__ = ["Config", "main", "main_models", "model_slug"]


@dataclass(frozen=True, kw_only=True)
class Config(GenerationFlags):
    """Study config (the generation flags are :class:`experiments.generate.GenerationFlags`).

    Attributes:
        generation: include the generation part (preservation); off = single passes only.
        dose_response: add Scale 0.5, 1, 3, 4 to the records for the dose-response curve.
    """

    generation: bool = True
    dose_response: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if set(self.languages) != {"python", "rust"}:
            raise ConfigError(
                "the study compares Python with Rust; pass --languages python rust (the default)"
            )


def record_conditions(dose_response: bool) -> list[str]:
    names = list(conditions.STUDY_CONDITIONS)
    if dose_response:
        for f in conditions.DOSE_FACTORS:
            name = conditions.scale_name(f)
            if name not in names:
                names.append(name)
    return names


def main(cfg: Config) -> Path:
    """Run the study and its analysis; return the run directory."""
    if cfg.generation:
        resolve_execute(cfg.execute)  # --execute sandbox without a sandbox: exit 2 first
    kinds = ("test", "baseline", "generation") if cfg.generation else ("test", "baseline")
    study = open_study(cfg, "triangle", kinds, cfg.to_dict())
    choice = resolve_layer(study, ("test", "baseline"), calibration=True, note_choice=True)
    layer, set_value = choice.layer, choice.set_value
    n_layers = study.handle.n_layers
    controls = match_controls(study, study.samples, layer)
    units = conditions.plan_units(
        study.select("test") + study.select("baseline"),
        record_conditions(cfg.dose_response),
        layer=layer,
        n_layers=n_layers,
        set_value=set_value,
        seed=cfg.seed,
        controls=controls,
    )
    run_records(study, units, experiment="triangle", desc="records")
    if cfg.generation:
        gen_cfg = GenerateConfig(
            **{k: getattr(cfg, k) for k in GenerationFlags.field_names()},
            conditions=conditions.STUDY_CONDITIONS,
        )
        run_generation(study, gen_cfg, layer, set_value, experiment="triangle", controls=controls)
    from analysis.report import analyze

    # The data are complete here; the report then shows the run as finished.
    study.run.finish()
    analyze(study.run.path)
    return study.run.path


def model_slug(model: str) -> str:
    """A directory name for a model's sub-run (``Qwen/Qwen2.5-0.5B`` -> ``Qwen__Qwen2.5-0.5B``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/").replace("/", "__"))
    return slug.strip("._") or "model"


def main_models(cfg: Config, models: Sequence[str]) -> Path:
    """The study for several models: one sub-run per model, then one report across them.

    ``OUT/<model slug>/`` is each model's own resumable run directory (``--resume`` resumes
    every sub-run; finished ones are skipped chunk by chunk); ``OUT/report.md``,
    ``OUT/stats.csv`` and ``OUT/figures`` cover all models (outcome matrix models ×
    languages). Returns ``OUT``.
    """
    models = list(models)
    if len(set(models)) != len(models):
        raise ConfigError(f"--model given twice: {models}; name each model once")
    slugs = [model_slug(m) for m in models]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"models {models} map to the same directory names {slugs}; rename")
    out = Path(cfg.out or default_out("triangle"))
    runs = [
        main(replace(cfg, model=m, out=str(out / slug)))
        for m, slug in zip(models, slugs, strict=True)
    ]
    from analysis.report import analyze

    analyze(runs, out=out)
    return out
