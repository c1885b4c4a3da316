"""``run()`` against a plain HF eager forward over the same rows, side by side in one process.

Each case runs ``run()`` on 4 equal-length prompts with ``batch_size`` large enough for one
forward pass; that pass holds every edited row plus one unedited reference row per prompt. The
plain reference is one ``hf(**inputs)`` forward (eager attention, ``inference_mode``) over the
same number of rows of the same prompts, so the ratio is the engine's whole added cost: the
nnsight trace, the edits, their verification and the in-trace summaries (KL, NLL, top-1).
The floor is a bare nnsight trace over the same rows that only saves the logits: what any
nnsight-based engine pays before it edits anything.

Both variants alternate round-robin in the same process (:func:`benchmarks.timing.time_variants`),
so load on the shared machine hits them alike; the 1-minute load average is recorded.

Usage: ``python -m benchmarks.engine_overhead [--model embedded|larger|both] [--repeats N]``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from benchmarks import models, workload
from benchmarks.timing import medians, overhead_parser, time_variants, write_results
from plip_nn.trace import Item, run

log = logging.getLogger(__name__)

N_PROMPTS = 4
SIZES = {"embedded": 128, "larger": 512}


def cases(handle, prompts: list[tuple[int, ...]]) -> dict[str, list[Item]]:
    """Items of each case: knockout at one layer, Scale(2) at all layers, 7 conditions."""
    out: dict[str, list[Item]] = {
        "knockout_1": workload.items_for(
            prompts, lambda n: workload.knockout_one(handle, n), "knockout"
        ),
        "scale_all": workload.items_for(
            prompts, lambda n: workload.scale_all(handle, n), "scale_all"
        ),
    }
    seven = []
    for i, p in enumerate(prompts):
        for c in workload.synthetic_seven(handle.n_layers, len(p)):
            seven.append(Item(key=f"{c.name}/{i}", sample_id=f"p{i}", input_ids=p, condition=c))
    out["seven_conditions"] = seven
    return out


def n_rows(items: list[Item]) -> int:
    """Rows of the single pass ``run()`` makes: edited items plus one reference per prompt."""
    return sum(1 for it in items if it.condition.edits) + len({it.input_ids for it in items})


def measure(
    bm: models.BenchModel, *, seq: int, repeats: int, only: tuple[str, ...] = ()
) -> dict[str, Any]:
    h = bm.handle
    prompts = models.random_prompts(bm.vocab, N_PROMPTS, seq, seed=11)
    result: dict[str, Any] = {"model": bm.key, "prompts": N_PROMPTS, "seq": seq, "cases": {}}
    for name, items in cases(h, prompts).items():
        if only and name not in only:
            continue
        rows = n_rows(items)
        ids = torch.tensor([prompts[r % N_PROMPTS] for r in range(rows)], device=h.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        batch = len(items)

        def plain(inputs=inputs) -> object:
            with torch.inference_mode():
                return h.hf(**inputs).logits

        def floor(inputs=inputs) -> object:
            with torch.inference_mode(), h.nn.trace(inputs):
                logits = h.nn.output.logits.save()
            return logits

        def engine(items=items, batch=batch) -> object:
            return run(h, items, batch_size=batch)

        times = time_variants({"plain": plain, "nnsight": floor, "run": engine}, repeats=repeats)
        med = medians(times)
        result["cases"][name] = {
            "rows": rows,
            "median_s": med,
            "ratio": med["run"] / med["plain"],
            "floor_ratio": med["nnsight"] / med["plain"],
            "run_vs_floor": med["run"] / med["nnsight"],
            "added_ms": 1000 * (med["run"] - med["plain"]),
            "times_s": times,
        }
        log.info("%s %s: %.3fx", bm.key, name, med["run"] / med["plain"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = overhead_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=(),
        help="knockout_1 scale_all seven_conditions (default: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = []
    if args.model in ("embedded", "both"):
        results.append(
            measure(
                models.embedded(),
                seq=SIZES["embedded"],
                repeats=args.repeats,
                only=tuple(args.cases),
            )
        )
    if args.model in ("larger", "both"):
        results.append(
            measure(
                models.larger(), seq=SIZES["larger"], repeats=args.repeats, only=tuple(args.cases)
            )
        )
    write_results(
        results, threads=args.threads, load_before=load_before, out=args.out,
        line=lambda r, name, c: (
            f"{r['model']:9s} {name:17s} rows={c['rows']:3d} ratio={c['ratio']:.3f} "
            f"floor={c['floor_ratio']:.3f} run/floor={c['run_vs_floor']:.3f} "
            f"added={c['added_ms']:.1f}ms plain={c['median_s']['plain'] * 1000:.1f}ms"
        ),
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
