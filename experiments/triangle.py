"""The whole study in one command: observe, remove, enhance, then the statistics.

1. scan every layer (tests and false-marker baselines) -> ``layer_scan.parquet``; each half
   of the functions is edited at the peak layer of the other half (``--layer`` overrides);
2. calibrate SetValue / Scale at that layer in the default scope -> ``calibration.json``;
3. the KL noise floor: unedited generation prompts in two batch compositions
   -> ``noise_floor.parquet`` (experiments.floor);
4. the mass-matched control keys of every knockout scope, per layer and draw
   -> ``control_match.parquet`` (experiments.control);
5. single passes of the knockouts on test samples -> ``records.parquet``: baseline, every
   knockout and its controls (``random_control`` and ``inert_control``, the same keys per
   draw; ``--draws`` draws in the deciding scopes, ``--gen-draws`` in the compared ones), and
   the false-marker baselines unedited (:func:`study_plan`);
6. the window of the sweep with the largest knockout effect (:func:`choose_window`: median
   |dlogp_gold| on test samples, |kl| where that column is absent); its other draws;
7. the steering (Scale at ``--factors``, the calibrated factor, twice it, SetValue) on test
   samples in every deciding knockout scope: each of ``--knockout-rows`` at the chosen layer
   and at all layers, and that window; generation prompts' single passes (baseline, the
   deciding knockouts, their first ``--gen-draws`` draws);
8. generation -> ``generations.parquet`` (with preservation): what the prompts' single passes
   ran, and the steering doses that decide (the calibrated factor, twice it and SetValue),
   each greedy; the former also with ``--samples`` sampled decodings at ``--temperature``;
9. with ``--heads K`` (default 3 for models with at most 64 heads in all): which heads carry
   it -- per-head attribution and knockouts, and the held-out top-K test
   (:mod:`experiments.heads`);
10. :func:`analysis.report.analyze` -> ``stats.csv``, ``report.md``, ``figures/``.

The conditions form a grid over scope (:mod:`plip_nn.scope`): knockouts in each of
``--knockout-rows`` × {chosen layer, all layers} with the default targets, a window sweep in
the first of them, and the PLIP-rs scope (``marker`` rows, ``plip`` targets); each with
``--draws`` mass-matched controls of both kinds in its own rows and layers; and steering (Scale
at ``--factors``, the calibrated factor, twice it, and SetValue at the Python level) in every
deciding knockout scope, so each knockout is paired with the steering of its own scope.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import conditions
from experiments.calibrate import resolve_layer
from experiments.conditions import Arm
from experiments.control import match_controls
from experiments.floor import measure_floor
from experiments.generate import resolve_execute, run_generation
from experiments.heads import Config as HeadsConfig
from experiments.heads import reference_arms, resolve_k, run_heads
from experiments.records import run_records
from experiments.study import ConfigError, default_out, open_study
from plip_nn.scope import BASELINE, ROWS

if TYPE_CHECKING:
    import pandas as pd

    from plip_nn.models import ModelHandle

__all__ = ["QUICK", "Config", "StudyPlan", "apply_quick", "choose_window", "main", "main_models", "main_seeds", "model_slug",
           "study_arms", "study_plan"]  # fmt: skip

LAYER_SCOPES = ("layer", "all", "window")
#: the knockout rows of the study. ``continuation`` is left out by default: at the call-site
#: readout of a test sample it equals ``to_call`` exactly (rows after the call's prediction row
#: cannot reach it), so on test samples it would repeat to_call's deciding endpoint at the
#: cost of a fifth of the run; ``--knockout-rows marker_span to_call continuation`` adds it.
KNOCKOUT_ROWS = tuple(r for r in ("marker_span", "to_call") if r in ROWS)


@dataclass(frozen=True, kw_only=True)
class Config(HeadsConfig):
    """Study config: the heads experiment's (:class:`experiments.heads.Config`: the generation
    and heads flags) plus the grid of the study; the heads step reads its flags here.

    Attributes:
        generation: run the generation part (preservation); --no-generation: run single
            passes only, no generation.
        knockout_rows: the rows of the knockout scopes (each at the chosen layer and at all
            layers, with the default targets): marker, marker_span and/or continuation.
        layer_scopes: which layer scopes the knockouts use: layer (the chosen one), all, and
            window (a sweep of windows over the layers, in the first of --knockout-rows).
        window: width of the sweep's windows in layers (0: a quarter of the layers, at least
            2); they move by half a width.
        plip_scope: also knock out in the PLIP-rs scope (marker rows, plip targets) for
            comparison; --no-plip-scope: leave that scope out.
        draws: seeded draws of the mass-matched controls per knockout scope in single passes
            (random_control and inert_control, draws 0..draws-1 of the same keys).
        gen_draws: control draws in generation and on the generation prompts' single passes,
            and on test samples for the compared scopes (the first gen_draws of the single
            passes', at most --draws).
        compared_draws: draws of the renormalising control (random_control, -inf on the drawn
            keys: a compared row, never deciding), everywhere (at most --gen-draws in
            generation); the inert control decides with --draws.
        gen_compared: also run the compared knockout scopes (the window sweep's other windows,
            the PLIP-rs scope) on the generation prompts and in generation, and generate the
            renormalising random_control (otherwise a single-pass compared row only).
        factors: Scale factors of the steering dose series (single passes, call-site
            endpoint) in the chosen-layer scopes, besides the calibrated factor, twice it and
            SetValue there; the other deciding scopes get the calibrated factor only.
        margin: the smallest preservation change of interest: "no effect" means the 90% CI of
            the paired difference lies inside +-margin (TOST).
        alpha: significance level of the decisions.
        samples: K, the sampled decodings per prompt (besides the greedy one) of the
            conditions whose generation decides at the chosen layer: baseline, the knockout of
            each of --knockout-rows at the chosen layer and its first inert_control draw (the
            other scopes, the other draws, random_control and the steering doses stay greedy,
            to keep the default run's budget); 0 keeps greedy only. Each row records decoding,
            sample_index and gen_seed (paired across conditions).
        temperature: the sampling temperature of those decodings.
        seeds: run the whole study once per seed (the control draws and the sampled
            decodings reseeded), each into its own resumable run directory OUT/seed-N, then write one
            report across them into OUT: the first seed is the main run, the others enter its
            robustness table (e.g. --seeds 0 1 2); empty: one run with --seed.
        quick: a smoke run of the whole pipeline in under a minute on a quiet 2-core machine
            (:data:`QUICK`): --limit 4 --draws 2 --gen-draws 1 --samples 1 --heads 0
            --layer-scopes layer all --no-plip-scope --max-new-tokens 32; a flag given on the
            command line keeps its value.
    """

    generation: bool = True
    knockout_rows: tuple[str, ...] = KNOCKOUT_ROWS
    layer_scopes: tuple[str, ...] = LAYER_SCOPES
    window: int = 0
    plip_scope: bool = True
    draws: int = 5
    gen_draws: int = 2
    compared_draws: int = 1
    gen_compared: bool = False
    factors: tuple[float, ...] = conditions.STEERING_FACTORS
    margin: float = 0.10
    alpha: float = 0.05
    samples: int = 3
    temperature: float = 0.7
    seeds: tuple[int, ...] = ()
    quick: bool = False

    def __post_init__(self) -> None:
        if self.quick:
            apply_quick(self)
        super().__post_init__()
        if set(self.languages) != {"python", "rust"}:
            raise ConfigError(
                "the study compares Python with Rust; pass --languages python rust (the default)"
            )
        rows, scopes = tuple(self.knockout_rows), tuple(self.layer_scopes)
        if not rows or any(r not in ROWS for r in rows):
            raise ConfigError(f"--knockout-rows {rows!r}: use {', '.join(ROWS)}")
        if not scopes or any(s not in LAYER_SCOPES for s in scopes):
            raise ConfigError(f"--layer-scopes {scopes!r}: use {', '.join(LAYER_SCOPES)}")
        object.__setattr__(self, "knockout_rows", rows)
        object.__setattr__(self, "layer_scopes", scopes)
        if not isinstance(self.window, int) or self.window < 0:
            raise ConfigError(f"--window {self.window!r}: use an integer >= 0 (0: automatic)")
        if not isinstance(self.draws, int) or self.draws < 1:
            raise ConfigError(f"--draws {self.draws!r}: use an integer >= 1")
        if not isinstance(self.gen_draws, int) or self.gen_draws < 1:
            raise ConfigError(f"--gen-draws {self.gen_draws!r}: use an integer >= 1")
        if not isinstance(self.compared_draws, int) or self.compared_draws < 0:
            raise ConfigError(f"--compared-draws {self.compared_draws!r}: use an integer >= 0")
        facs = tuple(float(f) for f in self.factors)
        if not facs or any(not f > 0 for f in facs):
            raise ConfigError(f"--factors {self.factors!r}: use positive numbers")
        object.__setattr__(self, "factors", facs)
        if not 0 < self.margin < 1:
            raise ConfigError(f"--margin {self.margin!r}: use a preservation change in (0, 1)")
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"--alpha {self.alpha!r}: use a level in (0, 0.5)")
        if not isinstance(self.samples, int) or self.samples < 0:
            raise ConfigError(f"--samples {self.samples!r}: use an integer >= 0 (0: greedy only)")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature > 0):  # fmt: skip
            raise ConfigError(f"--temperature {self.temperature!r}: use a number > 0")
        seeds = tuple(self.seeds)
        if any(not isinstance(x, int) or x < 0 for x in seeds) or len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds {seeds!r}: use distinct integers >= 0, e.g. --seeds 0 1 2")
        object.__setattr__(self, "seeds", seeds)

    @property
    def decoding(self) -> tuple[bool, float]:
        """(False, --temperature): greedy rows, plus --samples sampled ones at that temperature."""
        return False, float(self.temperature)


GENERATED_DOSES = (conditions.SCALE_CALIBRATED, conditions.SCALE_CALIBRATED_X2)
"""The steering doses that are generated: the calibrated Scale (the deciding dose, whose
generations also count for reach) and twice it (with baseline, the three doses of H2's
dose-response on preservation). Every steering arm decides on the call-site readout of the
single passes where it has one."""

SAMPLED_ARMS = (conditions.KNOCKOUT, conditions.INERT_CONTROL)
"""The knockout arms whose generation also gets sampled decodings (with baseline): the
knockout and its deciding control; ``random_control`` is a compared row, greedy only."""

QUICK: dict[str, object] = {
    "limit": 4,
    "draws": 2,
    "gen_draws": 1,
    "samples": 1,
    "heads": 0,
    "layer_scopes": ("layer", "all"),
    "plip_scope": False,
    "max_new_tokens": 32,
}
"""``--quick``: the fields it sets (each only where the field still has its default)."""


def apply_quick(cfg: Config) -> None:
    """Set the :data:`QUICK` values on ``cfg``'s fields that still hold their defaults."""
    defaults: dict[str, Any] = {f.name: f.default for f in fields(cfg)}
    for name, value in QUICK.items():
        current, default = getattr(cfg, name), defaults[name]
        if isinstance(current, list):  # a flag's list, as the field's default tuple
            current = tuple(current)
        if current == default:
            object.__setattr__(cfg, name, value)


def window_width(cfg: Config, n_layers: int) -> tuple[int, int]:
    """(width, stride) of the window sweep: ``--window`` or a quarter of the layers (>= 2)."""
    width = cfg.window or max(2, n_layers // 4)
    width = min(width, n_layers)
    return width, max(1, width // 2)


def study_arms(
    cfg: Config, n_layers: int, window: str | None = None
) -> tuple[list[Arm], list[Arm]]:
    """(knockout arms with their controls, steering arms) of the study's grid; the steering
    runs in every deciding knockout scope (:func:`conditions.steering_scopes`), with the
    ``window`` label of :func:`choose_window` when the sweep ran."""
    width, stride = window_width(cfg, n_layers)
    knock = conditions.knockout_arms(
        rows=cfg.knockout_rows, targets=cfg.targets, layer_scopes=cfg.layer_scopes,
        n_layers=n_layers, window=width, stride=stride, plip=cfg.plip_scope, draws=cfg.draws,
    )  # fmt: skip
    scopes = conditions.steering_scopes(cfg.knockout_rows, cfg.targets, cfg.layer_scopes, window)
    steer: list[Arm] = []
    for scope in scopes:  # the dose series at the chosen layer; the calibrated Scale elsewhere
        if scope.layers == conditions.CHOSEN:
            steer += conditions.steering_arms(cfg.factors, scopes=[scope])
        else:
            steer.append(Arm(conditions.SCALE_CALIBRATED, scope))
    return knock, steer


def choose_window(records: pd.DataFrame, rows: str, targets: str) -> str | None:
    """The window label (e.g. ``w2-3``) of the sweep in ``rows``/``targets`` whose knockout
    moves the test samples' output most: the largest median ``|dlogp_gold|`` over kind=test
    rows (``|kl|`` when the records have no ``dlogp_gold``, or no test rows); None without a
    window knockout. Ties go to the earlier window."""
    from plip_nn.scope import window_layers

    ko = records[(records["arm"] == conditions.KNOCKOUT) & (records["rows"] == rows)
                 & (records["targets"] == targets)]  # fmt: skip
    ko = ko[[lay not in ("L", "all") for lay in ko["layers"]]]
    if ko.empty:
        return None
    tests = ko[ko["kind"] == "test"]
    col = "dlogp_gold" if "dlogp_gold" in ko.columns and tests["dlogp_gold"].notna().any() else "kl"
    use = tests if not tests.empty and tests[col].notna().any() else ko
    effect = use.assign(e=use[col].abs()).groupby("layers")["e"].median()
    order = sorted(effect.index, key=lambda w: window_layers(str(w))[0])
    return str(max(order, key=lambda w: (effect[w], -order.index(w))))


@dataclass(frozen=True)
class StudyPlan:
    """The condition names of each part of the study (:func:`study_plan`).

    Attributes:
        tests: single passes on test samples (the call-site endpoint).
        prompts: single passes on generation prompts (KL after the marker).
        generation: generation on the generation prompts (each greedy).
        sampled: the generation conditions that also get ``--samples`` sampled decodings:
            baseline, the knockouts and the ``inert_control`` draws of ``prompts`` (the
            deciding control; ``random_control`` and the steering doses stay greedy).
    """

    tests: set[str]
    prompts: set[str]
    generation: set[str]
    sampled: set[str] = field(default_factory=set)


def study_plan(cfg: Config, knock: list[Arm], steer: list[Arm], window: str | None) -> StudyPlan:
    """Which conditions run where, so that the default run fits its time budget.

    The *deciding* knockout scopes are those that get steering
    (:func:`conditions.steering_scopes`: each of ``--knockout-rows`` at the chosen layer and at
    all layers, and the chosen ``window``); the others (the rest of the window sweep, the
    PLIP-rs scope) are compared rows. Test samples: baseline, every knockout, every control
    draw of the deciding scopes (``--draws``), the first ``--gen-draws`` draws of the compared
    ones, and every steering arm; the renormalising control (a compared row) runs its first
    ``--compared-draws`` draws only. Generation prompts (single passes): baseline, the deciding
    knockouts with their first ``--gen-draws`` draws (the compared scopes too with
    ``--gen-compared``). Generation: the same without the renormalising ``random_control`` (a
    compared row; generated with ``--gen-compared``), plus :data:`GENERATED_DOSES`: the
    calibrated Scale in every deciding scope and twice it at the chosen layer (as
    :func:`study_arms` plans them; SetValue decides on the call-site readout of the single
    passes, so it is not generated). Sampled decodings
    (``--samples``): baseline, and at the chosen layer each knockout and its first inert draw
    (:data:`SAMPLED_ARMS`), to keep the run's budget.
    """
    few = min(cfg.gen_draws, cfg.draws)
    deciding = set(conditions.steering_scopes(cfg.knockout_rows, cfg.targets, cfg.layer_scopes,
                                              window))  # fmt: skip

    def draw_ok(a: Arm, n: int) -> bool:
        if a.arm == conditions.CONTROL:  # renormalising: a compared row
            n = min(n, cfg.compared_draws)
        return a.arm not in conditions.CONTROL_ARMS or (a.draw or 0) < n

    tests = {BASELINE}
    tests |= {a.name for a in knock if draw_ok(a, cfg.draws if a.scope in deciding else few)}
    tests |= {a.name for a in steer}
    prompts = {BASELINE} | {
        a.name for a in knock if draw_ok(a, few) and (a.scope in deciding or cfg.gen_compared)
    }
    generation = {a.name for a in knock if a.name in prompts
                  and (a.arm != conditions.CONTROL or cfg.gen_compared)}  # fmt: skip
    generation |= {BASELINE} | {a.name for a in steer if a.arm in GENERATED_DOSES}
    sampled = {BASELINE} | {
        a.name for a in knock
        if a.name in generation and a.arm in SAMPLED_ARMS and a.scope is not None
        and a.scope.layers == conditions.CHOSEN and (a.draw or 0) == 0
    }  # fmt: skip
    return StudyPlan(tests=tests, prompts=prompts, generation=generation, sampled=sampled)


def main(cfg: Config) -> Path:
    """Run the study and its analysis; return the run directory (with ``--seeds``: the
    directory of the report across the seeds, :func:`main_seeds`)."""
    if cfg.seeds:
        return main_seeds(cfg)
    if cfg.generation:
        resolve_execute(cfg.execute)  # --execute sandbox without a sandbox: exit 2 first

    def check_heads(handle: ModelHandle) -> None:
        resolve_k(cfg.heads, handle, auto=True)  # --heads K too large: exit 2, nothing written

    study = open_study(cfg, "triangle", ("test", "baseline", "generation"), cfg.to_dict(),
                       check_model=check_heads)  # fmt: skip
    choice = resolve_layer(study, ("test", "baseline"), calibration=True, note_choice=True)
    n_layers = study.handle.n_layers
    knock, _ = study_arms(cfg, n_layers)
    tests, prompts = study.select("test"), study.select("generation")
    layer_of = choice.layers_of([p.id for p in study.samples])
    measure_floor(study, prompts)
    scopes = [(a.scope.rows, a.scope.targets) for a in knock if a.scope is not None]
    controls = match_controls(study, tests + prompts, scopes, cfg.draws)
    base = [Arm(BASELINE)]
    plan = dict(layer_of=layer_of, n_layers=n_layers, calibration=choice.calibrations,
                controls=controls)  # fmt: skip
    tests_and_prompts = {"test": tests, "generation": prompts}

    def units_of(kind: str, names: set[str], arms: list[Arm]) -> list:
        # planned with the whole grid so that condition_order is unique and in grid order
        grid = conditions.plan_units(tests_and_prompts[kind], arms, **plan)  # type: ignore[arg-type]
        return [u for u in grid if u.arm.name in names]

    # Stage 1: the knockouts and their controls on test samples (the call-site endpoint).
    first = study_plan(cfg, knock, [], None)
    units = units_of("test", first.tests, base + knock) + conditions.plan_units(
        study.select("baseline"),
        base,
        **plan,  # type: ignore[arg-type]
    )
    records = run_records(study, units, experiment="triangle", desc="records")
    # Stage 2: the window that acts most; the steering in every deciding scope; prompts.
    window = None
    if "window" in cfg.layer_scopes and cfg.knockout_rows:
        window = choose_window(records, cfg.knockout_rows[0], cfg.targets)
        study.run.update_manifest(steering_window=window)
    _, steer = study_arms(cfg, n_layers, window)
    sp = study_plan(cfg, knock, steer, window)
    every = base + knock + steer
    units = units_of("test", sp.tests - first.tests, every) + units_of(
        "generation", sp.prompts, every
    )
    run_records(study, units, experiment="triangle", desc="steering")
    if cfg.generation:
        gen_units = units_of("generation", sp.generation, every)
        run_generation(study, gen_units, experiment="triangle", samples=cfg.samples,
                       sampled=sp.sampled)  # fmt: skip
    heads_k = resolve_k(cfg.heads, study.handle, auto=True)
    if heads_k:
        have = sp.tests | sp.prompts
        refs = [a for a in reference_arms(cfg.rows, cfg.targets, cfg.heads_factor)
                if a.name not in have]  # fmt: skip
        run_heads(study, choice, k=heads_k, references=refs)
    from analysis.report import analyze

    # The data are complete here; the report then shows the run as finished.
    study.run.finish()
    analyze(study.run.path, alpha=cfg.alpha, margin=cfg.margin)
    return study.run.path


def main_seeds(cfg: Config) -> Path:
    """The study once per ``--seeds`` value, then one report across the seeds.

    ``OUT/seed-N/`` is seed N's own resumable run directory (its config differs from the
    others' only in ``seed`` and ``out``, which is what makes them seeds of one study for
    :func:`analysis.report.analyze`); ``OUT/report.md``, ``OUT/stats.csv`` and
    ``OUT/figures`` are the first seed's report with every seed in its robustness table.
    Returns ``OUT``.
    """
    out = Path(cfg.out or default_out("triangle"))
    runs = [main(replace(cfg, seeds=(), seed=s, out=str(out / f"seed-{s}"))) for s in cfg.seeds]
    from analysis.report import analyze

    analyze(runs, out=out, alpha=cfg.alpha, margin=cfg.margin)
    return out


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
    if cfg.seeds:
        raise ConfigError(
            f"--seeds {' '.join(map(str, cfg.seeds))} with {len(models)} --model values: run "
            "the seeds of one model at a time (one --model per command)"
        )
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

    analyze(runs, out=out, alpha=cfg.alpha, margin=cfg.margin)
    return out
