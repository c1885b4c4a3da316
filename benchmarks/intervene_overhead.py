"""``plip_nn.intervene`` inside a user's own trace against the same trace without it.

The user trace is a logit lens at the middle layer plus the final logits of 4 prompts (one
batch). The ``intervene`` variant adds one call before the lens: a knockout at the middle layer
(``knockout_1``) or Scale(2) at every layer (``scale_all``, split into two calls around the
lens: layers up to the lens, then the rest), verified, with ``.check()`` after the trace. Variants alternate round-robin in one process
(:func:`benchmarks.timing.time_variants`); the ratio is median(with) / median(without).

Usage: ``python -m benchmarks.intervene_overhead [--model embedded|larger|both] [--repeats N]``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

import torch

import plip_nn
from benchmarks import models, workload
from benchmarks.timing import medians, overhead_parser, time_variants, write_results

log = logging.getLogger(__name__)

N_PROMPTS = 4
SIZES = {"embedded": 128, "larger": 512}


def user_trace(handle, ids: torch.Tensor, edits: list | None) -> tuple:
    """The user's trace: logit lens at the middle layer and the logits; ``edits`` via intervene."""
    nn = handle.nn
    mid = handle.n_layers // 2
    edits = list(edits or [])
    layers = sorted({x for e in edits for x in e.layers})
    low = [x for x in layers if x <= mid]  # up to the lens, then the rest after it
    high = [x for x in layers if x > mid]
    edited = []
    with torch.inference_mode(), nn.trace(ids):
        if low:
            edited.append(plip_nn.intervene(handle, edits, layers=low))
        lens = nn.lm_head(nn.model.norm(nn.model.layers[mid].output))[:, -1].argmax(-1).save()
        if high:
            edited.append(plip_nn.intervene(handle, edits, layers=high))
        top = nn.output.logits[:, -1].argmax(-1).save()
    for e in edited:
        e.check()
    return lens, top


def measure(bm: models.BenchModel, *, seq: int, repeats: int) -> dict[str, Any]:
    h = bm.handle
    prompts = models.random_prompts(bm.vocab, N_PROMPTS, seq, seed=11)
    ids = torch.tensor(prompts, device=h.device)
    cases = {
        "knockout_1": [workload.knockout_one(h, seq)],
        "scale_all": [workload.scale_all(h, seq)],
    }
    result: dict[str, Any] = {"model": bm.key, "prompts": N_PROMPTS, "seq": seq, "cases": {}}
    for name, edits in cases.items():
        variants: dict[str, Callable[[], object]] = {
            "trace": lambda: user_trace(h, ids, None),
            "trace+intervene": functools.partial(user_trace, h, ids, edits),
        }
        times = time_variants(variants, repeats=repeats)
        med = medians(times)
        ratio = med["trace+intervene"] / med["trace"]
        result["cases"][name] = {"median_s": med, "ratio": ratio, "times_s": times}
        log.info("%s %s: %.3fx", bm.key, name, ratio)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = overhead_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = []
    if args.model in ("embedded", "both"):
        results.append(measure(models.embedded(), seq=SIZES["embedded"], repeats=args.repeats))
    if args.model in ("larger", "both"):
        results.append(measure(models.larger(), seq=SIZES["larger"], repeats=args.repeats))
    write_results(
        results, threads=args.threads, load_before=load_before, out=args.out,
        line=lambda r, name, c: (
            f"{r['model']:9s} {name:11s} ratio={c['ratio']:.3f} "
            f"trace={c['median_s']['trace'] * 1000:.1f}ms "
            f"with={c['median_s']['trace+intervene'] * 1000:.1f}ms"
        ),
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
