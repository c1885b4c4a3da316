"""The mass-matched random controls: measure the rows' attention per key, pick keys per layer.

For each sample and each (rows, targets) of the study's knockout scopes, one unedited forward
pass reads, at every layer, the head-mean attention of those rows (mean over rows) on every key
of the control pool (:meth:`plip_nn.positions.TokenPositions.control_pool`: before the rows,
outside the signature and the targets) and on the targets. For every layer and draw,
:func:`experiments.conditions.match_keys` then picks as many pool keys as there are targets
whose summed attention is within the tolerance of the targets' -- or, when no set of that size
can, as many keys as it takes (``count_matched`` False) -- or else the closest achievable,
seeded per (sample, scope, layer, draw). A control of a multi-layer scope edits each layer
with that layer's keys, so its removed mass is matched layer by layer. Draw ``d`` of
``random_control`` and of ``inert_control`` edit the same keys.

One row per (sample, rows, targets, layer, draw) goes to ``control_match.parquet``
(resumable): the masses, their ratio, whether it is within the tolerance, whether the count
matches, the share of the rows' attention on token 0 and the chosen keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from experiments.conditions import ControlKeys, control_rng, match_keys
from experiments.study import Prepared, Study, run_chunks
from plip_nn.edits import Condition, Probe

if TYPE_CHECKING:
    import pandas as pd

    from plip_nn.trace import Item

__all__ = ["CONTROL_TOLERANCE", "match_controls"]

CONTROL_TOLERANCE = 0.10
ORDER = ["language", "kind", "sample_id", "rows", "targets", "layer", "draw"]
KEYS = ["sample_id", "rows", "targets", "layer", "draw"]


def _items(p: Prepared, rows: str, targets: Sequence[str], layers: tuple[int, ...]) -> list[Item]:
    """Baseline items reading, at ``layers``, the rows' mass on each pool key and target set."""
    # torch loads when the experiment runs, not with the CLI
    from plip_nn.trace import Item

    pos = p.positions
    src = pos.rows(rows)
    reads: list[tuple[str, tuple[int, ...]]] = [
        (f"k{j}", (j,)) for j in sorted({0, *pos.control_pool(rows)})
    ]
    reads += [(f"T{t}", pos.target_set(t)) for t in targets]
    return [
        Item(
            key=f"{p.id}|{rows}|{name}",
            sample_id=p.id,
            input_ids=p.input_ids,
            condition=Condition(name="baseline"),
            probe=Probe(layers=layers, sources=src, targets=keys),
        )
        for name, keys in reads
    ]


def match_controls(
    study: Study,
    samples: Sequence[Prepared],
    scopes: Sequence[tuple[str, str]],
    draws: int,
) -> ControlKeys:
    """Mass-matched control keys for every sample, (rows, targets) scope, layer and draw.

    Writes ``control_match.parquet`` and returns (sample id, rows, targets, layer, draw) ->
    keys (:data:`experiments.conditions.ControlKeys`).
    """
    import pandas as pd

    # torch loads when the experiment runs, not with the CLI
    from plip_nn.trace import run as run_items

    layers = tuple(range(study.handle.n_layers))
    by_rows: dict[str, list[str]] = {}
    for r, t in dict.fromkeys(scopes):
        by_rows.setdefault(r, []).append(t)
    seed = study.cfg.seed

    def work(chunk: list[Prepared]) -> pd.DataFrame:
        items = [it for p in chunk for r, ts in by_rows.items() for it in _items(p, r, ts, layers)]
        results = {
            res.key: res
            for res in run_items(
                study.handle, items, batch_size=study.cfg.batch_size, remote=study.cfg.remote
            )
        }
        out: list[dict[str, Any]] = []
        for p in chunk:
            pos = p.positions
            for r, ts in by_rows.items():
                pool = pos.control_pool(r)

                def mass(name: str, layer: int, r: str = r, sid: str = p.id) -> float:
                    return results[f"{sid}|{r}|{name}"].probe_baseline[layer][1]

                for t in ts:
                    # never a key of this scope's own targets (e.g. a `mentions` target outside
                    # the signature): the inert control protects them
                    banned = set(pos.target_set(t))
                    pool_t = tuple(k for k in pool if k not in banned)
                    n_targets = len(pos.target_set(t))
                    for layer in layers:
                        key_mass = {j: mass(f"k{j}", layer) for j in pool}
                        goal = mass(f"T{t}", layer)
                        for d in range(draws):
                            m = match_keys(
                                pool_t, key_mass, n_targets, goal,
                                control_rng(p.id, seed, r, t, layer, d),
                                tolerance=CONTROL_TOLERANCE,
                            )  # fmt: skip
                            out.append({
                                "model": study.model_name, "sample_id": p.id,
                                "language": p.language, "kind": p.kind, "rows": r,
                                "targets": t, "layer": layer, "draw": d,
                                "n_targets": n_targets, "n_keys": len(m.keys),
                                "pool_size": len(pool_t), "target_mass": m.target_mass,
                                "control_mass": m.control_mass, "mass_ratio": m.ratio,
                                "within_tolerance": m.within, "count_matched": m.count_ok,
                                "tolerance": CONTROL_TOLERANCE,
                                "token0_share": mass("k0", layer),
                                "targets_include_token0": 0 in pos.target_set(t),
                                "target_keys": json.dumps(list(pos.target_set(t))),
                                "control_keys": json.dumps(list(m.keys)),
                            })  # fmt: skip
        return pd.DataFrame(out)

    run_chunks(study, "control_match", list(samples), lambda p: p.id, work, desc="control")
    table = study.run.assemble("control_match", ORDER, KEYS)
    return {
        (str(r.sample_id), str(r.rows), str(r.targets), int(r.layer), int(r.draw)): tuple(
            json.loads(r.control_keys)
        )
        for r in table.itertuples()
    }
