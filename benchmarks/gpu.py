"""``make bench-gpu``: plip-nn on one GPU with the roadmap's model families, in one prepared command.

``python -m benchmarks.gpu [--device cuda] [--tiny] [--out DIR] [--md PATH] [--budget-s 480]``

Random-init models built from the *real* configs of the roadmap's families (the public
``config.json`` fields below; nothing is downloaded), in bf16, with the embedded model's
tokenizer (its ids are valid in every vocabulary). For each model:

* **forward** -- ``run()`` against a plain HF forward over the same rows, with SDPA and with
  eager, plus the bare nnsight trace (the floor): a knockout at one layer (one pass) and the
  seven study-like conditions (mask route on SDPA; SetValue on eager, in its own pass);
* **generation** -- edited, KV-cached tokens/s (knockout at the middle layer on every row,
  ``route="auto"``: the mask route on SDPA; and ``route="softmax"`` on eager) against HF
  ``generate`` with SDPA, at batch 1, 8 and 64, on the shipped corpus's generation prompts;
  then the seven conditions mixed in one batch;

and once, on the Qwen config, **the whole study**: the default ``plip-nn triangle`` with our
corpus (``--dtype bfloat16``), its wall time and the projection to four models. Writes
``GPU.md`` and a JSON file. ``--tiny --device cpu`` runs every section on tiny configs of the
same families (a test runs it, so the script cannot rot). Every ratio is measured side by side
in one process (round-robin, median); CUDA timings synchronise before reading the clock.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import workload
from benchmarks.engine_overhead import cases as overhead_cases
from benchmarks.engine_overhead import n_rows
from benchmarks.models import random_prompts
from benchmarks.timing import medians, time_variants
from plip_nn.atomic import atomic_write_text

log = logging.getLogger("benchmarks.gpu")
HERE = Path(__file__).resolve().parent

# Public config.json fields of the roadmap's model families (transcribed; random weights).
ROADMAP: dict[str, dict[str, Any]] = {
    "Qwen2.5-Coder-7B": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "use_sliding_window": False,
        "max_window_layers": 28,
        "tie_word_embeddings": False,
        "vocab_size": 152064,
    },
    "StarCoder2-7B": {
        "model_type": "starcoder2",
        "hidden_size": 4608,
        "intermediate_size": 18432,
        "num_hidden_layers": 32,
        "num_attention_heads": 36,
        "num_key_value_heads": 4,
        "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": 16384,
        "norm_epsilon": 1e-5,
        "rope_theta": 1000000.0,
        "sliding_window": 4096,
        "use_bias": True,
        "vocab_size": 49152,
    },
    "CodeGemma-7B": {
        "model_type": "gemma",
        "hidden_size": 3072,
        "intermediate_size": 24576,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "head_dim": 256,
        "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "vocab_size": 256000,
    },
}
STUDY_MODEL = "Qwen2.5-Coder-7B"
# --tiny: the same families and code paths at toy size (the embedded tokenizer has 4096 ids).
TINY_FIELDS = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
}
PLIP_RS_GPU_HOURS = 24.0  # PLIP-rs: 4 models x 7 conditions x 50 prompts (the issue's figure)
PLIP_RS_MODELS = 4


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """Workload sizes of a run."""

    fwd_prompts: int
    fwd_seq: int
    gen_batches: tuple[int, ...]
    gen_new: int
    repeats: int
    study_limit: int | None  # samples per language and kind (None: the whole corpus)
    study_max_new: int | None  # None: the study's default


FULL = Sizes(
    fwd_prompts=4,
    fwd_seq=256,
    gen_batches=(1, 8, 64),
    gen_new=40,
    repeats=3,
    study_limit=None,
    study_max_new=None,
)
TINY = Sizes(
    fwd_prompts=2,
    fwd_seq=24,
    gen_batches=(1, 8),
    gen_new=3,
    repeats=1,
    study_limit=2,
    study_max_new=3,
)


def model_fields(name: str, tiny: bool) -> dict[str, Any]:
    """The config fields of ``name`` (toy dimensions with ``tiny``)."""
    fields = copy.deepcopy(ROADMAP[name])
    if tiny:
        fields.update(TINY_FIELDS)
        if "head_dim" in fields:
            fields["head_dim"] = TINY_FIELDS["hidden_size"] // TINY_FIELDS["num_attention_heads"]
    return fields


def tokenizer() -> Any:
    """The embedded model's tokenizer (offline)."""
    from transformers import AutoTokenizer

    from plip_nn.embedded import EMBEDDED_MODEL_DIR

    return AutoTokenizer.from_pretrained(str(EMBEDDED_MODEL_DIR))


def build(name: str, fields: dict[str, Any], device: str, dtype: torch.dtype, tok: Any) -> Any:
    """A random-init model of ``fields`` on ``device`` (initialised there), wrapped with
    ``attn="auto"`` (SDPA, eager per pass where an edit needs it)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from plip_nn.models import wrap_model

    fields = dict(fields)
    model_type = fields.pop("model_type")
    special = {k: tok.eos_token_id for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    config = AutoConfig.for_model(model_type, **fields, **special)
    torch.manual_seed(0)
    with torch.device(device):
        hf = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    hf.eval()
    hf.generation_config.eos_token_id = None  # fixed-length runs, compared token for token
    return wrap_model(hf, tok, name=f"random {name}", attn="auto")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str) -> Callable[[], object]:
    def call() -> object:
        out = fn()
        _sync(device)
        return out

    return call


@contextlib.contextmanager
def _implementation(hf: Any, impl: str) -> Iterator[None]:
    before = hf.config._attn_implementation
    hf.set_attn_implementation(impl)
    try:
        yield
    finally:
        hf.set_attn_implementation(before)


def _peak_mib(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def forward_section(handle: Any, sizes: Sizes, device: str) -> dict[str, Any]:
    """``run()`` vs plain HF (SDPA and eager) and the bare nnsight trace, same rows."""
    from plip_nn.trace import run

    h = handle
    vocab = int(h.tokenizer.vocab_size)
    prompts = random_prompts(vocab, sizes.fwd_prompts, sizes.fwd_seq, seed=11)
    out: dict[str, Any] = {"prompts": sizes.fwd_prompts, "seq": sizes.fwd_seq, "cases": {}}
    chosen = overhead_cases(h, prompts)
    for name in ("knockout_1", "seven_conditions"):
        items = chosen[name]
        rows = n_rows(items)
        ids = torch.tensor([prompts[r % len(prompts)] for r in range(rows)], device=h.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def plain(impl: str, inputs: dict = inputs) -> object:
            with torch.inference_mode(), _implementation(h.hf, impl):
                return h.hf(**inputs).logits

        def floor(inputs: dict = inputs) -> object:
            with torch.inference_mode(), h.nn.trace(inputs):
                logits = h.nn.output.logits.save()
            return logits

        variants: dict[str, Callable[[], object]] = {
            "hf_sdpa": lambda: plain("sdpa"),
            "hf_eager": lambda: plain("eager"),
            "nnsight_sdpa": floor,
            "run_auto": functools.partial(run, h, items, batch_size=len(items)),
            "run_eager": functools.partial(run, h, items, batch_size=len(items), route="softmax"),
        }
        timed = {k: _timed(v, device) for k, v in variants.items()}
        med = medians(time_variants(timed, repeats=sizes.repeats))
        out["cases"][name] = {
            "rows": rows,
            "median_ms": {k: 1000 * v for k, v in med.items()},
            "ratios": {
                "run_auto_vs_hf_sdpa": med["run_auto"] / med["hf_sdpa"],
                "run_eager_vs_hf_eager": med["run_eager"] / med["hf_eager"],
                "nnsight_floor_vs_hf_sdpa": med["nnsight_sdpa"] / med["hf_sdpa"],
                "hf_sdpa_vs_hf_eager": med["hf_sdpa"] / med["hf_eager"],
                "run_auto_vs_run_eager": med["run_auto"] / med["run_eager"],
            },
        }
    out["peak_mib"] = _peak_mib(device)
    return out


def _hf_generate(handle: Any, reqs: list, n_new: int) -> list[tuple[int, ...]]:
    from plip_nn.padding import pad_batch, pad_id

    pad = pad_id(handle)
    inputs, _ = pad_batch([r.input_ids for r in reqs], pad, handle.device)
    del inputs["position_ids"]
    with torch.inference_mode(), _implementation(handle.hf, "sdpa"):
        seqs = handle.hf.generate(
            **inputs, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
            pad_token_id=pad,
        )  # fmt: skip
    width = inputs["input_ids"].shape[1]
    return [tuple(int(t) for t in row[width:]) for row in seqs]


def generation_section(handle: Any, sizes: Sizes, device: str) -> dict[str, Any]:
    """Edited KV-cached tokens/s against HF ``generate`` (SDPA) at each batch size."""
    from plip_nn.edits import Condition
    from plip_nn.generate import generate

    h = handle
    n_max = max(sizes.gen_batches)
    prompts = workload.corpus_prompts(h, n_max)
    out: dict[str, Any] = {"new_tokens": sizes.gen_new, "batches": {}}
    for batch in sizes.gen_batches:
        reqs = workload.generation_requests(h, prompts[:batch], workload.knockout_only(h))
        plain = [
            type(r)(key=r.key, sample_id=r.sample_id, input_ids=r.input_ids,
                    condition=Condition(name="baseline"))
            for r in reqs
        ]  # fmt: skip
        got: dict[str, list] = {}

        def hf(reqs: list = reqs, got: dict = got) -> None:
            got["hf"] = _hf_generate(h, reqs, sizes.gen_new)

        def plip(route: str, reqs: list = reqs, batch: int = batch, got: dict = got) -> None:
            res = generate(h, reqs, max_new_tokens=sizes.gen_new, batch_size=batch, route=route)
            got[route] = [r.new_token_ids for r in res]

        def unedited(plain: list = plain, batch: int = batch, got: dict = got) -> None:
            res = generate(h, plain, max_new_tokens=sizes.gen_new, batch_size=batch)
            got["unedited"] = [r.new_token_ids for r in res]

        variants: dict[str, Callable[[], object]] = {
            "hf_generate_sdpa": hf,
            "plip_auto": lambda: plip("auto"),
            "plip_softmax": lambda: plip("softmax"),
            "plip_unedited": unedited,
        }
        timed = {k: _timed(v, device) for k, v in variants.items()}
        med = medians(time_variants(timed, repeats=sizes.repeats))
        tokens = batch * sizes.gen_new
        out["batches"][str(batch)] = {
            "rows": batch,
            "median_s": med,
            "tokens_per_s": {k: tokens / v for k, v in med.items()},
            "ratios": {
                "plip_auto_vs_hf": med["hf_generate_sdpa"] / med["plip_auto"],
                "plip_softmax_vs_hf": med["hf_generate_sdpa"] / med["plip_softmax"],
                "plip_unedited_vs_hf": med["hf_generate_sdpa"] / med["plip_unedited"],
            },
            "unedited_equals_hf": got["unedited"] == got["hf"],
            "auto_equals_softmax_rows": sum(
                a == b for a, b in zip(got["auto"], got["softmax"], strict=True)
            ),
        }
    grid = workload.study_grid(h)
    per = max(1, n_max // 7)
    reqs = workload.generation_requests(h, prompts[:per], grid)
    t0 = time.perf_counter()
    generate(h, reqs, max_new_tokens=sizes.gen_new, batch_size=n_max)
    _sync(device)
    dt = time.perf_counter() - t0
    out["study_mix"] = {
        "rows": len(reqs),
        "conditions": 7,
        "batch": n_max,
        "seconds": dt,
        "tokens_per_s": len(reqs) * sizes.gen_new / dt,
    }
    out["peak_mib"] = _peak_mib(device)
    return out


def study_section(handle: Any, sizes: Sizes, device: str, dtype: str, work: Path) -> dict[str, Any]:
    """The default ``plip-nn triangle`` on this model (saved with the embedded tokenizer)."""
    import pandas as pd

    from experiments import cli

    model_dir = work / "model"
    t0 = time.perf_counter()
    handle.hf.save_pretrained(model_dir)
    handle.tokenizer.save_pretrained(model_dir)
    save_s = time.perf_counter() - t0
    run_dir = work / "triangle"
    argv = ["triangle", "--model", str(model_dir), "--out", str(run_dir), "--device", device,
            "--dtype", dtype, "--no-progress"]  # fmt: skip
    if sizes.study_limit is not None:
        argv += ["--limit", str(sizes.study_limit)]
    if sizes.study_max_new is not None:
        argv += ["--max-new-tokens", str(sizes.study_max_new)]
    t0 = time.perf_counter()
    code = cli.main(argv)
    _sync(device)
    wall = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"plip-nn {' '.join(argv)} exited {code}")
    gens = pd.read_parquet(run_dir / "generations.parquet")
    recs = pd.read_parquet(run_dir / "records.parquet")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {
        "command": "plip-nn " + " ".join(argv).replace(str(work), "WORK"),
        "save_model_s": save_s,
        "wall_s": wall,
        "generations": len(gens),
        "records": len(recs),
        "conditions": sorted(gens["condition"].unique().tolist()),
        "attention": manifest.get("attention"),
        "peak_mib": _peak_mib(device),
    }


def projection(res: dict[str, Any]) -> dict[str, Any] | None:
    """Wall time of four models: the study's time scaled by each family's forward time
    relative to the study model (the mean ratio stands in for a fourth family)."""
    study = res.get("study")
    if not study or "wall_s" not in study:
        return None
    base = res["models"].get(STUDY_MODEL, {}).get("forward")
    scale = {}
    for name, m in res["models"].items():
        fwd = m.get("forward")
        if base and fwd:
            b = base["cases"]["seven_conditions"]["median_ms"]["run_auto"]
            scale[name] = fwd["cases"]["seven_conditions"]["median_ms"]["run_auto"] / b
    ratios = list(scale.values()) or [1.0]
    four = study["wall_s"] * (
        sum(ratios) + (PLIP_RS_MODELS - len(ratios)) * sum(ratios) / len(ratios)
    )
    return {
        "per_model_scale": scale,
        "four_models_s": four,
        "four_models_gpu_hours": four / 3600,
        "plip_rs_gpu_hours": PLIP_RS_GPU_HOURS,
        "speedup_vs_plip_rs": PLIP_RS_GPU_HOURS * 3600 / four,
    }


def machine(device: str) -> dict[str, Any]:
    import nnsight
    import transformers

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "nnsight": getattr(nnsight, "__version__", "?"),
        "cpu_count": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_mib=props.total_memory // 2**20, cuda=torch.version.cuda)
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        info["git_commit"] = ""
    return info


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every section within ``args.budget_s``; a failing section is recorded, not fatal."""
    sizes = TINY if args.tiny else FULL
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "meta": machine(args.device),
        "tiny": args.tiny,
        "sizes": asdict(sizes),
        "dtype": args.dtype,
        "budget_s": args.budget_s,
        "models": {},
        "errors": [],
    }
    tok = tokenizer()
    order = [STUDY_MODEL, *[m for m in ROADMAP if m != STUDY_MODEL]]
    work = Path(tempfile.mkdtemp(prefix="plip_gpu_"))
    try:
        for name in order:
            left = args.budget_s - (time.perf_counter() - t_start)
            if name != STUDY_MODEL and left < args.budget_s * 0.15:
                res["models"][name] = {"skipped": f"budget: {left:.0f} s left"}
                continue
            fields = model_fields(name, args.tiny)
            entry: dict[str, Any] = {"config": fields}
            res["models"][name] = entry
            try:
                t0 = time.perf_counter()
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                handle = build(name, fields, args.device, dtype, tok)
                entry["build_s"] = time.perf_counter() - t0
                entry["params_b"] = sum(p.numel() for p in handle.hf.parameters()) / 1e9
                entry["attention"] = handle.attention_policy()
            except Exception as err:
                res["errors"].append(_error(f"{name}: build", err))
                continue
            sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("forward", functools.partial(forward_section, handle, sizes, args.device)),
                ("generation", functools.partial(generation_section, handle, sizes, args.device)),
            ]
            for section, fn in sections:
                try:
                    t0 = time.perf_counter()
                    entry[section] = fn()
                    entry[section]["section_s"] = time.perf_counter() - t0
                except Exception as err:
                    res["errors"].append(_error(f"{name}: {section}", err))
            if name == STUDY_MODEL and not args.no_study:
                try:
                    res["study"] = study_section(handle, sizes, args.device, args.dtype, work)
                except Exception as err:
                    res["errors"].append(_error(f"{name}: study", err))
            del handle
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            log.info("%s done at %.0f s", name, time.perf_counter() - t_start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["projection"] = projection(res)
    res["meta"]["wall_s"] = time.perf_counter() - t_start
    res["meta"]["load_avg_end"] = os.getloadavg()
    return res


def _error(where: str, err: BaseException) -> dict[str, str]:
    log.error("%s failed: %s", where, err)
    return {
        "where": where,
        "error": f"{type(err).__name__}: {err}",
        "trace": traceback.format_exc(),
    }


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def render(res: dict[str, Any], command: str) -> str:
    """GPU.md from the result dict."""
    m = res["meta"]
    lines = ["# plip-nn on a GPU", ""]
    add = lines.append
    add(f"Generated by `{command}` on {m['date']} (git {m.get('git_commit', '')}, wall "
        f"{m['wall_s']:.0f} s of a {res['budget_s']} s budget).")  # fmt: skip
    gpu = m.get("gpu", "no GPU")
    add(f"Device {m['device']} ({gpu}), torch {m['torch']} (CUDA {m.get('cuda', '-')}), "
        f"transformers {m['transformers']}, nnsight {m['nnsight']}; dtype {res['dtype']}.")  # fmt: skip
    if res["tiny"]:
        add("**--tiny**: toy dimensions of the same families; the timings say nothing about a GPU.")
    add("Random-init models from the public configs (nothing downloaded), the embedded model's")
    add("tokenizer. Ratios are medians of side-by-side, round-robin runs in one process.")
    add("")
    add("## Forward: `run()` against plain HF over the same rows")
    add("")
    add(
        "| model | case | rows | HF SDPA ms | HF eager ms | nnsight floor (SDPA) | run auto ms | run eager ms | run auto / HF SDPA | run eager / HF eager | floor / HF SDPA |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, entry in res["models"].items():
        fwd = entry.get("forward")
        if not fwd:
            continue
        for case, c in fwd["cases"].items():
            ms, r = c["median_ms"], c["ratios"]
            add(f"| {name} | {case} | {c['rows']} | {_f(ms['hf_sdpa'], 1)} | {_f(ms['hf_eager'], 1)} "
                f"| {_f(ms['nnsight_sdpa'], 1)} | {_f(ms['run_auto'], 1)} | {_f(ms['run_eager'], 1)} "
                f"| {_f(r['run_auto_vs_hf_sdpa'], 3)} | {_f(r['run_eager_vs_hf_eager'], 3)} "
                f"| {_f(r['nnsight_floor_vs_hf_sdpa'], 3)} |")  # fmt: skip
    add("")
    add(f"Prompts of {res['sizes']['fwd_seq']} random tokens. `run auto`: knockout/Scale on the")
    add("additive-mask route under SDPA, SetValue on eager in its own pass; `run eager`: every")
    add("edit on the softmax route. `run()` also computes KL, NLL of every token and top-1 and")
    add("verifies every edit; one unedited reference row per prompt is part of its rows.")
    add("")
    add("## Generation: edited, KV-cached tokens/s against HF `generate` (SDPA)")
    add("")
    add(
        "| model | batch | HF generate tok/s | plip auto tok/s | plip softmax (eager) tok/s | plip unedited tok/s | auto / HF | softmax / HF | unedited = HF tokens |"
    )
    add("|---|---|---|---|---|---|---|---|---|")
    for name, entry in res["models"].items():
        gen = entry.get("generation")
        if not gen:
            continue
        for batch, g in gen["batches"].items():
            t, r = g["tokens_per_s"], g["ratios"]
            add(f"| {name} | {batch} | {_f(t['hf_generate_sdpa'], 1)} | {_f(t['plip_auto'], 1)} "
                f"| {_f(t['plip_softmax'], 1)} | {_f(t['plip_unedited'], 1)} | {_f(r['plip_auto_vs_hf'], 3)} "
                f"| {_f(r['plip_softmax_vs_hf'], 3)} | {g['unedited_equals_hf']} |")  # fmt: skip
    add("")
    add(f"{res['sizes']['gen_new']} new tokens per row, greedy; knockout at the middle layer from")
    add("the marker to the function's tokens on every row (shipped corpus prompts).")
    add("")
    add("| model | seven conditions mixed: rows | batch | s | tok/s |")
    add("|---|---|---|---|---|")
    for name, entry in res["models"].items():
        mix = (entry.get("generation") or {}).get("study_mix")
        if mix:
            add(
                f"| {name} | {mix['rows']} | {mix['batch']} | {_f(mix['seconds'])} | {_f(mix['tokens_per_s'], 1)} |"
            )
    add("")
    add("## The whole study")
    add("")
    study = res.get("study")
    if study:
        add(f"`{study['command']}`: **{_f(study['wall_s'], 0)} s** ({study['records']} records,")
        add(
            f"{study['generations']} generations over {len(study['conditions'])} conditions; saving the"
        )
        add(
            f"model took {_f(study['save_model_s'], 0)} s before that). Attention: `{study['attention']}`."
        )
        proj = res.get("projection")
        if proj:
            add("")
            add(f"Projection to {PLIP_RS_MODELS} models: **{_f(proj['four_models_s'] / 60, 1)} min** "
                f"({_f(proj['four_models_gpu_hours'], 3)} GPU-hours; per-family scale from the forward "
                f"times: {', '.join(f'{k} {v:.2f}' for k, v in proj['per_model_scale'].items())}). "
                f"PLIP-rs needed about {PLIP_RS_GPU_HOURS:.0f} GPU-hours for 4 models x 7 conditions x "
                f"50 prompts: {_f(proj['speedup_vs_plip_rs'], 0)}x.")  # fmt: skip
    else:
        add("Not run (see errors).")
    add("")
    for name, entry in res["models"].items():
        if "skipped" in entry:
            add(f"- {name}: skipped ({entry['skipped']})")
    if res["errors"]:
        add("## Errors")
        add("")
        for e in res["errors"]:
            add(f"- {e['where']}: `{e['error']}`")
        add("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="toy configs of the same families")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                        help="default: bfloat16 on cuda, float32 on cpu")  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "_out", help="directory for gpu.json")
    parser.add_argument(
        "--md",
        type=Path,
        default=None,
        help="markdown (default benchmarks/GPU.md; --tiny: OUT/GPU.md)",
    )
    parser.add_argument("--budget-s", type=float, default=480.0, help="time budget in seconds")
    parser.add_argument("--no-study", action="store_true", help="skip the whole-study section")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here; use --device cpu (with --tiny)")
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("nnsight", "transformers", "plip_nn", "experiments", "analysis"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    res = run_all(args)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(args.out / ("gpu_tiny.json" if args.tiny else "gpu.json"),
                                  json.dumps(res, indent=1, default=str))  # fmt: skip
    md = args.md or (args.out / "GPU.md" if args.tiny else HERE / "GPU.md")
    command = "python -m benchmarks.gpu " + " ".join(argv if argv is not None else sys.argv[1:])
    atomic_write_text(md, render(res, command.strip()))
    sys.stdout.write(f"{json_path}\n{md}\n")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
