"""Rows of the tidy tables (docs/RECORDS.md) from engine results. No statistics here."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from experiments.conditions import ALL_LAYERS, CONTROL_ARMS, KNOCKOUT, Unit, condition_op
from experiments.study import Prepared, Study, run_chunks
from plip_nn.edits import Probe
from plip_nn.scope import BASELINE, CHOSEN, Scope

if TYPE_CHECKING:
    import pandas as pd

    from analysis.preservation import Preservation
    from plip_nn.generate import GenerationResult
    from plip_nn.trace import Item, ItemResult

__all__ = [
    "GEN_KEYS",
    "GEN_ORDER",
    "RECORD_KEYS",
    "RECORD_ORDER",
    "SCAN_KEYS",
    "SCAN_ORDER",
    "generation_row",
    "readout_columns",
    "readout_row",
    "record_row",
    "run_records",
    "scan_rows",
]

RECORD_ORDER = ["language", "kind", "sample_id", "condition_order", "layer"]
RECORD_KEYS = ["sample_id", "condition", "layer"]
SCAN_ORDER = ["language", "kind", "sample_id", "rows", "targets", "layer"]
SCAN_KEYS = ["sample_id", "rows", "targets", "layer"]
GEN_ORDER = ["language", "sample_id", "condition_order", "decoding", "sample_index"]
GEN_KEYS = ["sample_id", "condition", "layer", "decoding", "sample_index"]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _unit_columns(experiment: str, model: str, unit: Unit) -> dict[str, Any]:
    """The leading columns that name a row: experiment, condition (arm, scope, draw), model
    and sample. Baseline rows carry no scope (empty strings) and draw -1, as non-controls do."""
    op, factor = condition_op(unit.condition)
    arm = unit.arm
    scope = arm.scope
    return {
        "experiment": experiment,
        "condition": unit.condition.name,
        "condition_order": unit.order,
        "arm": arm.arm,
        "scope": "" if scope is None else scope.label,
        "rows": "" if scope is None else scope.rows,
        "targets": "" if scope is None else scope.targets,
        "layers": "" if scope is None else scope.layers,
        "draw": -1 if arm.draw is None else int(arm.draw),
        "op": op,
        "factor": float(factor),
        "model": model,
        "sample_id": unit.sample.id,
        "language": unit.sample.language,
        "corpus_source": unit.sample.sample.source,
    }


def edit_json(unit: Unit) -> str:
    """The ``edit`` column: the condition's edits as JSON, each with its scope's ``rows``,
    ``target_set``, ``layer_scope`` and ``draw`` (``[]`` for baseline). Reading the edits back
    with :meth:`plip_nn.edits.Condition.from_json` ignores those keys."""
    scope = unit.arm.scope
    if scope is None:
        return unit.condition.to_json()
    extra = {"rows": scope.rows, "target_set": scope.targets, "layer_scope": scope.layers,
             "draw": unit.arm.draw}  # fmt: skip
    return json.dumps([{**e.to_dict(), **extra} for e in unit.condition.edits], sort_keys=True)


def probe_scope(unit: Unit, default: Scope) -> Scope:
    """Where a row's marker->function attention is read: its own scope (a control's: the real
    targets of the same rows and layers), or the default scope at the chosen layer."""
    return default if unit.arm.scope is None else unit.arm.scope


def record_row(
    *, experiment: str, model: str, seed: int, unit: Unit, result: ItemResult
) -> dict[str, Any]:
    """One ``records.parquet`` row: ``unit`` run through the engine (``result``).

    ``attn_*``/``mass_*`` are read on the *edited* edges (for ``random_control`` the random
    ones), averaged over the edited layers; ``target_attn_*`` are always the marker->function
    edges at the record's layer (all layers averaged for -1), so a control's side effect on the
    real targets is visible too. ``mass_removed`` (knockouts only, else NaN) is the attention
    mass the knockout took from the marker row: ``mass_baseline - mass_achieved``.

    The readout (:func:`readout_columns`) is at ``predict_at``: the call on a test sample,
    after the marker on a generation prompt.
    """
    prepared, condition = unit.sample, unit.condition
    names = _unit_columns(experiment, model, unit)
    call_only = call_only_length(unit) is not None
    if condition.edits:
        readings = result.readings
        attn_b = _mean([r.level_before for r in readings])
        attn_a = _mean([r.level_after for r in readings])
        layers = sorted({r.layer for r in readings})
        mass_b = _mean([_layer_mass(condition, readings, lay, True) for lay in layers])
        mass_a = _mean([_layer_mass(condition, readings, lay, False) for lay in layers])
        first = min(condition.edits[0].layers)
        at_first = [e for e in condition.edits if first in e.layers]
        n_edges = sum(len(e.sources) * len(e.targets) for e in at_first)
        n_rows = len({s for e in at_first for s in e.sources})
    else:
        levels = list(result.probe_baseline.values())
        attn_b = attn_a = _mean([lv for lv, _ in levels])
        mass_b = mass_a = _mean([m for _, m in levels])
        n_edges = n_rows = 0
    tb = list(result.probe_baseline.values())
    tc = list(result.probe_condition.values())
    return {
        **names,
        "kind": prepared.kind,
        "layer": int(unit.record_layer),
        "n_edges": int(n_edges),
        "n_rows": int(n_rows),
        "n_tokens": len(prepared.input_ids),
        "source": prepared.positions.source,
        "predict_at": _read_at(prepared, result),
        "n_scored_tokens": 0 if call_only else int(result.n_tokens),
        "attn_baseline": attn_b,
        "attn_achieved": attn_a,
        "mass_baseline": mass_b,
        "mass_achieved": mass_a,
        "mass_removed": mass_b - mass_a if names["op"] in ("knockout", "inert") else math.nan,
        # inert control: the largest relative move of a protected target (<= 0.02, checked)
        "target_rel_dev": max(
            (r.target_rel_dev for r in result.readings if r.target_rel_dev is not None),
            default=math.nan,
        ),
        "target_attn_baseline": _mean([lv for lv, _ in tb]),
        "target_attn_condition": _mean([lv for lv, _ in tc]),
        "kl": float(result.kl),
        "top1_same": bool(result.top1_same),
        "dlogp_top1": float(result.dlogp_top1),
        "ppl_baseline": math.nan if call_only else float(result.ppl_baseline),
        "ppl_condition": math.nan if call_only else float(result.ppl_condition),
        **readout_columns(prepared, result),
        **({"logppl_baseline": math.nan, "logppl_condition": math.nan} if call_only else {}),
        "call_only": call_only,
        "edit": edit_json(unit),
        "seed": int(seed),
    }


def call_only_length(unit: Unit) -> int | None:
    """The tokens a unit's pass needs when only its call readout is used, else None.

    On a test sample with a call, a Scale/SetValue arm and every control draw after the first
    are read only at the call (the log-PPL of H1 pairs the knockout with draw 0, and the
    baseline, the knockouts and draw 0 keep the whole test): the pass then stops at the call's
    prediction row. Attention is causal, so the readout there, and every edit of the rows up to
    it, are exactly those of the whole sequence; edits of later rows cannot reach it and are
    left out (:func:`clip_condition`). The records say so (``call_only``; no perplexity).
    """
    pos = unit.sample.positions
    if unit.sample.kind != "test" or pos.call_at is None or pos.gold_token is None:
        return None
    arm = unit.arm.arm
    if arm in (BASELINE, KNOCKOUT) or (arm in CONTROL_ARMS and not unit.arm.draw):
        return None
    cut = pos.call_at + 1
    if not any(s < cut for e in unit.condition.edits for s in e.sources):
        return None
    return cut


def clip_condition(condition: Any, length: int) -> Any:
    """``condition`` with every edit's query rows cut to rows before ``length`` (an edit left
    with no row is dropped)."""
    from dataclasses import replace

    edits = []
    for e in condition.edits:
        rows = tuple(s for s in e.sources if s < length)
        if rows:
            edits.append(e if len(rows) == len(e.sources) else replace(e, sources=rows))
    return replace(condition, edits=tuple(edits))


def _layer_mass(condition: Any, readings: Sequence[Any], layer: int, before: bool) -> float:
    """The edited mass at ``layer``: summed over the edits that share their rows (a control
    edits each layer with its own keys), averaged over row groups weighted by their rows (a
    ``mentions`` scope splits the rows by the targets they can see)."""
    by_rows: dict[tuple[int, ...], float] = {}
    for r in readings:
        if r.layer == layer:
            src = condition.edits[r.edit].sources
            by_rows[src] = by_rows.get(src, 0.0) + (r.mass_before if before else r.mass_after)
    n = sum(len(src) for src in by_rows)
    return sum(len(src) * m for src, m in by_rows.items()) / n if n else math.nan


def readout_row(prepared: Prepared) -> int:
    """The row read for KL, top-1 and the gold token: the call's prediction row on a test
    sample with a call, else the prediction after the marker."""
    pos = prepared.positions
    return pos.readout_at if prepared.kind == "test" else pos.predict_at


def _read_at(prepared: Prepared, result: ItemResult) -> int:
    """The row the result was read at: the call where it read a gold token there."""
    call_at = prepared.positions.call_at
    return (
        call_at if result.gold_token >= 0 and call_at is not None else prepared.positions.predict_at
    )


def readout_columns(prepared: Prepared, result: ItemResult) -> dict[str, Any]:
    """The readout columns (docs/RECORDS.md): ``readout`` (``call`` / ``after_marker`` /
    ``""`` on false markers), the call row and gold token, the gold token's log p and rank in
    the baseline and the condition, the baseline's top-1 probability and the log-perplexity in
    nats per scored token."""
    # "call" where the item read a gold token at the call (run_records, on test samples)
    call_at = prepared.positions.call_at if result.gold_token >= 0 else None
    has_call = call_at is not None
    readout = (
        "call"
        if has_call
        else {"test": "after_marker", "generation": "after_marker"}.get(prepared.kind, "")
    )
    n = max(int(result.n_tokens), 1)
    dlogp = result.logp_gold_condition - result.logp_gold_baseline
    return {
        "readout": readout,
        "call_at": -1 if call_at is None else int(call_at),
        "gold_token": int(result.gold_token) if has_call else -1,
        "logp_gold_baseline": float(result.logp_gold_baseline),
        "logp_gold_condition": float(result.logp_gold_condition),
        "dlogp_gold": 0.0 if not result.readings and has_call else float(dlogp),
        "rank_gold_baseline": int(result.rank_gold_baseline),
        "rank_gold_condition": int(result.rank_gold_condition),
        "p_top1_baseline": float(result.p_top1_baseline),
        "logppl_baseline": float(result.nll_baseline) / n,
        "logppl_condition": float(result.nll_condition) / n,
    }


def scan_rows(
    *, model: str, prepared: Prepared, result: ItemResult, rows: str, targets: str
) -> list[dict[str, Any]]:
    """``layer_scan.parquet`` rows (one per layer) of one scope (``rows``/``targets``) from a
    baseline item with an all-layer probe. ``n_keys`` is the number of keys the first row can
    attend to (its position + 1): uniform attention would give each key 1/n_keys."""
    pos = prepared.positions
    src = pos.rows(rows)
    return [
        {
            "model": model,
            "sample_id": prepared.id,
            "language": prepared.language,
            "kind": prepared.kind,
            "rows": rows,
            "targets": targets,
            "layer": int(layer),
            "attn_level": float(level),
            "attn_mass": float(mass),
            "n_targets": len(pos.target_set(targets)),
            "n_rows": len(src),
            "source": int(pos.source),
            "n_keys": int(src[0]) + 1,
        }
        for layer, (level, mass) in sorted(result.probe_baseline.items())
    ]


def generation_row(
    *,
    experiment: str,
    model: str,
    seed: int,
    unit: Unit,
    result: GenerationResult,
    text: str,
    stop_reason: str,
    preservation: Preservation,
) -> dict[str, Any]:
    """One ``generations.parquet`` row: ``unit`` generated (``result``), trimmed and scored.

    ``text`` is the continuation trimmed at ``stop_reason`` (``raw_text`` keeps it whole);
    ``attn_achieved`` is the mean achieved level over the steps that edited a row (NaN when
    none did, e.g. ``baseline``); the preservation flags are those of ``text``.
    """
    prepared = unit.sample
    fn = prepared.sample.function
    return {
        **_unit_columns(experiment, model, unit),
        "kind": prepared.kind,
        "layer": int(unit.record_layer),
        "seed": int(seed),
        "prompt": prepared.sample.code,
        "text": text,
        "raw_text": result.text,
        "tokens": list(result.new_token_ids),
        "n_new_tokens": len(result.new_token_ids),
        "stop_reason": stop_reason,
        "attn_achieved": _mean([v for v in result.step_levels if not math.isnan(v)]),
        "n_edited_steps": int(result.n_edited_steps),
        "edit": edit_json(unit),
        "function_name": fn.name,
        "arity": int(fn.arity),
        "calls_function": bool(preservation.calls_function),
        "arity_ok": bool(preservation.arity_ok),
        "valid": bool(preservation.valid),
        "preserved": bool(preservation.preserved),
        "executes": preservation.executes,
        "preservation_reason": preservation.reason,
    }


def run_records(
    study: Study,
    units: Sequence[Unit],
    *,
    experiment: str,
    desc: str = "records",
    table: str = "records",
) -> pd.DataFrame:
    """Run ``units`` through the engine into ``records`` (or ``table``); returns the assembled
    table.

    Each row reads the marker->function attention (``target_attn_*``, and ``attn_*`` for
    baseline rows) at its record layer, or at every layer for :data:`ALL_LAYERS`.

    Args:
        study: the open study.
        units: what to run, in a fixed order (it defines the parts).
        experiment: value of the ``experiment`` column.
        desc: progress-bar label.
        table: the table written (``records``; experiments.heads keeps its own).
    """
    import pandas as pd

    # torch loads when the experiment runs, not with the CLI
    from plip_nn.trace import Item
    from plip_nn.trace import run as run_items

    cfg = study.cfg
    n_layers = study.handle.n_layers
    default = Scope(cfg.rows, cfg.targets, CHOSEN)

    def item(u: Unit) -> Item:
        pos = u.sample.positions
        scope = probe_scope(u, default)
        if u.arm.arm == BASELINE or scope.layers == CHOSEN:
            layers: tuple[int, ...] = (u.record_layer,)
        else:
            layers = scope.layer_indices(u.record_layer, n_layers)
        if u.record_layer == ALL_LAYERS and u.arm.arm == BASELINE:
            layers = tuple(range(n_layers))
        ids, condition, sources = u.sample.input_ids, u.condition, pos.rows(scope.rows)
        cut = call_only_length(u)
        if cut is not None:
            ids, condition = ids[:cut], clip_condition(u.condition, cut)
            sources = tuple(r for r in sources if r < cut)
        return Item(
            key=u.key,
            sample_id=u.sample.id,
            input_ids=ids,
            condition=condition,
            probe=Probe(layers=layers, sources=sources, targets=pos.target_set(scope.targets)),
            # The readout: at the call on a test sample (its gold token: the name's first
            # token), after the marker elsewhere.
            predict_at=readout_row(u.sample),
            gold_token=pos.gold_token if u.sample.kind == "test" else None,
            # Only tokens after the marker can change under an edit of rows from the marker
            # on; a generation prompt has none, so its NLL covers the whole prompt.
            nll_from=None if u.sample.kind == "generation" or cut is not None else pos.predict_at,
        )

    def work(chunk: list[Unit]) -> pd.DataFrame:
        items = [item(u) for u in chunk]
        results = run_items(study.handle, items, batch_size=cfg.batch_size, remote=cfg.remote)
        rows = [
            record_row(
                experiment=experiment, model=study.model_name, seed=cfg.seed, unit=u, result=res
            )
            for u, res in zip(chunk, results, strict=True)
        ]
        return pd.DataFrame(rows)

    run_chunks(study, table, units, lambda u: u.key, work, desc=desc)
    return study.run.assemble(table, RECORD_ORDER, RECORD_KEYS)
