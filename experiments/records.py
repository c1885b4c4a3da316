"""Rows of the tidy tables (docs/RECORDS.md) from engine results. No statistics here."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from experiments.conditions import condition_op
from experiments.study import Prepared, run_chunks
from plip_nn.edits import Condition, Probe
from plip_nn.trace import Item, ItemResult
from plip_nn.trace import run as run_items

__all__ = ["RECORD_ORDER", "record_row", "scan_rows"]

RECORD_ORDER = ["language", "kind", "sample_id", "condition_order", "layer"]
RECORD_KEYS = ["sample_id", "condition", "layer"]
SCAN_ORDER = ["language", "kind", "sample_id", "layer"]
SCAN_KEYS = ["sample_id", "layer"]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def record_row(
    *,
    experiment: str,
    model: str,
    seed: int,
    prepared: Prepared,
    condition: Condition,
    layer: int,
    condition_order: int,
    result: ItemResult,
) -> dict[str, Any]:
    """One ``records.parquet`` row.

    ``attn_*``/``mass_*`` are read on the *edited* edges (for ``random_control`` the random
    ones), averaged over the edited layers; ``target_attn_*`` are always the marker->function
    edges at the record's layer (all layers averaged for -1), so a control's side effect on the
    real targets is visible too. ``mass_removed`` (knockouts only, else NaN) is the attention
    mass the knockout took from the marker row: ``mass_baseline - mass_achieved``.
    """
    op, factor = condition_op(condition)
    if condition.edits:
        readings = result.readings
        attn_b = _mean([r.level_before for r in readings])
        attn_a = _mean([r.level_after for r in readings])
        mass_b = _mean([r.mass_before for r in readings])
        mass_a = _mean([r.mass_after for r in readings])
        n_edges = len(condition.edits[0].sources) * len(condition.edits[0].targets)
    else:
        levels = list(result.probe_baseline.values())
        attn_b = attn_a = _mean([lv for lv, _ in levels])
        mass_b = mass_a = _mean([m for _, m in levels])
        n_edges = 0
    tb = list(result.probe_baseline.values())
    tc = list(result.probe_condition.values())
    return {
        "experiment": experiment,
        "condition": condition.name,
        "condition_order": condition_order,
        "op": op,
        "factor": float(factor),
        "model": model,
        "sample_id": prepared.id,
        "language": prepared.language,
        "kind": prepared.kind,
        "layer": int(layer),
        "n_edges": int(n_edges),
        "n_tokens": len(prepared.input_ids),
        "source": prepared.positions.source,
        "attn_baseline": attn_b,
        "attn_achieved": attn_a,
        "mass_baseline": mass_b,
        "mass_achieved": mass_a,
        "mass_removed": mass_b - mass_a if op == "knockout" else math.nan,
        "target_attn_baseline": _mean([lv for lv, _ in tb]),
        "target_attn_condition": _mean([lv for lv, _ in tc]),
        "kl": float(result.kl),
        "top1_same": bool(result.top1_same),
        "ppl_baseline": float(result.ppl_baseline),
        "ppl_condition": float(result.ppl_condition),
        "edit": condition.to_json(),
        "seed": int(seed),
    }


def scan_rows(*, model: str, prepared: Prepared, result: ItemResult) -> list[dict[str, Any]]:
    """``layer_scan.parquet`` rows (one per layer) from a baseline item with an all-layer probe."""
    return [
        {
            "model": model,
            "sample_id": prepared.id,
            "language": prepared.language,
            "kind": prepared.kind,
            "layer": int(layer),
            "attn_level": float(level),
            "attn_mass": float(mass),
            "n_targets": len(prepared.positions.targets),
        }
        for layer, (level, mass) in sorted(result.probe_baseline.items())
    ]


def run_records(
    study: Any,
    units: list[tuple[Prepared, Condition, int, int]],
    *,
    experiment: str,
    probe_layer: Any,
    chunk_size: int | None = None,
    desc: str = "records",
) -> pd.DataFrame:
    """Run (sample, condition, layer, order) units through the engine into ``records``.

    Args:
        study: the open :class:`experiments.study.Study`.
        units: what to run, in a fixed order (it defines the chunks).
        experiment: value of the ``experiment`` column.
        probe_layer: ``f(layer) -> tuple of layers`` whose marker->function attention is read
            as ``target_attn_*`` (and as ``attn_*`` for baseline rows).
        chunk_size: units per part (default: a few batches).
        desc: progress-bar label.
    """
    cfg = study.cfg

    def key(u: tuple[Prepared, Condition, int, int]) -> str:
        p, cond, layer, _ = u
        return f"{p.id}/{cond.name}/{layer}"

    def work(chunk: list[tuple[Prepared, Condition, int, int]]) -> pd.DataFrame:
        items = []
        for u in chunk:
            p, cond, layer, _ = u
            probe = Probe(
                layers=tuple(probe_layer(layer)),
                sources=(p.positions.source,),
                targets=p.positions.targets,
            )
            items.append(
                Item(
                    key=key(u),
                    sample_id=p.id,
                    input_ids=p.input_ids,
                    condition=cond,
                    probe=probe,
                )
            )
        results = run_items(study.handle, items, batch_size=cfg.batch_size, remote=cfg.remote)
        rows = [
            record_row(
                experiment=experiment,
                model=study.model_name,
                seed=cfg.seed,
                prepared=p,
                condition=cond,
                layer=layer,
                condition_order=order,
                result=res,
            )
            for (p, cond, layer, order), res in zip(chunk, results, strict=True)
        ]
        return pd.DataFrame(rows)

    run_chunks(
        study,
        "records",
        units,
        key,
        work,
        chunk_size=chunk_size or max(8, cfg.batch_size * 4),
        desc=desc,
    )
    return study.run.assemble("records", RECORD_ORDER, RECORD_KEYS)
