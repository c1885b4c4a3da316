"""P1: an intervened forward vs a plain HF eager forward on the same batch."""

from __future__ import annotations

import logging
from typing import Any

import torch

from benchmarks import tlens, workload
from benchmarks.models import BenchModel, random_prompts
from benchmarks.timing import medians, time_variants
from plip_nn import kernels
from plip_nn.trace import run

log = logging.getLogger(__name__)


def p1(bm: BenchModel, *, batch: int, seq: int, repeats: int, with_tl: bool) -> dict[str, Any]:
    """Time plain / nnsight-only / edit-only / engine-pass / ``run()`` variants side by side.

    Ratios: ``edit_*`` and ``engine_*`` against one plain forward (the engine pass adds the
    in-trace summaries: verification stats, NLL of every token, top-1); ``run_*`` (baseline +
    edited pass, KL) against two plain forwards.
    """
    h = bm.handle
    prompts = random_prompts(bm.vocab, batch, seq, seed=11)
    inputs, offsets = workload.batch_inputs(h, prompts)
    sites = workload.sites_of(h)

    def ko_of(n: int):
        return workload.knockout_one(h, n)

    def sc_of(n: int):
        return workload.scale_all(h, n)

    plan_ko = workload.plan_for(prompts, offsets, ko_of)
    plan_sc = workload.plan_for(prompts, offsets, sc_of)
    items_ko = workload.items_for(prompts, ko_of, "knockout")
    items_sc = workload.items_for(prompts, sc_of, "scale_all")

    def plain() -> object:
        with torch.inference_mode():
            return h.hf(**inputs).logits

    def nnsight_only() -> object:
        with torch.inference_mode(), h.nn.trace(inputs):
            logits = h.nn.output.logits.save()
        return logits

    def edit(plan: dict):
        def f() -> object:
            with torch.inference_mode():
                return workload.edit_pass(h.nn, inputs, sites, plan)

        return f

    def engine(plan: dict):
        def f() -> object:
            with torch.inference_mode():
                return kernels.traced_pass(h.nn, inputs, sites, plan, None, False, False)

        return f

    def end_to_end(items: list):
        def f() -> object:
            return run(h, items, batch_size=batch)

        return f

    variants = {
        "plain": plain,
        "nnsight_trace": nnsight_only,
        "edit_knockout_1": edit(plan_ko),
        "edit_scale_all": edit(plan_sc),
        "engine_knockout_1": engine(plan_ko),
        "engine_scale_all": engine(plan_sc),
        "run_knockout_1": end_to_end(items_ko),
        "run_scale_all": end_to_end(items_sc),
    }
    # The edit really happens: knockout reads 0 through the engine's own verification.
    [first] = run(h, items_ko[:1], batch_size=1)
    assert first.readings and first.readings[0].level_after == 0.0, first.readings

    tl_info: dict[str, Any] = {"available": False}
    if with_tl:
        try:
            bridge, version = tlens.bridge_for(h.hf, h.tokenizer)
            rows = [
                (r, seq - 1, list(ko_of(seq).targets)) for r in range(batch)
            ]  # same-length prompts: no padding
            tl_vars, check = tlens.variants(
                bridge, inputs["input_ids"], rows, h.n_layers // 2, h.n_layers, 2.0
            )
            variants.update(tl_vars)
            tl_info = {"available": True, "version": version, **check}
        except tlens.TransformerLensUnavailable as err:
            log.warning("no TransformerLens column: %s", err)
            tl_info = {"available": False, "reason": str(err)}

    times = time_variants(variants, repeats=repeats)
    med = medians(times)
    base = med["plain"]
    ratios = {
        name: med[name] / base
        for name in (
            "nnsight_trace",
            "edit_knockout_1",
            "edit_scale_all",
            "engine_knockout_1",
            "engine_scale_all",
        )
    }
    ratios["run_knockout_1_vs_2_plain"] = med["run_knockout_1"] / (2 * base)
    ratios["run_scale_all_vs_2_plain"] = med["run_scale_all"] / (2 * base)
    if tl_info["available"]:
        for name in ("tl_plain", "tl_knockout_1", "tl_scale_all"):
            ratios[f"{name}_vs_hf"] = med[name] / base
        ratios["tl_knockout_1_vs_tl_plain"] = med["tl_knockout_1"] / med["tl_plain"]
        ratios["tl_scale_all_vs_tl_plain"] = med["tl_scale_all"] / med["tl_plain"]
    added_ms = {
        name: 1000 * (med[name] - base)
        for name in ("edit_knockout_1", "edit_scale_all", "engine_knockout_1", "engine_scale_all")
    }
    return {
        "model": bm.key,
        "batch": batch,
        "seq": seq,
        "repeats": repeats,
        "median_s": med,
        "times_s": times,
        "ratios": ratios,
        "added_ms_per_trace": added_ms,
        "transformer_lens": tl_info,
    }
