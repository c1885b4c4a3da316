"""P3 and P4: KV-cached generation with a knockout vs plain HF ``generate`` and vs recompute."""

from __future__ import annotations

import logging
from typing import Any

import torch

from benchmarks import workload
from benchmarks.models import BenchModel, random_prompts
from benchmarks.timing import medians, time_variants
from plip_nn.edits import Condition
from plip_nn.generate import GenerationRequest, generate, generate_recompute

log = logging.getLogger(__name__)


def hf_recompute(hf: torch.nn.Module, prompt: tuple[int, ...], n_new: int) -> tuple[int, ...]:
    """Greedy decoding by a full forward over the whole sequence at every step (no cache)."""
    seq = torch.tensor([prompt], dtype=torch.long)
    new = []
    with torch.inference_mode():
        for _ in range(n_new):
            logits = hf(input_ids=seq, use_cache=False).logits
            tok = int(logits[0, -1].argmax())
            new.append(tok)
            seq = torch.cat([seq, torch.tensor([[tok]])], dim=1)
    return tuple(new)


def hf_generate(hf: Any, prompt: tuple[int, ...], n_new: int) -> tuple[int, ...]:
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.inference_mode():
        out = hf.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n_new,
            min_new_tokens=n_new,
            do_sample=False,
            pad_token_id=0,
        )
    return tuple(int(t) for t in out[0, len(prompt) :])


def nnsight_generate(handle: Any, prompt: tuple[int, ...], n_new: int) -> tuple[int, ...]:
    """nnsight's own ``generate`` with no intervention: the floor for any nnsight-based edit."""
    ids = torch.tensor([prompt], dtype=torch.long, device=handle.device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with (
        torch.inference_mode(),
        handle.nn.generate(
            inputs, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=0
        ) as tracer,
    ):
        result = tracer.result.save()
    return tuple(int(t) for t in result[0, len(prompt) :])


def p3_p4(
    bm: BenchModel, *, prompt_len: int, n_new: int, repeats: int, warmup: bool = True
) -> dict[str, Any]:
    """Time four greedy decoders of ``n_new`` tokens after one prompt, side by side.

    P3 = tokens/s of ``plip_nn.generate`` (knockout at one layer, KV cache) over plain HF
    ``generate``. P4 = the speedup of ``generate`` over ``generate_recompute`` (full
    recomputation with the accumulated edit at every step), divided by the speedup of HF
    ``generate`` over a plain full-recompute loop. Both plip decoders must agree token for token.
    """
    h = bm.handle
    [prompt] = random_prompts(bm.vocab, 1, prompt_len, seed=31)
    edit = workload.knockout_one(h, prompt_len)
    req = GenerationRequest(
        key="g", sample_id="g", input_ids=prompt, condition=Condition(name="ko", edits=(edit,))
    )
    plain_req = GenerationRequest(
        key="g0", sample_id="g", input_ids=prompt, condition=Condition(name="baseline")
    )
    out: dict[str, tuple[int, ...]] = {}

    def decoders(n: int) -> dict:
        def plip_gen() -> None:
            [res] = generate(h, [req], max_new_tokens=n)
            out["plip_generate"] = res.new_token_ids

        def plip_gen_no_edit() -> None:
            [res] = generate(h, [plain_req], max_new_tokens=n)
            out["plip_generate_no_edit"] = res.new_token_ids

        def plip_recompute() -> None:
            out["plip_recompute"] = generate_recompute(h, req, max_new_tokens=n)

        def plain_gen() -> None:
            out["hf_generate"] = hf_generate(h.hf, prompt, n)

        def plain_recompute() -> None:
            out["hf_recompute"] = hf_recompute(h.hf, prompt, n)

        def nnsight_bare() -> None:
            out["nnsight_generate"] = nnsight_generate(h, prompt, n)

        return {
            "hf_generate": plain_gen,
            "plip_generate": plip_gen,
            "plip_generate_no_edit": plip_gen_no_edit,
            "nnsight_generate": nnsight_bare,
            "hf_recompute": plain_recompute,
            "plip_recompute": plip_recompute,
        }

    if warmup:  # short runs warm every code path; full-length recompute warm-ups cost minutes
        time_variants(decoders(min(8, n_new)), repeats=1, warmup=0)
    times = time_variants(decoders(n_new), repeats=repeats, warmup=0)
    if out["plip_generate"] != out["plip_recompute"]:
        raise AssertionError("KV-cached plip generate and full recompute disagree on tokens")
    if out["hf_generate"] != out["hf_recompute"]:
        raise AssertionError("HF generate and the plain recompute loop disagree on tokens")
    if out["nnsight_generate"] != out["hf_generate"]:
        raise AssertionError("nnsight generate disagrees with HF generate")
    if out["plip_generate_no_edit"] != out["hf_generate"]:
        raise AssertionError("plip generate without edits disagrees with HF generate")
    med = medians(times)
    plip_speedup = med["plip_recompute"] / med["plip_generate"]
    hf_speedup = med["hf_recompute"] / med["hf_generate"]
    return {
        "model": bm.key,
        "prompt_len": prompt_len,
        "new_tokens": n_new,
        "repeats": repeats,
        "tokens_identical": True,
        "knockout_changed_tokens": out["plip_generate"] != out["hf_generate"],
        "median_s": med,
        "times_s": times,
        "tokens_per_s": {k: n_new / v for k, v in med.items()},
        "ratios": {
            "p3_tokens_per_s_vs_hf_generate": med["hf_generate"] / med["plip_generate"],
            "p3_no_edit_vs_hf_generate": med["hf_generate"] / med["plip_generate_no_edit"],
            "p3_nnsight_bare_vs_hf_generate": med["hf_generate"] / med["nnsight_generate"],
            "p4_plip_speedup_over_recompute": plip_speedup,
            "p4_hf_speedup_over_recompute": hf_speedup,
            "p4_fraction_of_hf_speedup": plip_speedup / hf_speedup,
        },
    }
