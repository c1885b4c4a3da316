"""P2: N prompts x C conditions in batches of 8 vs one ``run`` per prompt x condition."""

from __future__ import annotations

import logging
import random
from typing import Any

from benchmarks import workload
from benchmarks.models import BenchModel, random_prompts
from benchmarks.timing import medians, time_variants
from plip_nn.edits import AttentionEdit, Condition, Knockout
from plip_nn.trace import Item, run

log = logging.getLogger(__name__)


def conditions(handle, n_tokens: int, seed: int) -> list[Condition]:
    """Four study-like conditions for a prompt of ``n_tokens`` tokens."""
    mid = handle.n_layers // 2
    edit = workload.knockout_one(handle, n_tokens)
    rng = random.Random(seed)
    pool = [t for t in range(n_tokens - 1) if t not in edit.targets]
    control = tuple(sorted(rng.sample(pool, len(edit.targets))))
    src = edit.sources
    return [
        Condition(name="knockout", edits=(edit,)),
        Condition(
            name="knockout_all_layers",
            edits=(workload.marker_edit(n_tokens, tuple(range(handle.n_layers)), Knockout()),),
        ),
        Condition(
            name="random_control",
            edits=(AttentionEdit(layers=(mid,), sources=src, targets=control, op=Knockout()),),
        ),
        Condition(name="scale_2", edits=(workload.scale_all(handle, n_tokens, 2.0),)),
    ]


def p2(bm: BenchModel, *, n_prompts: int, seq: int, batch: int, repeats: int) -> dict[str, Any]:
    """Batched ``run(items, batch_size=batch)`` (one shared baseline pass per prompt chunk)
    against ``run([item], batch_size=1)`` for every item (a baseline and an edited pass each,
    the original system's one-forward-per-prompt-and-condition)."""
    h = bm.handle
    prompts = random_prompts(bm.vocab, n_prompts, seq, seed=21, vary=seq // 16)
    items = [
        Item(key=f"p{i}/{c.name}", sample_id=f"p{i}", input_ids=p, condition=c)
        for i, p in enumerate(prompts)
        for c in conditions(h, len(p), seed=i)
    ]

    def batched() -> object:
        return run(h, items, batch_size=batch)

    def one_by_one() -> object:
        return [run(h, [it], batch_size=1) for it in items]

    # Same numbers either way (left padding must not change results).
    a = batched()
    b = [r for rs in one_by_one() for r in rs]
    worst = max(abs(x.kl - y.kl) for x, y in zip(a, b, strict=True))
    assert worst < 1e-3, f"batched and one-by-one KL differ by {worst}"
    times = time_variants({"batched": batched, "one_by_one": one_by_one}, repeats=repeats)
    med = medians(times)
    return {
        "model": bm.key,
        "n_prompts": n_prompts,
        "n_conditions": len(items) // n_prompts,
        "n_items": len(items),
        "batch": batch,
        "seq_max": seq,
        "repeats": repeats,
        "max_abs_kl_difference": worst,
        "median_s": med,
        "times_s": times,
        "ratios": {"speedup_batched": med["one_by_one"] / med["batched"]},
    }
