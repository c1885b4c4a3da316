"""The KL noise floor: how far apart two unedited passes over identical inputs land.

The same prompts run twice with nothing edited, in a different batch composition and padding
(the second pass in reverse order with another batch size), and the KL between the two
next-token distributions at each prompt's prediction position is recorded
(``noise_floor.parquet``). An edit whose KL stays at this floor has not been shown to reach the
output (analysis.reach). Edited rows are compared with an unedited row of the *same* pass, so
their KL needs no floor to be exact; the floor says how small a KL is indistinguishable from
the numerical noise of batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from experiments.study import Prepared, Study, run_chunks
from plip_nn.edits import Condition

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["measure_floor"]


def measure_floor(study: Study, samples: Sequence[Prepared]) -> pd.DataFrame:
    """KL between two unedited passes of every sample in other batch compositions."""
    import pandas as pd

    # torch loads when the experiment runs, not with the CLI
    from plip_nn.kernels import kl_rows
    from plip_nn.trace import Item
    from plip_nn.trace import run as run_items

    cfg = study.cfg
    other = cfg.batch_size + 3  # a different batch size: other neighbours and padding

    def work(chunk: list[Prepared]) -> pd.DataFrame:
        items = [
            Item(key=p.id, sample_id=p.id, input_ids=p.input_ids,
                 condition=Condition(name="baseline"), predict_at=p.positions.predict_at)
            for p in chunk
        ]  # fmt: skip
        first = run_items(study.handle, items, batch_size=cfg.batch_size, remote=cfg.remote,
                          keep_logprobs=True)  # fmt: skip
        second = run_items(study.handle, items[::-1], batch_size=other, remote=cfg.remote,
                           keep_logprobs=True)[::-1]  # fmt: skip
        rows = []
        for p, a, b in zip(chunk, first, second, strict=True):
            assert a.logprobs is not None and b.logprobs is not None
            kl = float(kl_rows(a.logprobs[None], b.logprobs[None])[0])
            rows.append({
                "model": study.model_name, "sample_id": p.id, "language": p.language,
                "kind": p.kind, "kl": max(kl, 0.0), "kl_raw": kl,
                "top1_same": a.top1_condition == b.top1_condition,
                "batch_sizes": f"{cfg.batch_size},{other}",
            })  # fmt: skip
        return pd.DataFrame(rows)

    run_chunks(study, "noise_floor", list(samples), lambda p: p.id, work, desc="noise floor",
               batches_per_part=8)  # fmt: skip
    return study.run.assemble("noise_floor", ["language", "kind", "sample_id"], ["sample_id"])
