"""``plip_nn.intervene`` inside a user's own trace against the same trace without it.

The user trace is a logit lens at the middle layer plus the final logits of 4 prompts (one
batch). The ``intervene`` variant adds one call before the lens: a knockout at the middle layer
(``knockout_1``) or Scale(2) at every layer (``scale_all``, split into two calls around the
lens: layers up to the lens, then the rest), verified, with ``.check()`` after the trace. Variants alternate round-robin in one process
(:func:`benchmarks.timing.time_variants`); the ratio is median(with) / median(without).

**In generation** (:func:`measure_generate`, issue 24): the user's own ``generate`` (greedy,
KV cache, a logit lens at the middle layer saved at every step, the tokens saved) against the
same ``generate`` with ``plip_nn.intervene(..., steps=tracer.iter[:n])`` kept on at every step
(verified, ``.check()`` after it): a knockout at the middle layer under the ``markers`` policy
(the prompt's marker row; no generated marker: ``markers_1``) and under ``continuation`` (every
new row edited and verified at every step: ``continuation_1``). The ratio is tokens/s with
over tokens/s without (median over round-robin repeats); the tokens are asserted equal to
``plip_nn.generate``'s.

Usage: ``python -m benchmarks.intervene_overhead [--model embedded|larger|both] [--repeats N]
[--generate]``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import nnsight
import torch

import plip_nn
from benchmarks import models, workload
from benchmarks.timing import medians, overhead_parser, time_variants, write_results
from plip_nn.edits import AttentionEdit, Condition
from plip_nn.generate import GenerationRequest, embed_path, generate
from plip_nn.padding import pad_id

log = logging.getLogger(__name__)

N_PROMPTS = 4
SIZES = {"embedded": 128, "larger": 512}
GEN_PROMPT, GEN_NEW = 64, 64  # generation: prompt tokens, new tokens (batch 1)
GEN_POLICIES = {"markers_1": "markers", "continuation_1": "continuation"}


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


def user_generate(
    handle,
    ids: torch.Tensor,
    n_new: int,
    edit: AttentionEdit | None,
    policy: str,
    mode: str = "intervene",
) -> tuple[int, ...]:
    """The user's generate: greedy, a logit lens at the middle layer at every step, the tokens.

    With ``edit``: ``mode="intervene"`` keeps ``intervene`` on at every step (verified and
    checked), ``"unverified"`` the same with ``verify=False``, ``"bare"`` a hand-written
    nnsight knockout of the same rows (``continuation``: the source row at the prefill, then
    every new row) with no plip-nn code: nnsight's own cost of a per-step ``.source`` edit.
    """
    nn = handle.nn
    mid = handle.n_layers // 2
    kw = {"max_new_tokens": n_new, "min_new_tokens": n_new, "do_sample": False}
    bare = edit if edit is not None and mode == "bare" else None
    if bare is not None and policy != "continuation":
        raise ValueError(f"the bare nnsight edit is written for 'continuation', not {policy!r}")
    with torch.inference_mode(), nn.generate(ids, pad_token_id=pad_id(handle), **kw) as tracer:
        steps = tracer.iter[:n_new]
        if edit is not None and bare is None:
            steps = plip_nn.intervene(
                handle, [edit], steps=steps, source_policy=policy, verify=mode == "intervene"
            )
        lens = nnsight.save([])
        for step in steps:
            if bare is not None:
                _bare_knockout(handle, bare, step)
            h = nn.model.layers[mid].output[:, -1]
            lens.append(nn.lm_head(nn.model.norm(h)).argmax(-1))
        out = tracer.result.save()
    if edit is not None and mode == "intervene":
        steps.check()  # the saved Intervention: every step's readings, verified
    if len(lens) != n_new:
        raise AssertionError(f"the logit lens ran {len(lens)} of {n_new} steps")
    return tuple(int(t) for t in out[0, ids.shape[1] :])


def _bare_knockout(handle, edit: AttentionEdit, step: int) -> None:
    """In-trace, by hand: -inf on the edit's targets in the rows from its source on (the
    prefill) or in the new row (a later step), at each of its layers."""
    nn = handle.nn
    nn.get(embed_path(handle)).input  # noqa: B018 -- first request of the step, as intervene's
    for layer in edit.layers:
        site = handle.sites[layer]
        call = getattr(nn.get(site.module_path).source, site.call_op)
        softmax = getattr(call.source, site.softmax_op)
        scores = softmax.input  # [B, H, Q, K]
        rows = list(range(min(edit.sources), scores.shape[2])) if step == 0 else [-1]
        for t in edit.targets:
            scores[:, :, rows, t] = -math.inf
        softmax.input = scores


GEN_VARIANTS = {  # variant -> (edit on, mode); "bare" only where the policy is continuation
    "generate": (False, "intervene"),
    "generate+intervene": (True, "intervene"),
    "generate+intervene_unverified": (True, "unverified"),
    "generate+bare_nnsight_edit": (True, "bare"),
}


def measure_generate(
    bm: models.BenchModel,
    *,
    prompt_len: int = GEN_PROMPT,
    n_new: int = GEN_NEW,
    repeats: int,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, Any]:
    """Tokens/s of the user's generate with ``intervene`` over the same generate without it.

    Every variant's tokens are checked against ``plip_nn.generate`` first. ``clock``: this
    process's CPU time by default (torch runs one thread; other jobs on a shared CPU do not
    inflate it); the ratio is tokens/s with over tokens/s without, medians of the repeats.
    """
    h = bm.handle
    [prompt] = models.random_prompts(bm.vocab, 1, prompt_len, seed=13)
    ids = torch.tensor([prompt], device=h.device)
    edit = workload.knockout_one(h, prompt_len)
    result: dict[str, Any] = {
        "model": bm.key, "prompt": prompt_len, "new_tokens": n_new, "batch": 1,
        "clock": getattr(clock, "__name__", str(clock)), "cases": {}, "ratios": {},
    }  # fmt: skip
    for name, policy in GEN_POLICIES.items():
        req = GenerationRequest(
            key=name, sample_id=name, input_ids=tuple(prompt),
            condition=Condition(name=name, edits=(edit,)),
        )  # fmt: skip
        [ref] = generate(h, [req], max_new_tokens=n_new, source_policy=policy)
        variants: dict[str, Callable[[], object]] = {}
        for variant, (on, mode) in GEN_VARIANTS.items():
            if mode == "bare" and policy != "continuation":
                continue
            fn = functools.partial(user_generate, h, ids, n_new, edit if on else None, policy, mode)
            if on and fn() != ref.new_token_ids:
                raise AssertionError(f"{bm.key} {name} {variant}: tokens != plip_nn.generate")
            variants[variant] = fn
        times = time_variants(variants, repeats=repeats, clock=clock)
        med = medians(times)
        tok_s = {k: n_new / v for k, v in med.items()}
        ratios = {k: v / tok_s["generate"] for k, v in tok_s.items() if k != "generate"}
        result["cases"][name] = {
            "median_s": med, "tokens_per_s": tok_s, "ratio": ratios["generate+intervene"],
            "ratios": ratios, "times_s": times,
        }  # fmt: skip
        for k, v in ratios.items():
            result["ratios"][f"{name}_{k.removeprefix('generate+')}"] = v
        log.info("%s generate %s: tokens/s ratios %s", bm.key, name, ratios)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = overhead_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--generate", action="store_true", help="measure the user's generate (issue 24) instead"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = []
    if args.generate:
        for key in ("embedded", "larger"):
            if args.model in (key, "both"):
                bm = models.embedded() if key == "embedded" else models.larger()
                results.append(measure_generate(bm, repeats=args.repeats))
        write_results(
            results, threads=args.threads, load_before=load_before, out=args.out,
            line=lambda r, name, c: (
                f"{r['model']:9s} {name:15s} tokens/s generate={c['tokens_per_s']['generate']:.1f} "
                + " ".join(f"{k}={v:.3f}" for k, v in c["ratios"].items())
            ),
        )  # fmt: skip
        return 0
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
