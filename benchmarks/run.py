"""Run every benchmark and write a JSON plus ``benchmarks/RESULTS.md``.

``python -m benchmarks.run [--quick] [--out benchmarks/_out] [--results PATH]``

The process re-executes itself once with glibc allocator settings (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``) unless they are already set: with glibc's defaults every large eager
attention tensor is a fresh ``mmap`` and CPU timings become page-fault bound (about 5x slower
softmax + copy of a ``[8, 8, 512, 512]`` tensor on this machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from plip_nn.atomic import atomic_write_text

ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",  # tensors < 4 GiB come from the heap, not mmap
    "MALLOC_TRIM_THRESHOLD_": "17179869184",  # and freed memory is not trimmed back each time
    "OMP_NUM_THREADS": "2",
}
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

log = logging.getLogger("benchmarks")


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """Workload sizes of one mode (full or quick)."""

    repeats: int
    threads: int
    p1_batch: int
    p1_seq_embedded: int
    p1_seq_larger: int
    p1b_repeats: int
    p1b_repeats_larger: int
    gen_prompt: int
    gen_new: int
    p5_prompts: int
    p5_seq_larger: int
    p6_batch: int
    p6_seq: int
    p6_repeats: int
    p7_repeats: int
    p8_prompts: int
    p8_new: int
    p8_batches: tuple[int, ...]
    p8_repeats: int
    p9_prompt: int
    p9_new: int
    p9_repeats: int


FULL = Sizes(
    repeats=5,
    threads=2,
    p1_batch=4,
    p1_seq_embedded=128,
    p1_seq_larger=512,
    p1b_repeats=15,
    p1b_repeats_larger=5,
    gen_prompt=64,
    gen_new=150,
    p5_prompts=8,
    p5_seq_larger=512,
    p6_batch=8,
    p6_seq=512,
    p6_repeats=3,
    p7_repeats=5,
    p8_prompts=10,
    p8_new=40,
    p8_batches=(1, 8, 64),
    p8_repeats=2,
    p9_prompt=64,
    p9_new=64,
    p9_repeats=9,
)
QUICK = Sizes(
    repeats=2,
    threads=1,  # robust on a shared CPU: 2 OpenMP threads stall when a core is taken
    p1_batch=2,
    p1_seq_embedded=64,
    p1_seq_larger=64,
    p1b_repeats=2,
    p1b_repeats_larger=1,
    gen_prompt=16,
    gen_new=12,
    p5_prompts=2,
    p5_seq_larger=64,
    p6_batch=2,
    p6_seq=64,
    p6_repeats=1,
    p7_repeats=2,
    p8_prompts=2,
    p8_new=4,
    p8_batches=(1, 14),
    p8_repeats=1,
    p9_prompt=16,
    p9_new=6,
    p9_repeats=1,
)

TARGETS = {
    # (section, model, ratio key): (comparison, bound, description)
    ("P1", "larger", "engine_knockout_1"): ("<=", 1.05, "knockout at one layer vs plain forward"),
    ("P1", "larger", "engine_scale_all"): ("<=", 1.10, "Scale at all layers vs plain forward"),
    ("P1b", "embedded", "run_vs_plain_knockout_1"): ("<=", 1.10, "run(), knockout at one layer"),
    ("P1b", "embedded", "run_vs_plain_scale_all"): ("<=", 1.10, "run(), Scale at all layers"),
    ("P1b", "embedded", "run_vs_plain_seven_conditions"): ("<=", 1.10, "run(), 7 conditions"),
    ("P3", "larger", "p3_tokens_per_s_vs_hf_generate"): (">=", 0.9, "tokens/s vs HF generate"),
    ("P3", "embedded", "p3_tokens_per_s_vs_hf_generate"): (">=", 0.9, "tokens/s vs HF generate"),
    ("P4", "larger", "p4_fraction_of_hf_speedup"): (">=", 0.9, "share of HF's KV speedup"),
    ("P4", "embedded", "p4_fraction_of_hf_speedup"): (">=", 0.9, "share of HF's KV speedup"),
    ("P6", "larger", "engine_knockout_1_peak_rss"): ("<=", 1.15, "peak RSS, knockout 1 layer"),
    ("P6", "larger", "engine_scale_all_peak_rss"): ("<=", 1.15, "peak RSS, Scale all layers"),
    ("P9", "embedded", "markers_1_intervene"): (">=", 0.95, "tokens/s, own generate, markers"),
    ("P9", "embedded", "continuation_1_intervene"): (
        ">=", 0.95, "tokens/s, own generate, continuation",
    ),
    ("P9", "larger", "markers_1_intervene"): (">=", 0.95, "tokens/s, own generate, markers"),
    ("P9", "larger", "continuation_1_intervene"): (
        ">=", 0.95, "tokens/s, own generate, continuation",
    ),
}  # fmt: skip


def _reexec_with_allocator_env() -> None:
    missing = {k: v for k, v in ALLOCATOR_ENV.items() if k not in os.environ}
    if not missing:
        return
    env = {**os.environ, **missing}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *sys.argv[1:]], env)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, load, versions, allocator settings."""
    import nnsight
    import torch
    import transformers

    cpuinfo = _read("/proc/cpuinfo")
    models = [
        ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")
    ]
    mem_kib = next(
        (
            int(ln.split()[1])
            for ln in _read("/proc/meminfo").splitlines()
            if ln.startswith("MemTotal")
        ),
        0,
    )
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(os.cpu_count())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    try:
        from importlib.metadata import version

        tl_version = version("transformer_lens")
    except Exception:
        tl_version = "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": models[0] if models else platform.processor(),
        "cpu_count_cpuinfo": len(models),
        "nproc": nproc,
        "ram_gib": round(mem_kib / 1024**2, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "nnsight": getattr(nnsight, "__version__", "?"),
        "transformer_lens": tl_version,
        "torch_threads": torch.get_num_threads(),
        "allocator_env": {k: os.environ.get(k, "") for k in ALLOCATOR_ENV},
        "inference_mode": "torch.inference_mode() for every forward, trace and generate",
        "git_commit": commit,
        "load_avg_start": os.getloadavg(),
    }


def run_all(sizes: Sizes, *, quick: bool) -> dict[str, Any]:
    import torch

    from benchmarks import (
        gen_batching,
        generation,
        intervene_overhead,
        memory,
        models,
        overhead,
        profile_run,
        remote_bytes,
    )

    torch.set_num_threads(sizes.threads)
    os.environ["BENCH_THREADS"] = str(sizes.threads)  # P6 subprocesses use the same
    meta = machine()
    t0 = time.perf_counter()
    emb = models.embedded()
    big = models.larger(models.LARGER_QUICK if quick else models.LARGER)
    res: dict[str, Any] = {"meta": meta, "sizes": asdict(sizes), "quick": quick}
    res["models"] = {"embedded": emb.description, "larger": big.description}
    res["embedded_is_stand_in"] = not models.embedded_model_available()
    res["P1"], res["P1b"] = {}, {}
    for bm, seq in ((emb, sizes.p1_seq_embedded), (big, sizes.p1_seq_larger)):
        log.info("P1 %s", bm.key)
        res["P1"][bm.key] = overhead.p1(
            bm, batch=sizes.p1_batch, seq=seq, repeats=sizes.repeats, with_tl=True
        )
        log.info("P1b %s", bm.key)
        reps = sizes.p1b_repeats if bm.key == "embedded" else sizes.p1b_repeats_larger
        p1b = profile_run.measure(bm, seq, reps)
        p1b["ratios"] = {
            f"{key}_{case}": c[key]
            for case, c in p1b["cases"].items()
            for key in ("run_vs_plain", "floor_vs_plain", "run_vs_floor")
        }
        res["P1b"][bm.key] = p1b
    res["P3"], res["P4"] = {}, {}
    for bm in (emb, big):
        log.info("P3/P4 %s", bm.key)
        g = generation.p3_p4(
            bm, prompt_len=sizes.gen_prompt, n_new=sizes.gen_new, repeats=sizes.repeats
        )
        res["P3"][bm.key] = {
            **g,
            "ratios": {k: v for k, v in g["ratios"].items() if k.startswith("p3_")},
        }
        res["P4"][bm.key] = {
            "model": bm.key,
            "see": "P3 (same runs)",
            "tokens_identical": g["tokens_identical"],
            "ratios": {k: v for k, v in g["ratios"].items() if k.startswith("p4_")},
        }
    res["P5"] = {}
    for bm, seq in ((emb, sizes.p1_seq_embedded), (big, sizes.p5_seq_larger)):
        log.info("P5 %s", bm.key)
        res["P5"][bm.key] = remote_bytes.p5(bm, n_prompts=sizes.p5_prompts, seq=seq, batch=8)
    log.info("P6")
    res["P6"] = {
        "larger": memory.p6(
            quick=quick, batch=sizes.p6_batch, seq=sizes.p6_seq, repeats=sizes.p6_repeats
        )
    }
    res["P7"] = {}
    for bm, seq in ((emb, sizes.p1_seq_embedded), (big, sizes.p1_seq_larger)):
        log.info("P7 %s", bm.key)
        p7 = intervene_overhead.measure(bm, seq=seq, repeats=sizes.p7_repeats)
        p7["ratios"] = {name: c["ratio"] for name, c in p7["cases"].items()}
        res["P7"][bm.key] = p7
    res["P9"] = {}
    for bm in (emb, big):
        log.info("P9 %s", bm.key)
        res["P9"][bm.key] = intervene_overhead.measure_generate(
            bm, prompt_len=sizes.p9_prompt, n_new=sizes.p9_new, repeats=sizes.p9_repeats
        )
    res["P8"] = {}
    for attn, bm in (("eager", emb), ("auto", models.embedded(attn="auto"))):
        log.info("P8 %s", attn)
        p8 = gen_batching.measure(
            bm, n_prompts=sizes.p8_prompts, n_new=sizes.p8_new, batches=sizes.p8_batches,
            repeats=sizes.p8_repeats,
        )  # fmt: skip
        p8["ratios"] = {
            f"{policy}_{k}": v
            for policy, p in p8["policies"].items()
            for k, v in p["ratios"].items()
        }
        res["P8"][f"embedded_{attn}"] = p8
    res["targets"] = check_targets(res)
    meta["load_avg_end"] = os.getloadavg()
    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def check_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for (section, model, key), (cmp, bound, what) in TARGETS.items():
        value = res[section][model]["ratios"][key]
        ok = value <= bound if cmp == "<=" else value >= bound
        out.append(
            {
                "id": section,
                "model": model,
                "ratio": key,
                "what": what,
                "value": value,
                "target": f"{cmp} {bound}",
                "met": ok,
            }
        )
    return out


def _f(x: float, nd: int = 3) -> str:
    return f"{x:.{nd}f}"


def render(res: dict[str, Any], command: str) -> str:
    """RESULTS.md from the result dict."""
    m = res["meta"]
    L: list[str] = []
    add = L.append
    add("# plip-nn benchmarks")
    add("")
    add(f"Generated by `{command}` on {m['date']} (git {m['git_commit']}, wall {m['wall_s']} s).")
    add("Every figure is a ratio of two measurements taken side by side in the same process")
    add(
        f"(round-robin, median of {res['sizes']['repeats']} repeats after a warm-up), except P6 (fresh"
    )
    add("subprocesses) and P5 (sizes). Raw times: the JSON next to this run (`--out`).")
    add("")
    add("## Machine")
    add("")
    add(
        f"- CPU: {m['cpu']} ({m['cpu_count_cpuinfo']} logical CPUs in /proc/cpuinfo, nproc {m['nproc']}), RAM {m['ram_gib']} GiB"
    )
    add(
        f"- load average (1/5/15 min) at start {tuple(round(x, 2) for x in m['load_avg_start'])}, at end {tuple(round(x, 2) for x in m['load_avg_end'])} (the CPU is shared; other jobs ran)"
    )
    add(
        f"- python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, nnsight {m['nnsight']}, transformer_lens {m['transformer_lens']}"
    )
    add(
        f"- torch threads {m['torch_threads']}; allocator: "
        + ", ".join(f"`{k}={v}`" for k, v in m["allocator_env"].items())
    )
    add(f"- {m['inference_mode']} (nnsight traces work under it)")
    if m["torch_threads"] == 1:
        add(
            "- 1 torch thread because the 2 cores were shared with other jobs: with 2 OpenMP threads"
        )
        add(
            "  on busy cores every op waits for the descheduled thread (a first 2-thread run took 5 min"
        )
        add(
            "  for what takes 20 s on one thread) and the ratios become noise. `make bench` uses 2."
        )
    add("")
    add("## Models")
    add("")
    add(f"- **embedded**: {res['models']['embedded']}")
    add(f"- **larger**: {res['models']['larger']}")
    add("")
    add("## Targets")
    add("")
    add("| id | model | what | measured | target | met |")
    add("|---|---|---|---|---|---|")
    for t in res["targets"]:
        add(
            f"| {t['id']} | {t['model']} | {t['what']} (`{t['ratio']}`) | {_f(t['value'])} | {t['target']} | {'yes' if t['met'] else '**no**'} |"
        )
    add("")
    add("## P1 intervened forward vs plain HF eager forward")
    add("")
    add(
        "`edit_*`: an nnsight trace applying the edit with `plip_nn.kernels` exactly as the engine does"
    )
    add(
        "(plus the edit's verification stats); `engine_*`: the engine's single pass `kernels.traced_pass`"
    )
    add(
        "(also NLL of every token, top-1); `run_*`: `plip_nn.run()` end to end (baseline + edited pass,"
    )
    add(
        "KL, checks) vs **two** plain forwards. `tl_*`: TransformerLens `run_with_hooks` on the same weights."
    )
    add("")
    add("| model | batch x seq | variant | median ms | ratio | ms added |")
    add("|---|---|---|---|---|---|")
    for key, p in res["P1"].items():
        med = p["median_s"]
        for name, t in med.items():
            if name == "plain":
                ratio, added = "1 (reference)", ""
            elif name.startswith("run_"):
                ratio = _f(p["ratios"][f"{name}_vs_2_plain"]) + " (vs 2 plain)"
                added = _f(1000 * (t - 2 * med["plain"]), 2)
            elif name.startswith("tl_"):
                ratio = _f(p["ratios"][f"{name}_vs_hf"]) + " (vs HF)"
                if name != "tl_plain":
                    ratio += f"; {_f(p['ratios'][f'{name}_vs_tl_plain'])} vs TL plain"
                added = _f(1000 * (t - med["plain"]), 2)
            else:
                ratio = _f(p["ratios"][name])
                added = _f(1000 * (t - med["plain"]), 2)
            add(
                f"| {key} | {p['batch']} x {p['seq']} | {name} | {_f(1000 * t, 2)} | {ratio} | {added} |"
            )
    tl = res["P1"]["larger"]["transformer_lens"]
    add("")
    if tl["available"]:
        add(
            f"TransformerLens {tl['version']}: `TransformerBridge.boot_transformers` around a copy of the same HF"
        )
        add(
            "model (v4 removed `HookedTransformer`; the bridge builds offline from a config directory)."
        )
        add(
            f"Its knockout reads {tl['knockout_max_weight']} in `hook_pattern` (checked before timing)."
        )
    else:
        add(f"TransformerLens: no column ({tl.get('reason', 'unavailable')}).")
    add("")
    add(
        "## P1b `run()` against plain HF over the same rows, the nnsight floor, and where the rest goes"
    )
    add("")
    add("`run()` on 4 prompts in one forward pass (edited rows plus one unedited reference row per")
    add(
        "prompt) against one plain HF eager forward over the same rows, and a bare nnsight trace that"
    )
    add("only saves the logits (the floor), side by side; ratios are medians of per-round ratios.")
    add("The last four columns split `run()`'s added time: plip-nn's in-trace work replayed on the")
    add(
        "pass's own tensors without nnsight (edits + verification + reads; summaries: log-probs, NLL"
    )
    add("of every token, KL, top-1), its host work (plans, padding, results), and what is left for")
    add(
        "nnsight beyond the floor (`.source` drill-downs, value hand-offs; noisy, as a difference)."
    )
    add("")
    add(
        "| model | case | rows | plain ms | floor ms | run ms | run / plain | floor / plain | run / floor | plip edits+verify+reads ms | plip summaries ms | plip host ms | nnsight beyond floor ms |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, p in res["P1b"].items():
        for case, c in p["cases"].items():
            ms = c["median_ms"]
            add(
                f"| {key} | {case} | {c['rows']} | {_f(ms['plain'], 1)} | {_f(ms['nnsight_floor'], 1)} | {_f(ms['run'], 1)} | {_f(c['run_vs_plain'])} | {_f(c['floor_vs_plain'])} | {_f(c['run_vs_floor'])} | {_f(ms['plip_edits_verify_reads'], 1)} | {_f(ms['plip_summaries'], 1)} | {_f(ms['plip_host'], 1)} | {_f(c['nnsight_beyond_floor_ms'], 1)} |"
            )
    add("")
    add("## P3 / P4 generation (knockout at one layer, greedy, batch 1)")
    add("")
    add(
        "| model | prompt + new | HF generate tok/s | nnsight generate (no intervention) tok/s | plip generate tok/s | plip (no edit) tok/s | P3 ratio | HF recompute s | plip recompute s | HF KV speedup | plip KV speedup | P4 share |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, p in res["P3"].items():
        tps = p["tokens_per_s"]
        r4 = res["P4"][key]["ratios"]
        add(
            f"| {key} | {p['prompt_len']} + {p['new_tokens']} | {_f(tps['hf_generate'], 1)} | {_f(tps['nnsight_generate'], 1)} | {_f(tps['plip_generate'], 1)} | {_f(tps['plip_generate_no_edit'], 1)} | {_f(p['ratios']['p3_tokens_per_s_vs_hf_generate'])} | {_f(p['median_s']['hf_recompute'], 2)} | {_f(p['median_s']['plip_recompute'], 2)} | {_f(r4['p4_hf_speedup_over_recompute'], 2)} | {_f(r4['p4_plip_speedup_over_recompute'], 2)} | {_f(r4['p4_fraction_of_hf_speedup'])} |"
        )
    add("")
    add(
        "plip generate = `plip_nn.generate.generate` (KV cache, edit re-applied each step); plip recompute"
    )
    add(
        "= `generate_recompute` (full forward with the accumulated edit at every step, the original"
    )
    add(
        "system's method); HF recompute = a plain full-forward greedy loop. The KV-cached and recomputed"
    )
    add(
        "plip tokens are identical (asserted), as are HF generate and the HF loop, and plip without edits"
    )
    add(
        "and HF generate. EOS is disabled in the generation config so all runs have the same length."
    )
    add("")
    add('## P5 bytes per prompt that would cross the network (`remote="local"`)')
    add("")
    add(
        "| model | seq | conditions | response (torch.save of saved summaries) | request (serialized trace) | pickled ItemResults | attention, one pass [L,H,S,S] f32 | attention / response |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for key, p in res["P5"].items():
        pp = p["per_prompt"]
        add(
            f"| {key} | {p['seq']} | {p['n_conditions']} | {pp['response_bytes']:.0f} B | {pp['request_bytes']:.0f} B | {pp['pickled_results_bytes']:.0f} B | {pp['attention_bytes_one_pass']:.0f} B | {_f(p['ratios']['attention_one_pass_over_response'], 0)}x |"
        )
    add("")
    add(
        "nnsight 0.8.1 returns results as `ResponseModel.pickle()` (`torch.save`, pickle protocol 4); the"
    )
    add("response column is that size for the session's saved summaries (captured from a real")
    add('`run(..., remote="local")`), shared over the prompts of the session. Requests are')
    add(
        "`RequestModel.serialize` blobs (code + plan + input ids). Shipping attention for every pass"
    )
    add("(baseline + each condition) would be (1 + conditions) times the one-pass column.")
    add("")
    add("## P6 peak resident memory (fresh subprocess per measurement)")
    add("")
    p6 = res["P6"]["larger"]
    add(
        f"batch {p6['batch']} x seq {p6['seq']}, larger config, median of {p6['repeats']} subprocesses per mode."
    )
    add("")
    add("| mode | peak RSS MiB | ratio | RSS added by the forward MiB | ratio |")
    add("|---|---|---|---|---|")
    for mode, peak in p6["peak_rss_mib"].items():
        r1 = "1 (reference)" if mode == "plain" else _f(p6["ratios"][f"{mode}_peak_rss"])
        r2 = "1 (reference)" if mode == "plain" else _f(p6["ratios"][f"{mode}_forward_added_rss"])
        add(
            f"| {mode} | {_f(peak, 1)} | {r1} | {_f(p6['forward_added_rss_mib'][mode], 1)} | {r2} |"
        )
    add("")
    add(
        "Both modes build and nnsight-wrap the same model, so the difference is the forward itself."
    )
    add(
        "Children run with `MALLOC_MMAP_THRESHOLD_=65536 MALLOC_ARENA_MAX=1` (the peak is the process's own need)."
    )
    add("")
    add("## P7 `plip_nn.intervene` inside a user's own trace")
    add("")
    add(
        "The user trace: 4 prompts in one batch, a logit lens at the middle layer and the final top-1,"
    )
    add(
        "saved. With `plip_nn.intervene` (verified): a knockout at the middle layer (`knockout_1`), or"
    )
    add("Scale(2) at every layer (`scale_all`, two calls around the lens).")
    add("")
    add("| model | seq | case | trace ms | trace + intervene ms | ratio |")
    add("|---|---|---|---|---|---|")
    for key, p in res["P7"].items():
        for case, c in p["cases"].items():
            med = c["median_s"]
            add(
                f"| {key} | {p['seq']} | {case} | {_f(1000 * med['trace'], 1)} | {_f(1000 * med['trace+intervene'], 1)} | {_f(c['ratio'])} |"
            )
    add("")
    L.extend(render_p9(res["P9"]))
    add("")
    add("## P8 generation batched across conditions and prompts (one KV-cached loop)")
    add("")
    p8 = res["P8"]["embedded_eager"]
    add(
        f"{p8['rows']} (prompt, condition) rows: {p8['prompts']} corpus generation prompts x 7 study-like conditions, {p8['new_tokens']} greedy tokens each."
    )
    add(
        "`plip bN`: `plip_nn.generate` with N rows per KV-cached loop (b1 = one row at a time), each row"
    )
    add(
        "with its own edits; `hf bN`: HF `generate` on the same prompts without edits, on the handle's"
    )
    add("default attention (eager / SDPA). Every batch size")
    add("gives the same tokens (checked).")
    add("")
    add(
        "attn `eager`: every edit on the softmax route; `auto`: knockout/Scale on the mask route under"
    )
    add("SDPA, SetValue rows on eager in their own loops (the study's default).")
    add("")
    add(
        "| attn | policy | variant | ms per generation | speed-up over b1 | vs HF at the same batch |"
    )
    add("|---|---|---|---|---|---|")
    for attn_key, p8 in res["P8"].items():
        _p8_rows(add, attn_key.removeprefix("embedded_"), p8)
    add("")
    from benchmarks.check import stamped

    return "\n".join(stamped(L, m["git_commit"]))


def render_p9(p9: dict[str, Any], note: str = "") -> list[str]:
    """The P9 section: ``plip_nn.intervene`` kept on in the user's own ``generate``."""
    first = next(iter(p9.values()))
    out = [
        "## P9 `plip_nn.intervene` kept on in the user's own `generate` (issue 24)",
        "",
        f"The user's `generate`: batch 1, {first['prompt']} prompt tokens + {first['new_tokens']} "
        "greedy tokens (`min_new_tokens`), a logit lens at the middle layer saved at every step,",
        "the tokens saved. With `plip_nn.intervene(..., steps=tracer.iter[:n])` looped over: a "
        "knockout at the middle layer, from",
        "the last prompt token to three earlier ones, under `markers` (the prompt's marker row; "
        "no generated marker) and",
        "under `continuation` (every new row edited and verified at every step). `unverified`: "
        "`verify=False`; `bare`: the same",
        "knockout written by hand in nnsight (no plip-nn code), for nnsight's own share. Every "
        "variant's tokens equal",
        f"`plip_nn.generate`'s (asserted). Clock: `{first['clock']}` of this process; ratio = "
        "tokens/s with / tokens/s without.",
    ]
    if note:
        out.append(note)
    out += [
        "",
        "| model | policy | generate tok/s | variant | tok/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for key, p in p9.items():
        for case, c in p["cases"].items():
            tps = c["tokens_per_s"]
            for variant, ratio in c["ratios"].items():
                out.append(
                    f"| {key} | {case} | {_f(tps['generate'], 1)} | "
                    f"{variant.removeprefix('generate+')} | {_f(tps[variant], 1)} | {_f(ratio)} |"
                )
    return out


def _p8_rows(add: Callable[[str], None], attn: str, p8: dict[str, Any]) -> None:
    for policy, p in p8["policies"].items():
        ms = p["ms_per_generation"]
        for name, v in ms.items():
            b = name.split("_b")[-1]
            up = hf = ""
            if name.startswith("plip"):
                if f"speedup_b{b}_vs_b{p8_first(p8)}" in p["ratios"]:
                    up = _f(p["ratios"][f"speedup_b{b}_vs_b{p8_first(p8)}"], 2)
                if f"b{b}_vs_hf" in p["ratios"]:
                    hf = _f(p["ratios"][f"b{b}_vs_hf"])
            add(f"| {attn} | {policy} | {name} | {_f(v, 1)} | {up} | {hf} |")


def p8_first(p8: dict[str, Any]) -> str:
    """The smallest batch size of P8 (the one-row-at-a-time reference)."""
    names = next(iter(p8["policies"].values()))["ms_per_generation"]
    return str(min(int(k.split("_b")[-1]) for k in names if k.startswith("plip")))


def _finite_positive(res: dict[str, Any]) -> None:
    for section in ("P1", "P1b", "P3", "P4", "P5", "P6", "P7", "P8", "P9"):
        for model, p in res[section].items():
            for k, v in p["ratios"].items():
                if not (isinstance(v, float) and math.isfinite(v) and v > 0):
                    raise AssertionError(
                        f"{section}/{model}/{k} = {v!r} is not a finite positive ratio"
                    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats (< 2 min)")
    parser.add_argument("--out", type=Path, default=HERE / "_out", help="directory for the JSON")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="markdown output (default: benchmarks/RESULTS.md; with --quick: OUT/RESULTS.md)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default 2; quick: 1, which stays stable when the CPU is shared)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: use an int >= 1")
    if argv is None:
        _reexec_with_allocator_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("nnsight").setLevel(logging.WARNING)
    sizes = QUICK if args.quick else FULL
    if args.threads is not None:
        sizes = replace(sizes, threads=args.threads)
    res = run_all(sizes, quick=args.quick)
    _finite_positive(res)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "results_quick.json" if args.quick else "results.json"
    json_path = atomic_write_text(args.out / name, json.dumps(res, indent=1, default=str))
    md_path = args.results or (args.out / "RESULTS.md" if args.quick else HERE / "RESULTS.md")
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    if args.threads is not None:
        command += f" --threads {args.threads}"
    # The heads step's section (python -m benchmarks.heads) is measured separately: keep it.
    from benchmarks.heads import kept_section

    kept = kept_section(md_path.read_text()) if md_path.exists() else ""
    atomic_write_text(md_path, render(res, command) + ("\n" + kept if kept else ""))
    sys.stdout.write(f"{json_path}\n{md_path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
