"""The mass-matched random control: measure the marker row's attention per key, pick keys.

For each sample, one unedited forward pass reads the head-mean attention of the marker row on
every key before it at the edited layer; :func:`experiments.conditions.mass_matched_targets`
then picks as many non-target keys as there are targets whose summed attention is within the
tolerance of the targets' (or the closest achievable). One row per sample goes to
``control_match.parquet`` (resumable): the masses, their ratio, whether it is within the
tolerance, the share of the marker's attention on token 0 and the chosen keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from experiments.conditions import mass_matched_targets
from experiments.study import Prepared, Study, run_chunks
from plip_nn.edits import Condition, Probe
from plip_nn.trace import Item
from plip_nn.trace import run as run_items

__all__ = ["CONTROL_TOLERANCE", "control_rows", "match_controls"]

CONTROL_TOLERANCE = 0.10
ORDER = ["language", "kind", "sample_id"]
KEYS = ["sample_id"]


def control_rows(
    *, model: str, prepared: Prepared, layer: int, key_mass: Sequence[float], seed: int
) -> dict[str, Any]:
    """One ``control_match.parquet`` row from the marker row's per-key baseline attention."""
    pos = prepared.positions
    m = mass_matched_targets(pos, key_mass, seed, tolerance=CONTROL_TOLERANCE)
    return {
        "model": model,
        "sample_id": prepared.id,
        "language": prepared.language,
        "kind": prepared.kind,
        "layer": int(layer),
        "n_edges": len(pos.targets),
        "target_mass": m.target_mass,
        "control_mass": m.control_mass,
        "mass_ratio": m.ratio,
        "within_tolerance": m.within,
        "tolerance": CONTROL_TOLERANCE,
        "token0_share": float(key_mass[0]),
        "targets_include_token0": 0 in pos.targets,
        "targets": json.dumps(list(pos.targets)),
        "control_keys": json.dumps(list(m.keys)),
    }


def match_controls(
    study: Study, samples: Sequence[Prepared], layer: int
) -> dict[str, tuple[int, ...]]:
    """Mass-matched ``random_control`` keys per sample id (writes ``control_match.parquet``)."""

    def work(chunk: list[Prepared]) -> pd.DataFrame:
        items = [
            Item(
                key=f"{p.id}/key{j}",
                sample_id=p.id,
                input_ids=p.input_ids,
                condition=Condition(name="baseline"),
                probe=Probe(layers=(layer,), sources=(p.positions.source,), targets=(j,)),
            )
            for p in chunk
            for j in range(p.positions.source)
        ]
        results = iter(
            run_items(study.handle, items, batch_size=study.cfg.batch_size, remote=study.cfg.remote)
        )
        rows = []
        for p in chunk:
            mass = [next(results).probe_baseline[layer][1] for _ in range(p.positions.source)]
            rows.append(
                control_rows(
                    model=study.model_name, prepared=p, layer=layer, key_mass=mass,
                    seed=study.cfg.seed,
                )
            )  # fmt: skip
        return pd.DataFrame(rows)

    run_chunks(
        study,
        "control_match",
        list(samples),
        lambda p: p.id,
        work,
        desc="control",
    )
    table = study.run.assemble("control_match", ORDER, KEYS)
    return {str(r.sample_id): tuple(json.loads(r.control_keys)) for r in table.itertuples()}
