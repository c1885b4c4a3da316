"""Which heads carry it: per-head attribution, per-head knockouts and a held-out top-k test.

In the default scope (``--rows``/``--targets``: the marker span's rows, the identifiers'
keys), on the generation prompts (they end right after the marker, so the prediction is the
last token; every metric is read there):

1. **Sweep** -> ``head_sweep.parquet``, one row per (prompt, layer, head). One forward and one
   backward per batch give every head's attribution (:func:`plip_nn.attribute_heads`: the
   estimated change of log p of the greedy token when that head's edges alone are knocked out)
   and its attention level and mass; then each head's edges are knocked out alone, one batch
   row per (prompt, layer, head) (:func:`plip_nn.run`, which adds one unedited reference row
   per prompt), for the KL and the measured change of log p(top-1).
2. **Selection** -> ``heads_selection.parquet``. The halves are those of the layer choice
   (:func:`plip_nn.scope.function_half`, seeded, by function): per language, the prompts of
   half ``h`` are tested with the ``K`` heads of *their* layer (chosen on the other half,
   :mod:`experiments.calibrate`) whose knockout lowers log p(top-1) most on average over the
   *other* half's prompts (ties: the larger KL). No prompt is tested with heads or a layer
   chosen on itself, and every prompt is tested once (cross-fitting).
   The heads are chosen **within the chosen layer**, not over all (layer, head) pairs: the
   study's knockout scope is that layer, so the test asks which of *its* heads carry the
   effect, against the same scope at every head (``knockout@rows/targets/L``), and the
   random heads come from the same layer. The sweep still covers every layer (the heatmaps).
3. **Control** -> ``heads_control.parquet``: per prompt and draw, ``K`` other heads of the same
   layer whose summed marker->function mass (the mass a knockout removes) is closest to the
   top-K's (:func:`experiments.conditions.match_keys`, seeded per prompt and draw).
4. **Held-out test** -> ``heads_records.parquet`` (single passes) and ``heads_generations.parquet``:
   ``knockout_topk``, ``random_heads#d`` and ``steer_topk`` (Scale of the top-K heads' edges at
   ``--heads-factor``, PASTA-style), plus the references the comparison needs (``baseline``,
   the layer's knockout at every head, Scale of every head at the same factor) unless the
   calling study already runs them.
5. **Cost** -> the manifest's ``heads_cost``: seconds of each part, and of one plain HF
   forward over the same prompts in the same batches, measured side by side.

The KL noise floor of the same prompts (``noise_floor.parquet``, :mod:`experiments.floor`)
tells which heads' knockouts reach the prediction at all.

The statistics (CIs, tests, verdicts, heads.parquet) are :mod:`analysis.heads`.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from experiments import conditions
from experiments.calibrate import LayerChoice, resolve_layer
from experiments.conditions import Arm, HeadSets, match_keys
from experiments.control import CONTROL_TOLERANCE
from experiments.floor import measure_floor
from experiments.generate import GenerationFlags, resolve_execute, run_generation
from experiments.records import run_records
from experiments.study import CommonConfig, ConfigError, Prepared, Study, open_study, run_chunks
from plip_nn.edits import AttentionEdit, Condition, Knockout, Probe
from plip_nn.scope import BASELINE, CHOSEN, Scope, function_half, window_label

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from plip_nn.models import ModelHandle
    from plip_nn.trace import Remote

__all__ = [
    "AUTO_MAX_HEADS",
    "DEFAULT_K",
    "Config",
    "HeadsFlags",
    "head_sets",
    "main",
    "reference_arms",
    "resolve_k",
    "run_heads",
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
            edges); the all-heads comparison is scale_<factor> at the chosen layer.
        heads_draws: seeded draws of the K random heads matched on marker->function mass.
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
    """What the held-out test compares with: baseline, the layer's knockout at every head and
    Scale of every head at ``factor`` (at the chosen layer)."""
    scope = Scope(rows, targets, CHOSEN)
    return [Arm(BASELINE), Arm(conditions.KNOCKOUT, scope),
            Arm(conditions.scale_name(factor), scope)]  # fmt: skip


def head_arms(rows: str, targets: str, draws: int) -> list[Arm]:
    """The held-out conditions: top-K knockout, its random heads, top-K steering."""
    scope = Scope(rows, targets, CHOSEN)
    return (
        [Arm(conditions.TOPK_KNOCKOUT, scope)]
        + [Arm(conditions.RANDOM_HEADS, scope, d) for d in range(draws)]
        + [Arm(conditions.TOPK_STEER, scope)]
    )


def _plain_seconds(handle: ModelHandle, prompts: Sequence[Prepared], batch_size: int) -> float:
    """Seconds of one plain HF forward over ``prompts`` in batches of ``batch_size``."""
    # torch loads when the experiment runs, not with the CLI
    import torch

    from plip_nn.padding import pad_batch, pad_id

    pad = pad_id(handle)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            inputs, _ = pad_batch([p.input_ids for p in prompts[i : i + batch_size]], pad,
                                  handle.device)  # fmt: skip
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
            src, tgt = pos.rows(cfg.rows), pos.target_set(cfg.targets)
            probe_items.append(Item(
                key=p.id, sample_id=p.id, input_ids=p.input_ids,
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
                        key=f"{p.id}|{layer}|{head}", sample_id=p.id, input_ids=p.input_ids,
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
        rows = []
        for p, a in zip(chunk, attrs, strict=True):
            pos = p.positions
            for layer in layers:
                for head in range(n_heads):
                    r = measured[f"{p.id}|{layer}|{head}"]
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
                        "kl": r.kl, "dlogp_top1": r.dlogp_top1, "top1_same": r.top1_same,
                        "top1_baseline": r.top1_baseline, "top1_attribution": a.top1,
                        "logp_top1": a.logp_top1, "seed": cfg.seed,
                    })  # fmt: skip
        return pd.DataFrame(rows)

    run_chunks(study, "head_sweep", list(prompts), lambda p: p.id, work, desc="heads sweep")
    return study.run.assemble("head_sweep", SWEEP_ORDER, SWEEP_KEYS)


def select_heads(sweep: pd.DataFrame, by_half: dict[int, int], k: int) -> pd.DataFrame:
    """The top-``k`` heads per language and tested half (module docstring, step 2).

    Half ``h`` gets the heads of layer ``by_half[h]`` whose knockout lowers log p(top-1) most
    on average over the prompts of the other half (ties: the larger mean KL, then the lower
    head index). A half whose other half has no prompt of the language gets none.
    One row per (language, half, rank).
    """
    import pandas as pd

    rows = []
    for language in sorted(set(sweep["language"])):
        of_lang = sweep[sweep["language"] == language]
        for half in (0, 1):
            layer = by_half[half]
            train = of_lang[(of_lang["half"] == 1 - half) & (of_lang["layer"] == layer)]
            if train.empty:
                log.warning("heads: no %s prompts in half %d to choose half %d's heads from",
                            language, 1 - half, half)  # fmt: skip
                continue
            score = train.groupby("head").agg(
                dlogp=("dlogp_top1", "mean"), kl=("kl", "mean"), n=("sample_id", "nunique")
            )
            score = score.reset_index().sort_values(
                ["dlogp", "kl", "head"], ascending=[True, False, True]
            )
            for rank, r in enumerate(score.head(k).itertuples(), start=1):
                rows.append({
                    "model": str(train["model"].iloc[0]), "language": language, "half": half,
                    "chosen_on_half": 1 - half, "layer": int(layer), "rank": rank,
                    "head": int(r.head), "mean_dlogp": float(r.dlogp), "mean_kl": float(r.kl),
                    "n_prompts": int(r.n),
                })  # fmt: skip
    return pd.DataFrame(rows)


def head_rng(sample_id: str, seed: int, layer: int, draw: int) -> np.random.Generator:
    """The seeded generator of one random-heads draw (reruns draw the same heads)."""
    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(sample_id.encode("utf-8")), layer, draw,
                                  zlib.crc32(b"random_heads")])  # fmt: skip


def head_sets(
    prompts: Sequence[Prepared], sweep: pd.DataFrame, selection: pd.DataFrame, *,
    layer_of: dict[str, int], seed: int, draws: int, factor: float,
) -> tuple[HeadSets, pd.DataFrame]:  # fmt: skip
    """Per prompt: its top-K heads and ``draws`` mass-matched random draws (step 3), and the
    ``heads_control`` rows that record each match.

    With few heads per layer the closest set is often the same for every draw; a draw that
    repeats an earlier draw's heads is recorded (``same_as_draw``) but not put in the head
    sets, so it is not run twice: the analysis reads the earlier draw's rows for it.
    """
    import pandas as pd

    top_of = {
        (str(lang), int(half)): tuple(int(h) for h in g.sort_values("rank")["head"])
        for (lang, half), g in selection.groupby(["language", "half"])
    } if len(selection) else {}  # fmt: skip
    mass = {
        (str(r.sample_id), int(r.layer), int(r.head)): float(r.attn_mass)
        for r in sweep.itertuples()
    }
    n_heads = int(sweep["n_heads"].iloc[0])
    top: dict[str, tuple[int, ...]] = {}
    random: dict[tuple[str, int], tuple[int, ...]] = {}
    rows = []
    for p in prompts:
        chosen = top_of.get((p.language, function_half(p.id, seed)))
        if not chosen:
            continue
        layer = layer_of[p.id]
        pool = [h for h in range(n_heads) if h not in chosen]
        key_mass = {h: mass[(p.id, layer, h)] for h in range(n_heads)}
        goal = sum(key_mass[h] for h in chosen)
        top[p.id] = chosen
        first_of: dict[tuple[int, ...], int] = {}
        for d in range(draws):
            m = match_keys(pool, key_mass, len(chosen), goal, head_rng(p.id, seed, layer, d),
                           tolerance=CONTROL_TOLERANCE)  # fmt: skip
            same = first_of.setdefault(m.keys, d)
            if same == d:  # a repeated set is not run again (its rows are the first draw's)
                random[(p.id, d)] = m.keys
            rows.append({
                "model": str(sweep["model"].iloc[0]), "sample_id": p.id, "language": p.language,
                "half": function_half(p.id, seed), "layer": layer, "draw": d,
                "top_heads": json.dumps(list(chosen)), "control_heads": json.dumps(list(m.keys)),
                "target_mass": m.target_mass, "control_mass": m.control_mass,
                "mass_ratio": m.ratio, "within_tolerance": m.within, "count_matched": m.count_ok,
                "tolerance": CONTROL_TOLERANCE, "same_as_draw": -1 if same == d else same,
            })  # fmt: skip
    return HeadSets(top=top, random=random, factor=float(factor)), pd.DataFrame(rows)


def run_heads(
    study: Study[Config], choice: LayerChoice, *, k: int, references: Sequence[Arm]
) -> None:
    """The heads step (module docstring): sweep, selection, control, held-out test, cost.

    ``k``: K, resolved for the model (:func:`resolve_k`). ``references``: the reference arms to
    run here (the triangle passes only those its own grid lacks; :func:`analysis.heads` reads
    the rest from ``records``/``generations``). The flags are the study's (the triangle's
    config is a heads config).
    """
    cfg = study.cfg
    prompts = study.select("generation")
    if not prompts:
        raise ConfigError("the heads step needs generation prompts; use a corpus with some")
    measure_floor(study, prompts)  # the study's own when it ran one (same parts: skipped)
    cost = {"plain": 0.0, "attribution": 0.0, "knockouts": 0.0, "prompts": 0}
    sweep = run_sweep(study, prompts, cost)
    selection = select_heads(sweep, choice.by_half, k)
    layer_of = choice.layers_of([p.id for p in prompts])
    sets, control = head_sets(prompts, sweep, selection, layer_of=layer_of, seed=cfg.seed,
                              draws=cfg.heads_draws, factor=cfg.heads_factor)  # fmt: skip
    _write(study, "heads_selection", selection, SELECTION_ORDER, SELECTION_KEYS)
    _write(study, "heads_control", control, CONTROL_ORDER, CONTROL_KEYS)
    arms = head_arms(cfg.rows, cfg.targets, cfg.heads_draws) + list(references)
    units = conditions.plan_units(prompts, arms, layer_of=layer_of,
                                  n_layers=study.handle.n_layers, heads=sets)  # fmt: skip
    t0 = time.perf_counter()
    run_records(study, units, experiment="heads", desc="heads records", table="heads_records")
    cost["held_out_records"] = time.perf_counter() - t0
    if cfg.generation:
        t0 = time.perf_counter()
        run_generation(study, units, experiment="heads", table="heads_generations")
        cost["generation"] = time.perf_counter() - t0
    study.run.update_manifest(heads_cost=_cost_note(cost, k=k, n_units=len(units)))


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
