"""Where ``run()``'s added time goes: plip-nn's own work against nnsight's.

``python -m benchmarks.profile_run [--model embedded|larger] [--repeats N] [--before K.py]``

For each ``benchmarks.engine_overhead`` case (same rows as its plain forward):

1. side by side, round-robin: a plain HF forward, a bare nnsight trace (the floor) and
   ``run()``;
2. plip-nn's in-trace work *replayed without nnsight* on the tensors of the same pass (the
   pre-softmax scores and probabilities of each edited layer, the logits): the edits, their
   verification and reads (:func:`plip_nn.kernels.apply_knockouts`,
   :func:`~plip_nn.kernels.apply_prob_edits`, :func:`~plip_nn.kernels.verify_groups`,
   :func:`~plip_nn.kernels.read_levels`), and the summaries (log-probs, NLL of every token,
   KL, top-1);
3. plip-nn's host work (planning, padding, assembling results): ``run()`` with the trace
   replaced by a stub that returns the saved results of a real pass.

What remains of ``run() - plain`` after those is nnsight's: the floor (bare trace) plus the
``.source`` drill-downs into the attention function and the hand-offs of each accessed value.
A profile by cProfile cannot tell these apart (a value hand-off switches to the model's
greenlet, so the model's time is billed to the access), hence the replay.

``--before PATH`` also replays the in-trace work with another ``kernels.py`` of the per-group
API (before issue 21: ``git show b94cedb:plip_nn/kernels.py > /tmp/k.py``), side by side.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from benchmarks import engine_overhead, models
from benchmarks.timing import medians, paired_ratio, time_variants
from plip_nn import kernels
from plip_nn.trace import run

log = logging.getLogger(__name__)


def capture(handle: Any, items: list) -> list[dict[str, Any]]:
    """The arguments of every traced pass ``run(items)`` makes, and its saved results."""
    calls: list[dict[str, Any]] = []
    real = kernels.traced_pass

    def spy(
        model, inputs, sites, plan, base_rows, keep, in_session, route=kernels.ROUTE_SOFTMAX,
        predict_at=None, nll_from=None, gold=None,
    ):  # fmt: skip
        out = real(
            model,
            inputs,
            sites,
            plan,
            base_rows,
            keep,
            in_session,
            route,
            predict_at,
            nll_from,
            gold,
        )
        calls.append(
            {"inputs": inputs, "sites": sites, "plan": plan, "rows": base_rows, "route": route,
             "out": out}
        )  # fmt: skip
        return out

    kernels.traced_pass = spy
    try:
        run(handle, items, batch_size=len(items))
    finally:
        kernels.traced_pass = real
    return calls


def pass_tensors(handle: Any, call: dict[str, Any]) -> dict[str, Any]:
    """Scores and probabilities at each planned layer and the logits of an *unedited* pass
    with the call's inputs (same shapes and values a replay needs)."""
    model = handle.nn
    sites = call["sites"]
    saved: dict[str, Any] = {}
    with torch.inference_mode(), model.trace(call["inputs"]):
        for layer in sorted(call["plan"]):
            site = sites[layer]
            op = getattr(
                getattr(model.get(site[kernels.SITE_PATH]).source, site[kernels.SITE_CALL]).source,
                site[kernels.SITE_SOFTMAX],
            )
            saved[f"scores/{layer}"] = op.input.clone().save()
            saved[f"probs/{layer}"] = op.output.clone().save()
        saved["logits"] = model.output.logits.save()
    return saved


def replay_edits(call: dict[str, Any], saved: dict[str, Any]) -> object:
    """plip-nn's per-layer in-trace work on the pass's tensors, without nnsight.

    Edits the saved tensors in place, as the pass does (a repeat re-edits edited rows: the
    same work on other values)."""
    out = []
    for layer, lp in sorted(call["plan"].items()):
        scores = saved[f"scores/{layer}"]
        probs = saved[f"probs/{layer}"]
        edits, verify, reads = (
            lp[kernels.PLAN_EDITS],
            lp[kernels.PLAN_VERIFY],
            lp[kernels.PLAN_READS],
        )
        thresh = kernels.masked_threshold(scores.dtype)
        if verify:
            rows, srcs = kernels.edited_rows(verify)
            b = torch.tensor(rows)
            s = torch.tensor(srcs)
            scores_rows = scores[b, :, s, :].double()
        kernels.apply_knockouts(scores, edits)
        kernels.apply_prob_edits(probs, scores, edits)
        if verify:
            rtol = kernels.relative_tolerance(probs.dtype, probs.dtype)
            out.append(
                kernels.verify_groups(
                    scores_rows, probs[b, :, s, :], verify, rows, srcs, thresh, rtol,
                    torch.finfo(probs.dtype).tiny,
                )
            )  # fmt: skip
        if reads:
            out.append(kernels.read_levels(probs, reads))
    return out


def replay_edits_per_group(mod: ModuleType, call: dict[str, Any], saved: dict[str, Any]) -> object:
    """:func:`replay_edits` with a ``kernels`` module of the per-group API (one edit and one
    verification loop iteration per group, as before issue 21)."""
    out = []
    for layer, lp in sorted(call["plan"].items()):
        scores = saved[f"scores/{layer}"]
        probs = saved[f"probs/{layer}"]
        edits, verify, reads = lp["edits"], lp["verify"], lp["reads"]
        thresh = mod.masked_threshold(scores.dtype)
        if verify:
            rows, srcs = mod.edited_rows(verify)
            b, s = torch.tensor(rows), torch.tensor(srcs)
            scores_rows = scores[b, :, s, :].double()
        for g in edits:
            if g[kernels.G_OP] == kernels.KNOCKOUT:
                mod.knockout_scores(scores, g, inplace=True)
        for g in edits:
            if g[kernels.G_OP] == kernels.SCALE:
                mod.scale_probs(probs, g, inplace=True)
            elif g[kernels.G_OP] == kernels.SET_VALUE:
                mod.set_value_probs(probs, scores, g, inplace=True)
        if verify:
            members = mod.group_members(verify, rows, srcs, scores.shape[1], scores.shape[3], "cpu")
            rtol = mod.relative_tolerance(probs.dtype, probs.dtype)
            tiny = torch.finfo(probs.dtype).tiny
            out.append(
                mod.verify_groups(
                    scores_rows, probs[b, :, s, :], verify, members, thresh, rtol, tiny
                )
            )
        if reads:
            out.append(mod.read_levels(probs, reads))
    return out


def load_kernels(path: Path) -> ModuleType:
    """A ``kernels.py`` file as a module of its own (it imports only torch and math)."""
    spec = importlib.util.spec_from_file_location("kernels_before", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--before {path}: not a Python file; pass a kernels.py path")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compare_kernels(bm: models.BenchModel, seq: int, before: ModuleType, repeats: int) -> str:
    """Markdown: the in-trace work replayed with ``before`` and with the current kernels."""
    h = bm.handle
    prompts = models.random_prompts(bm.vocab, engine_overhead.N_PROMPTS, seq, seed=11)
    lines = [
        "| case | edits+verify+reads before ms | after ms | NLL before ms | after ms |",
        "|---|---|---|---|---|",
    ]
    for name, items in engine_overhead.cases(h, prompts).items():
        calls = capture(h, items)
        tensors = [pass_tensors(h, c) for c in calls]
        pairs = list(zip(calls, tensors, strict=True))

        def nll(mod: ModuleType, pairs: list = pairs) -> object:
            return [
                mod.token_nll(t["logits"], c["inputs"]["input_ids"], c["inputs"]["attention_mask"])
                for c, t in pairs
            ]

        def edits_before(pairs: list = pairs) -> object:
            return [replay_edits_per_group(before, c, t) for c, t in pairs]

        def edits_after(pairs: list = pairs) -> object:
            return [replay_edits(c, t) for c, t in pairs]

        variants: dict[str, Callable[[], object]] = {
            "before": edits_before,
            "after": edits_after,
            "nll_before": functools.partial(nll, before),
            "nll_after": functools.partial(nll, kernels),
        }
        with torch.inference_mode():
            ms = {k: 1000 * v for k, v in medians(time_variants(variants, repeats=repeats)).items()}
        lines.append(
            f"| {name} | {ms['before']:.2f} | {ms['after']:.2f} | {ms['nll_before']:.2f} | "
            f"{ms['nll_after']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def replay_summaries(call: dict[str, Any], saved: dict[str, Any]) -> object:
    """plip-nn's output summaries (log-probs, NLL, top-1, KL) on the pass's logits."""
    logits = saved["logits"]
    inputs = call["inputs"]
    lp = kernels.last_logprobs(logits)
    nll = kernels.token_nll(logits, inputs["input_ids"], inputs["attention_mask"])
    top = lp.argmax(-1)
    if call["rows"] is None:
        return nll, top
    ref = lp[call["rows"]]
    return nll, top, kernels.kl_rows(ref, lp), ref.argmax(-1)


def host_only(handle: Any, items: list, calls: list[dict[str, Any]]) -> object:
    """``run(items)`` with each traced pass replaced by its saved results (host work only)."""
    outs = iter([c["out"] for c in calls])
    real = kernels.traced_pass
    kernels.traced_pass = lambda *a, **k: next(outs)
    try:
        return run(handle, items, batch_size=len(items))
    finally:
        kernels.traced_pass = real


def measure(bm: models.BenchModel, seq: int, repeats: int) -> dict[str, Any]:
    h = bm.handle
    prompts = models.random_prompts(bm.vocab, engine_overhead.N_PROMPTS, seq, seed=11)
    result: dict[str, Any] = {"model": bm.key, "seq": seq, "repeats": repeats, "cases": {}}
    for name, items in engine_overhead.cases(h, prompts).items():
        rows = engine_overhead.n_rows(items)
        ids = torch.tensor([prompts[r % len(prompts)] for r in range(rows)], device=h.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        calls = capture(h, items)
        tensors = [pass_tensors(h, c) for c in calls]

        def plain(inputs: dict = inputs) -> object:
            with torch.inference_mode():
                return h.hf(**inputs).logits

        def bare(inputs: dict = inputs) -> object:
            with torch.inference_mode(), h.nn.trace(inputs):
                logits = h.nn.output.logits.save()
            return logits

        def edits(calls: list = calls, tensors: list = tensors) -> object:
            with torch.inference_mode():
                return [replay_edits(c, t) for c, t in zip(calls, tensors, strict=True)]

        def summaries(calls: list = calls, tensors: list = tensors) -> object:
            with torch.inference_mode():
                return [replay_summaries(c, t) for c, t in zip(calls, tensors, strict=True)]

        variants: dict[str, Callable[[], object]] = {
            "plain": plain,
            "nnsight_floor": bare,
            "run": functools.partial(run, h, items, batch_size=len(items)),
            "plip_edits_verify_reads": edits,
            "plip_summaries": summaries,
            "plip_host": functools.partial(host_only, h, items, calls),
        }
        times = time_variants(variants, repeats=repeats)
        ms = {k: 1000 * v for k, v in medians(times).items()}
        plip = ms["plip_edits_verify_reads"] + ms["plip_summaries"] + ms["plip_host"]
        result["cases"][name] = {
            "rows": rows,
            "passes": len(calls),
            "median_ms": ms,
            "run_vs_plain": paired_ratio(times, "run", "plain"),
            "floor_vs_plain": paired_ratio(times, "nnsight_floor", "plain"),
            "run_vs_floor": paired_ratio(times, "run", "nnsight_floor"),
            "plip_ms": plip,
            "nnsight_beyond_floor_ms": ms["run"] - ms["nnsight_floor"] - plip,
        }
    return result


def table(res: dict[str, Any]) -> str:
    """Markdown table of :func:`measure`."""
    lines = [
        "| case | rows | plain ms | bare trace | run() | run/plain | floor/plain | run/floor "
        "| plip edits+verify+reads | plip summaries | plip host | nnsight beyond the floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in res["cases"].items():
        ms = c["median_ms"]
        lines.append(
            f"| {name} | {c['rows']} | {ms['plain']:.1f} | {ms['nnsight_floor']:.1f} | "
            f"{ms['run']:.1f} | {c['run_vs_plain']:.3f} | {c['floor_vs_plain']:.3f} | "
            f"{c['run_vs_floor']:.3f} | {ms['plip_edits_verify_reads']:.1f} | "
            f"{ms['plip_summaries']:.1f} | {ms['plip_host']:.1f} | "
            f"{c['nnsight_beyond_floor_ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("embedded", "larger"), default="embedded")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", type=Path, default=None, help="another kernels.py to replay")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    bm = models.embedded() if args.model == "embedded" else models.larger()
    res = measure(bm, engine_overhead.SIZES[args.model], args.repeats)
    sys.stdout.write(table(res))
    if args.before is not None:
        before = load_kernels(args.before)
        sys.stdout.write(compare_kernels(bm, engine_overhead.SIZES[args.model], before, 31))
    sys.stdout.write(f"load before {load}, after {os.getloadavg()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
