"""Profile P1's worst ratio and compare another ``kernels.py`` (e.g. before a fix) side by side.

``python -m benchmarks.profile_p1 [--before PATH] [--batch 4 --seq 512] [--repeats 5]``

Times a plain forward and the engine pass (``traced_pass``) with Knockout at one layer and
Scale at all layers on the larger config, with the current ``plip_nn.kernels`` and, if given,
the kernels module at ``--before`` (``git show REV:plip_nn/kernels.py > /tmp/k.py``), then
prints the top operators of a torch.profiler run of the current Scale-at-all-layers pass.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import torch

from benchmarks import models, workload
from benchmarks.run import ALLOCATOR_ENV
from benchmarks.timing import medians, time_variants
from plip_nn import kernels


def load_kernels(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernels_before", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--before {path}: not a Python file; pass a kernels.py path")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    missing = [k for k in ALLOCATOR_ENV if k not in os.environ]
    if missing and argv is None:
        env = {**os.environ, **{k: ALLOCATOR_ENV[k] for k in missing}}
        os.execve(
            sys.executable, [sys.executable, "-m", "benchmarks.profile_p1", *sys.argv[1:]], env
        )
    torch.set_num_threads(args.threads)
    bm = models.larger()
    h = bm.handle
    prompts = models.random_prompts(bm.vocab, args.batch, args.seq, seed=11)
    inputs, offsets = workload.batch_inputs(h, prompts)
    sites = workload.sites_of(h)
    plan_ko = workload.plan_for(prompts, offsets, lambda n: workload.knockout_one(h, n))
    plan_sc = workload.plan_for(prompts, offsets, lambda n: workload.scale_all(h, n))
    modules = {"after": kernels}
    if args.before is not None:
        modules["before"] = load_kernels(args.before)

    def plain() -> object:
        with torch.inference_mode():
            return h.hf(**inputs).logits

    def engine(mod: ModuleType, plan: dict):
        def f() -> object:
            with torch.inference_mode():
                return mod.traced_pass(h.nn, inputs, sites, plan, None, False, False)

        return f

    variants = {"plain": plain}
    for tag, mod in modules.items():
        variants[f"{tag}_knockout_1"] = engine(mod, plan_ko)
        variants[f"{tag}_scale_all"] = engine(mod, plan_sc)
    med = medians(time_variants(variants, repeats=args.repeats))
    sys.stdout.write(f"batch {args.batch} x seq {args.seq}, median of {args.repeats}\n")
    for name, t in med.items():
        sys.stdout.write(f"{name:20s} {1000 * t:9.1f} ms  {t / med['plain']:.3f}x plain\n")
    from torch.profiler import ProfilerActivity, profile

    for tag, mod in modules.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            engine(mod, plan_sc)()
        sys.stdout.write(f"\n[{tag}] Scale at all layers, top operators by self CPU time\n")
        sys.stdout.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
