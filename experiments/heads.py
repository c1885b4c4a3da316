"""Which heads carry it: per-head attribution, per-head knockouts and a held-out top-k test.

In the default scope (``--rows``/``--targets``: the marker span's rows, the identifiers'
keys), on the **test samples** (kind ``test``): every single-pass metric is read at the
sample's ``predict_at`` -- the row that predicts the function's name at the test's first call
once the positions carry it (issue 28; until then whatever :mod:`plip_nn.positions` gives).

1. **Sweep** -> ``head_sweep.parquet``, one row per (test sample, layer, head). One forward and
   one backward per batch give every head's attribution (:func:`plip_nn.attribute_heads`: the
   estimated change of log p of the greedy token when that head's edges alone are knocked out)
   and its attention level and mass; then each head's edges are knocked out alone, one batch
   row per (sample, layer, head) (:func:`plip_nn.run`, which adds one unedited reference row
   per sample). The measured columns come from :func:`experiments.records.record_row` (the
   records' own ``kl``, ``dlogp_top1`` and, where the records carry them, ``dlogp_gold`` ...).
2. **Selection** -> ``heads_selection.parquet``. Per language, the samples of half ``h``
   (:func:`plip_nn.scope.function_half`, seeded, by function) are tested with the ``K``
   (layer, head) pairs **over every layer** whose knockout lowers the measure most on average
   over the *other* half's samples (ties: the larger KL, then the lower layer and head). The
   measure is ``dlogp_gold`` (log p of the gold name token at the call) when the sweep has it,
   else ``dlogp_top1`` (column ``measure``). No sample is tested with heads chosen on itself,
   and every sample is tested once (cross-fitting).
3. **Control** -> ``heads_control.parquet``: per sample and draw, ``K`` other (layer, head)
   pairs whose summed marker->function mass (the mass a knockout removes) lies within
   ±:data:`HEADS_TOLERANCE` of the top-K's, **no draw repeating another's set**
   (:func:`experiments.head_draws.distinct_draws`, seeded per sample). A pool too small for
   that many distinct matched sets gives the closest distinct sets outside the tolerance
   (``within_tolerance`` False, ``n_matched_sets`` says how many sets matched).
4. **Held-out test** -> ``heads_records.parquet`` (single passes on the test samples, built by
   :func:`experiments.conditions.plan_units` and :func:`experiments.records.run_records`, so
   the records' readout at the call applies) and ``heads_generations.parquet`` (the generation
   prompts, with their own mass-matched random heads): ``knockout_topk``, ``random_heads#d``
   and ``steer_topk`` (Scale of the top-K heads' edges at ``--heads-factor``, PASTA-style),
   each one :class:`~plip_nn.edits.AttentionEdit` per layer of the set with that layer's heads,
   in the all-layer scope (``rows/targets/all``); plus the references (``baseline``, the
   knockout of the same edges in every head of every layer -- the whole-model effect whose
   share the top-K carries -- and Scale of every head at the same factor) unless the calling
   study already runs them.
5. **Cost** -> the manifest's ``heads_cost``: seconds of each part, and of one plain HF
   forward over the same samples in the same batches, measured side by side.

The KL noise floor of the same samples (``noise_floor.parquet``, :mod:`experiments.floor`)
tells which heads' knockouts reach the prediction at all.

The statistics (CIs, tests, verdicts, the share, heads.parquet) are :mod:`analysis.heads`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from experiments import conditions
from experiments.calibrate import LayerChoice, resolve_layer
from experiments.conditions import Arm, HeadSets, Unit
from experiments.floor import measure_floor
from experiments.generate import GenerationFlags, resolve_execute, run_generation
from experiments.head_draws import HEADS_TOLERANCE, HeadDraw, Pair, distinct_draws, head_rng
from experiments.records import record_row, run_records
from experiments.study import CommonConfig, ConfigError, Prepared, Study, open_study, run_chunks
from plip_nn.edits import AttentionEdit, Condition, Knockout, Probe
from plip_nn.scope import BASELINE, EVERY, Scope, function_half, window_label

if TYPE_CHECKING:
    import pandas as pd

    from plip_nn.models import ModelHandle
    from plip_nn.trace import Remote

__all__ = [
    "AUTO_MAX_HEADS",
    "DEFAULT_K",
    "HEADS_TOLERANCE",
    "Config",
    "HeadDraw",
    "HeadsFlags",
    "distinct_draws",
    "head_arms",
    "head_sets",
    "main",
    "measure_of",
    "reference_arms",
    "resolve_k",
    "run_heads",
    "run_sweep",
    "select_heads",
]

log = logging.getLogger(__name__)

DEFAULT_K = 3
"""K of the held-out test when ``--heads`` is not given."""
AUTO_MAX_HEADS = 64
"""The triangle's heads step is on by default only for models with at most this many heads in
all (layers × heads): the sweep costs one forward row per head and prompt."""
SWEEP_ARM = "knockout_head"
SWEEP_ORDER = ["language", "sample_id", "layer", "head"]
SWEEP_KEYS = ["sample_id", "layer", "head"]
SELECTION_ORDER = ["language", "half", "rank"]
SELECTION_KEYS = ["language", "half", "rank"]
CONTROL_ORDER = ["language", "sample_id", "draw"]
CONTROL_KEYS = ["sample_id", "draw"]


@dataclass(frozen=True, kw_only=True)
class HeadsFlags(CommonConfig):
    """The common flags plus the head-level experiment's (``heads`` and ``triangle``).

    Attributes:
        heads: K, the number of heads of the held-out top-K test; 0 turns the triangle's
            heads step off. Default: 3 (the triangle: only when the model has at most 64
            heads in all).
        heads_factor: Scale factor of steer_topk (PASTA-style steering of the top-K heads'
            edges); the all-heads comparison is scale_<factor> at every layer.
        heads_draws: seeded draws of the K random heads matched on marker->function mass
            (distinct sets across draws).
    """

    heads: int | None = None
    heads_factor: float = max(conditions.DOSE_FACTORS)
    heads_draws: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        k = self.heads
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise ConfigError(f"--heads {k!r}: use an integer K >= 0 (0: off)")
        f = self.heads_factor
        if not isinstance(f, int | float) or not math.isfinite(f) or f <= 0:
            raise ConfigError(f"--heads-factor {f!r}: use a number > 0")
        if not isinstance(self.heads_draws, int) or self.heads_draws < 1:
            raise ConfigError(f"--heads-draws {self.heads_draws!r}: use an integer >= 1")


@dataclass(frozen=True, kw_only=True)
class Config(GenerationFlags, HeadsFlags):
    """Heads config (the generation flags are :class:`experiments.generate.GenerationFlags`).

    Attributes:
        generation: generate under the held-out conditions (preservation); --no-generation:
            run single passes only.
    """

    generation: bool = True


def resolve_k(requested: int | None, handle: ModelHandle, *, auto: bool) -> int:
    """K for ``handle``: ``requested``, or :data:`DEFAULT_K` (with ``auto``: only when the
    model has at most :data:`AUTO_MAX_HEADS` heads in all, else 0).

    Raises:
        ConfigError: K leaves no other head of a layer to draw random heads from.
    """
    total = handle.n_layers * handle.n_heads
    if requested is None:
        k = DEFAULT_K if not auto or total <= AUTO_MAX_HEADS else 0
        if k == 0:
            log.info("heads step off: %d heads in all > %d (pass --heads K)", total, AUTO_MAX_HEADS)
    else:
        k = requested
    if k >= handle.n_heads:
        raise ConfigError(
            f"--heads {k}: the model has {handle.n_heads} heads per layer; K must leave other "
            f"heads for the random control, use K <= {handle.n_heads - 1}"
        )
    return k


def reference_arms(rows: str, targets: str, factor: float) -> list[Arm]:
    """What the held-out test compares with: baseline, the knockout of the same edges in every
    head of every layer (the whole-model effect) and Scale of every head at ``factor``."""
    scope = Scope(rows, targets, EVERY)
    return [Arm(BASELINE), Arm(conditions.KNOCKOUT, scope),
            Arm(conditions.scale_name(factor), scope)]  # fmt: skip


def head_arms(rows: str, targets: str, draws: int) -> list[Arm]:
    """The held-out conditions (all-layer scope: a head set may span layers): top-K knockout,
    its random heads, top-K steering."""
    scope = Scope(rows, targets, EVERY)
    return (
        [Arm(conditions.TOPK_KNOCKOUT, scope)]
        + [Arm(conditions.RANDOM_HEADS, scope, d) for d in range(draws)]
        + [Arm(conditions.TOPK_STEER, scope)]
    )


def sweep_length(p: Prepared) -> int:
    """The tokens of ``p`` that the sweep runs: each of its items is read at ``predict_at``
    only (the marker's prediction row: KL, top-1, Δlog p of the top-1), and attention is
    causal, so the pass stops there; the edited rows, the marker's, lie before it."""
    return min(len(p.input_ids), p.positions.predict_at + 1)


def _plain_seconds(handle: ModelHandle, prompts: Sequence[Prepared], batch_size: int) -> float:
    """Seconds of one plain HF forward over ``prompts`` (each cut at :func:`sweep_length`, as
    the sweep runs it) in batches of ``batch_size``."""
    # torch loads when the experiment runs, not with the CLI
    import torch

    from plip_nn.padding import pad_batch, pad_id

    pad = pad_id(handle)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            inputs, _ = pad_batch([p.input_ids[: sweep_length(p)]
                                   for p in prompts[i : i + batch_size]], pad, handle.device)  # fmt: skip
            handle.hf(**inputs)
    return time.perf_counter() - start


def run_sweep(study: Study, prompts: Sequence[Prepared], cost: dict[str, float]) -> pd.DataFrame:
    """The sweep (module docstring, step 1) -> ``head_sweep``; adds seconds to ``cost``."""
    import pandas as pd

    # torch loads when the experiment runs, not with the CLI
    from plip_nn.attribution import attribute_heads
    from plip_nn.trace import Item
    from plip_nn.trace import run as run_items

    cfg = study.cfg
    handle = study.handle
    n_layers, n_heads = handle.n_layers, handle.n_heads
    layers = tuple(range(n_layers))
    remote = cast("Remote", cfg.remote)  # checked by CommonConfig

    def work(chunk: list[Prepared]) -> pd.DataFrame:
        probe_items, ko_items = [], []
        for p in chunk:
            pos = p.positions
            cut = sweep_length(p)
            ids = p.input_ids[:cut]
            src = tuple(r for r in pos.rows(cfg.rows) if r < cut)
            tgt = pos.target_set(cfg.targets)
            probe_items.append(Item(
                key=p.id, sample_id=p.id, input_ids=ids,
                condition=Condition(name=BASELINE), probe=Probe(layers=layers, sources=src, targets=tgt),
                predict_at=pos.predict_at,
            ))  # fmt: skip
            for layer in layers:
                name = conditions.condition_name(
                    SWEEP_ARM, Scope(cfg.rows, cfg.targets, window_label(layer, layer))
                )
                for head in range(n_heads):
                    edit = AttentionEdit(layers=(layer,), heads=(head,), sources=src, targets=tgt,
                                         op=Knockout())  # fmt: skip
                    ko_items.append(Item(
                        key=f"{p.id}|{layer}|{head}", sample_id=p.id, input_ids=ids,
                        condition=Condition(name=name, edits=(edit,)), predict_at=pos.predict_at,
                    ))  # fmt: skip
        # Side by side: one plain forward over the chunk, the attribution, the knockouts.
        cost["plain"] += _plain_seconds(handle, chunk, cfg.batch_size)
        t0 = time.perf_counter()
        attrs = attribute_heads(handle, probe_items, batch_size=cfg.batch_size, remote=remote)
        t1 = time.perf_counter()
        results = run_items(handle, ko_items, batch_size=cfg.batch_size, remote=remote)
        t2 = time.perf_counter()
        cost["attribution"] += t1 - t0
        cost["knockouts"] += t2 - t1
        cost["prompts"] += len(chunk)
        measured = {r.key: r for r in results}
        edited = {it.key: it.condition for it in ko_items}
        rows = []
        for p, a in zip(chunk, attrs, strict=True):
            pos = p.positions
            for layer in layers:
                for head in range(n_heads):
                    key = f"{p.id}|{layer}|{head}"
                    r = measured[key]
                    rec = _measured(study, p, edited[key], layer, r)
                    rows.append({
                        "experiment": "heads", "model": study.model_name, "sample_id": p.id,
                        "language": p.language, "kind": p.kind,
                        "half": function_half(p.id, cfg.seed), "rows": cfg.rows,
                        "targets": cfg.targets, "layer": layer, "head": head,
                        "n_heads": n_heads, "n_edges": len(pos.rows(cfg.rows)) *
                        len(pos.target_set(cfg.targets)),
                        "attn_level": a.level[layer][head], "attn_mass": a.mass[layer][head],
                        "attribution": a.estimate[layer][head],
                        "attribution_linear": a.linear[layer][head],
                        **rec, "top1_baseline": r.top1_baseline, "top1_attribution": a.top1,
                        "logp_top1": a.logp_top1, "seed": cfg.seed,
                    })  # fmt: skip
        return pd.DataFrame(rows)

    run_chunks(study, "head_sweep", list(prompts), lambda p: p.id, work, desc="heads sweep")
    return study.run.assemble("head_sweep", SWEEP_ORDER, SWEEP_KEYS)


MEASURED = ("kl", "dlogp_top1", "top1_same", "predict_at")
"""The sweep's columns taken from the record row of each single-head knockout ..."""
MEASURED_IF_PRESENT = ("readout", "call_at", "gold_token", "dlogp_gold", "logp_gold_baseline",
                       "logp_gold_condition", "rank_gold_baseline", "rank_gold_condition")  # fmt: skip
"""... and these, where the records carry them (the call-site readout, issue 28)."""


def _measured(study: Study, p: Prepared, cond: Condition, layer: int, result: Any) -> dict:
    """The measured columns of one single-head knockout, from its records row."""
    scope = Scope(study.cfg.rows, study.cfg.targets, window_label(layer, layer))
    unit = Unit(sample=p, condition=cond, record_layer=layer, order=0, arm=Arm(SWEEP_ARM, scope))
    row = record_row(experiment="heads", model=study.model_name, seed=study.cfg.seed,
                     unit=unit, result=result)  # fmt: skip
    return {c: row[c] for c in (*MEASURED, *MEASURED_IF_PRESENT) if c in row}


def measure_of(table: pd.DataFrame) -> str:
    """``dlogp_gold`` when ``table`` has it with some value, else ``dlogp_top1``."""
    if "dlogp_gold" in table and table["dlogp_gold"].notna().any():
        return "dlogp_gold"
    return "dlogp_top1"


def select_heads(sweep: pd.DataFrame, k: int) -> pd.DataFrame:
    """The top-``k`` (layer, head) pairs per language and tested half, over every layer
    (module docstring, step 2).

    Half ``h`` gets the pairs whose knockout lowers the measure (:func:`measure_of`) most on
    average over the samples of the other half (ties: the larger mean KL, then the lower layer
    and head). A half whose other half has no sample of the language gets none.
    One row per (language, half, rank).
    """
    import pandas as pd

    measure = measure_of(sweep)
    rows = []
    for language in sorted(set(sweep["language"])):
        of_lang = sweep[sweep["language"] == language]
        for half in (0, 1):
            train = of_lang[of_lang["half"] == 1 - half]
            if train.empty:
                log.warning("heads: no %s samples in half %d to choose half %d's heads from",
                            language, 1 - half, half)  # fmt: skip
                continue
            score = train.groupby(["layer", "head"]).agg(
                score=(measure, "mean"), kl=("kl", "mean"), n=("sample_id", "nunique")
            )
            score = score.reset_index().sort_values(
                ["score", "kl", "layer", "head"], ascending=[True, False, True, True]
            )
            for rank, r in enumerate(score.head(k).itertuples(), start=1):
                rows.append({
                    "model": str(train["model"].iloc[0]), "language": language, "half": half,
                    "chosen_on_half": 1 - half, "layer": int(r.layer), "rank": rank,
                    "head": int(r.head), "measure": measure, "mean_score": float(r.score),
                    "mean_kl": float(r.kl), "n_prompts": int(r.n),
                })  # fmt: skip
    return pd.DataFrame(rows)


def head_sets(
    prompts: Sequence[Any], masses: dict[tuple[str, int, int], float], selection: pd.DataFrame,
    *, seed: int, draws: int, factor: float, model: str,
) -> tuple[HeadSets, pd.DataFrame]:  # fmt: skip
    """Per sample: its top-K (layer, head) pairs and ``draws`` distinct mass-matched random
    sets (step 3), and the ``heads_control`` rows that record each match.

    ``masses``: (sample id, layer, head) -> the head's marker->function mass on that sample.
    """
    import pandas as pd

    top_of = {
        (str(lang), int(half)): tuple((int(a), int(b)) for a, b in
                                      g.sort_values("rank")[["layer", "head"]].to_numpy())
        for (lang, half), g in selection.groupby(["language", "half"])
    } if len(selection) else {}  # fmt: skip
    top: dict[str, tuple[Pair, ...]] = {}
    random: dict[tuple[str, int], tuple[Pair, ...]] = {}
    rows = []
    for p in prompts:
        half = function_half(p.id, seed)
        chosen = top_of.get((p.language, half))
        if not chosen:
            continue
        mine = {(lay, h): m for (sid, lay, h), m in masses.items() if sid == p.id}
        pool = sorted(pair for pair in mine if pair not in chosen)
        goal = sum(mine[pair] for pair in chosen)
        top[p.id] = chosen
        found, n_matched = distinct_draws(pool, mine, len(chosen), goal, draws,
                                          head_rng(p.id, seed))  # fmt: skip
        for d, m in enumerate(found):
            random[(p.id, d)] = m.heads
            rows.append({
                "model": model, "sample_id": p.id, "language": p.language, "kind": p.kind,
                "half": half, "draw": d, "top_heads": json.dumps([list(x) for x in chosen]),
                "control_heads": json.dumps([list(x) for x in m.heads]),
                "target_mass": goal, "control_mass": m.mass, "mass_ratio": m.ratio,
                "within_tolerance": m.within, "tolerance": HEADS_TOLERANCE,
                "n_matched_sets": n_matched, "pool_size": len(pool),
            })  # fmt: skip
    return HeadSets(top=top, random=random, factor=float(factor)), pd.DataFrame(rows)


def sweep_masses(sweep: pd.DataFrame) -> dict[tuple[str, int, int], float]:
    """(sample id, layer, head) -> marker->function mass, from the sweep."""
    return {
        (str(r.sample_id), int(r.layer), int(r.head)): float(r.attn_mass)
        for r in sweep[["sample_id", "layer", "head", "attn_mass"]].itertuples()
    }


def probe_masses(study: Study, prompts: Sequence[Prepared]) -> dict[tuple[str, int, int], float]:
    """(sample id, layer, head) -> marker->function mass of ``prompts`` (the generation prompts,
    which the sweep does not cover), from the attribution pass's unedited read."""
    from plip_nn.attribution import attribute_heads
    from plip_nn.trace import Item

    cfg = study.cfg
    layers = tuple(range(study.handle.n_layers))
    items = []
    for p in prompts:
        pos = p.positions
        probe = Probe(
            layers=layers, sources=pos.rows(cfg.rows), targets=pos.target_set(cfg.targets)
        )
        items.append(Item(key=p.id, sample_id=p.id, input_ids=p.input_ids,
                          condition=Condition(name=BASELINE), probe=probe,
                          predict_at=pos.predict_at))  # fmt: skip
    attrs = attribute_heads(study.handle, items, batch_size=cfg.batch_size,
                            remote=cast("Remote", cfg.remote))  # fmt: skip
    return {
        (a.sample_id, layer, head): float(m)
        for a in attrs for layer, per_head in a.mass.items() for head, m in enumerate(per_head)
    }  # fmt: skip


def run_heads(
    study: Study[Config], choice: LayerChoice, *, k: int, references: Sequence[Arm]
) -> None:
    """The heads step (module docstring): sweep, selection, control, held-out test, cost.

    ``k``: K, resolved for the model (:func:`resolve_k`). ``choice``: the layer choice (only
    the baseline rows' record layer reads it: the head sets span every layer).
    ``references``: the reference arms to run here (the triangle passes only those its own
    grid lacks; :func:`analysis.heads` reads the rest from ``records``/``generations``). The
    flags are the study's (the triangle's config is a heads config).
    """
    cfg = study.cfg
    tests = study.select("test")
    if not tests:
        raise ConfigError("the heads step needs test samples; use a corpus with some")
    prompts = study.select("generation") if cfg.generation else []
    measure_floor(study, tests)  # the study's own when it ran one (same parts: skipped)
    cost = {"plain": 0.0, "attribution": 0.0, "knockouts": 0.0, "prompts": 0}
    sweep = run_sweep(study, tests, cost)
    selection = select_heads(sweep, k)
    masses = sweep_masses(sweep)
    if prompts:
        t0 = time.perf_counter()
        masses.update(probe_masses(study, prompts))
        cost["generation_masses"] = time.perf_counter() - t0
    try:
        sets, control = head_sets([*tests, *prompts], masses, selection, seed=cfg.seed,
                                  draws=cfg.heads_draws, factor=cfg.heads_factor,
                                  model=study.model_name)  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _write(study, "heads_selection", selection, SELECTION_ORDER, SELECTION_KEYS)
    _write(study, "heads_control", control, CONTROL_ORDER, CONTROL_KEYS)
    arms = head_arms(cfg.rows, cfg.targets, cfg.heads_draws) + list(references)
    n_layers = study.handle.n_layers

    def plan(samples: Sequence[Prepared]) -> list:
        layer_of = choice.layers_of([p.id for p in samples])
        return conditions.plan_units(samples, arms, layer_of=layer_of, n_layers=n_layers,
                                     heads=sets)  # fmt: skip

    units = plan(tests)
    t0 = time.perf_counter()
    run_records(study, units, experiment="heads", desc="heads records", table="heads_records")
    cost["held_out_records"] = time.perf_counter() - t0
    n_units = len(units)
    if prompts:
        gen_units = plan(prompts)
        n_units += len(gen_units)
        t0 = time.perf_counter()
        run_generation(study, gen_units, experiment="heads", table="heads_generations")
        cost["generation"] = time.perf_counter() - t0
    study.run.update_manifest(heads_cost=_cost_note(cost, k=k, n_units=n_units))


def _write(study: Study, table: str, df: pd.DataFrame, order: list[str], keys: list[str]) -> None:
    """A small derived table, rewritten whole (it is recomputed from the sweep on resume)."""
    key = "all"
    study.run.write_part(table, key, df)
    study.run.assemble(table, order, keys)


def _cost_note(cost: dict[str, float], *, k: int, n_units: int) -> dict[str, Any]:
    import os

    import torch

    plain = cost["plain"]
    note: dict[str, Any] = {
        "k": k, "prompts_timed": int(cost["prompts"]), "held_out_units": n_units,
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "seconds": {name: round(v, 3) for name, v in cost.items() if name != "prompts"},
    }  # fmt: skip
    if plain > 0:
        sweep = cost["attribution"] + cost["knockouts"]
        note["ratio_to_plain_forward"] = {
            "attribution": round(cost["attribution"] / plain, 2),
            "knockouts": round(cost["knockouts"] / plain, 2),
            "sweep": round(sweep / plain, 2),
        }
    return note


def main(cfg: Config) -> Path:
    """Run the heads experiment and its analysis; return the run directory."""
    if cfg.generation:
        resolve_execute(cfg.execute)  # --execute sandbox without a sandbox: exit 2 first
    if cfg.heads == 0:
        raise ConfigError("--heads 0 runs no held-out test; give K >= 1 (default 3)")

    def check(handle: ModelHandle) -> None:
        resolve_k(cfg.heads, handle, auto=False)

    study = open_study(cfg, "heads", ("test", "generation"), cfg.to_dict(), check_model=check)
    k = resolve_k(cfg.heads, study.handle, auto=False)
    choice = resolve_layer(study, ("test",), calibration=False, note_choice=True)
    run_heads(study, choice, k=k,
              references=reference_arms(cfg.rows, cfg.targets, cfg.heads_factor))  # fmt: skip
    from analysis.report import analyze

    study.run.finish()
    analyze(study.run.path)
    return study.run.path
