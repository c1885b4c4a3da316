"""Training the embedded model: the model, the optimisation loop, the whole run
(:func:`train_model`) and the export of a stopped run's checkpoint."""

from __future__ import annotations

import itertools
import json
import logging
import math
import platform
import random
import shutil
import sysconfig
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from synthetic_code import CodeGenerator

from embedded.card import cpu_name, model_card, recorded_command
from embedded.config import EVAL_SEQ_LEN, TrainConfig
from embedded.data import (
    encode_stream,
    eval_function_names,
    eval_signatures,
    gather_python,
    gather_rust,
    identifier_words,
    is_val,
    train_tokenizer,
)
from embedded.evaluate import (
    calls_rate,
    copy_probes,
    evaluate_completions,
    evaluate_corpus_prompts,
    perplexity,
    unigram_perplexity,
)

log = logging.getLogger("train_embedded_model")


# -- training -----------------------------------------------------------------------------------
def build_model(cfg: TrainConfig, tokenizer: Any) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    eos = tokenizer.eos_token_id
    config_cls: Any = Qwen2Config  # its stub omits rope_theta, which it accepts
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return Qwen2ForCausalLM._from_config(config, attn_implementation="sdpa")


def train(
    cfg: TrainConfig,
    model: Any,
    streams: dict[str, np.ndarray],
    *,
    tokenizer: Any = None,
    probes: Sequence[tuple[str, str, str]] = (),
) -> dict[str, Any]:
    """AdamW + warmup + cosine decay on random windows drawn from the streams by ``cfg.mix``.

    With ``cfg.minutes`` the cosine runs over wall time instead of steps and training stops when
    the time is up (or at ``cfg.steps``): on a shared CPU the step rate is not predictable.
    With ``cfg.checkpoint_dir`` the model, optimizer, step, elapsed time and random states are
    saved atomically every ``cfg.checkpoint_every_s`` seconds and a rerun resumes from them, so
    a long CPU run survives being stopped. Every ``cfg.probe_every_s`` seconds the greedy call
    rate on held-out random-name ``probes`` is logged (and the weights kept beside it).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    names = [name for name, _ in cfg.mix]
    weights = np.array([w for _, w in cfg.mix])
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    history: list[float] = []
    probe_log: list[dict[str, Any]] = []
    first_step, elapsed0 = 0, 0.0
    ckpt = None if cfg.checkpoint_dir is None else cfg.checkpoint_dir / "last.pt"
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        rng.bit_generator.state = state["rng"]
        first_step, elapsed0 = state["step"], state["elapsed"]
        history, probe_log = state["history"], state["probes"]
        log.info("resumed from %s at step %d (%.0f s trained)", ckpt, first_step, elapsed0)

    budget = None if cfg.minutes is None else cfg.minutes * 60.0

    def elapsed() -> float:
        return elapsed0 + time.time() - start

    def progress(step: int) -> float:
        if budget is not None:
            return min(1.0, elapsed() / budget)
        return (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = progress(step)
        return cfg.lr * (
            cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        )

    def save_checkpoint(step: int) -> None:
        assert cfg.checkpoint_dir is not None and ckpt is not None
        cfg.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                "rng": rng.bit_generator.state, "step": step, "elapsed": elapsed(),
                "history": history, "probes": probe_log,
            },
            tmp,
        )  # fmt: skip
        tmp.replace(ckpt)

    def probe(step: int) -> None:
        model.eval()
        rates = calls_rate(model, tokenizer, probes)
        model.train()
        probe_log.append({"step": step, "seconds": elapsed(), **rates})
        log.info("probe step %d: held-out random-name call rate %s", step, rates)
        if cfg.checkpoint_dir is not None:
            weights_only = {k: v.half() for k, v in model.state_dict().items()}
            torch.save(weights_only, cfg.checkpoint_dir / f"weights_step{step}.pt")

    model.train()
    start = time.time()
    last_ckpt = last_probe = time.time()
    window = cfg.seq_len
    steps_done = first_step
    for step in range(first_step, cfg.steps):
        if budget is not None and step >= cfg.warmup and elapsed() >= budget:
            break
        sources = rng.choice(len(names), size=cfg.batch_size, p=weights / weights.sum())
        rows = []
        for s in sources:
            stream = streams[names[s]]
            off = int(torch.randint(0, len(stream) - window, (1,), generator=gen))
            rows.append(stream[off : off + window])
        x = torch.from_numpy(np.stack(rows).astype(np.int64))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.append(loss.item())
        steps_done = step + 1
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info(
                "step %d/%d loss %.3f lr %.2e (%.0f s)",
                step, cfg.steps, history[-1], lr_at(step), elapsed(),
            )  # fmt: skip
        if probes and tokenizer is not None and time.time() - last_probe >= cfg.probe_every_s:
            probe(steps_done)
            last_probe = time.time()
        if ckpt is not None and time.time() - last_ckpt >= cfg.checkpoint_every_s:
            save_checkpoint(steps_done)
            last_ckpt = time.time()
    if ckpt is not None:
        save_checkpoint(steps_done)
    if probes and tokenizer is not None:
        probe(steps_done)
    model.eval()
    tail = history[-50:]
    return {
        "train_seconds": elapsed(),
        "final_train_loss_mean_last_50": sum(tail) / len(tail),
        "train_loss_every_50": history[::50],
        "steps": steps_done,
        "tokens_seen": steps_done * cfg.batch_size * cfg.seq_len,
        "probes": probe_log,
    }


# -- main ---------------------------------------------------------------------------------------
def train_model(cfg: TrainConfig) -> Path:
    """Gather data, train tokenizer and model, save, evaluate, write the card (beside cfg.out)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    t0 = time.time()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    py_files, py_source = gather_python(stdlib)
    rs_files, rs_sources = gather_rust(cfg.data_dir)
    log.info("python: %d files, rust: %d files", len(py_files), len(rs_files))
    all_text = "\n".join(py_files.values()) + "\n".join(rs_files.values())
    leaked = [sig for sig in eval_signatures() if sig.strip() in all_text]
    if leaked:
        log.warning("held-out signatures found verbatim in the gathered code: %s", leaked)

    split: dict[str, list[str]] = {}
    for lang, files in (("python", py_files), ("rust", rs_files)):
        split[lang] = [t for p, t in files.items() if not is_val(p, cfg.val_percent)]
        split[f"{lang}_val"] = [t for p, t in files.items() if is_val(p, cfg.val_percent)]
    exclude = eval_function_names()
    gen = CodeGenerator(seed=cfg.seed, exclude=exclude)
    log.info("synthetic name pool: %d names", len(gen.names))
    split["python_synthetic"] = [gen.python_document() for _ in range(cfg.synthetic_docs)]
    split["rust_synthetic"] = [gen.rust_document() for _ in range(cfg.synthetic_docs)]
    val_gen = CodeGenerator(seed=cfg.seed + 1_000_003, exclude=exclude)
    split["python_synthetic_val"] = [val_gen.python_document() for _ in range(400)]
    split["rust_synthetic_val"] = [val_gen.rust_document() for _ in range(400)]
    words: list[str] = []
    if cfg.name_words:
        words = identifier_words(itertools.chain(split["python"], split["rust"]))
        log.info("copy names join %d identifier words of the training code", len(words))
    if any(key.endswith("_copy") for key, _ in cfg.mix):
        copy_gen = CodeGenerator(
            seed=cfg.seed + 7, exclude=exclude, random_names=True, words=words,
            arity_balance=cfg.arity_balance,
        )  # fmt: skip
        split["python_copy"] = [copy_gen.python_document() for _ in range(cfg.copy_docs)]
        split["rust_copy"] = [copy_gen.rust_document() for _ in range(cfg.copy_docs)]
    if any(key.endswith("_wrap") for key, _ in cfg.mix):
        import real_code_copy

        wrapped = real_code_copy.build(
            split["python"], split["rust"], n_docs=cfg.wrap_docs, seed=cfg.seed + 11,
            exclude=exclude, words=words, arity_balance=cfg.arity_balance,
        )  # fmt: skip
        log.info("real-function copy docs from %s Python / %s Rust functions", *wrapped["_counts"])
        split["python_wrap"], split["rust_wrap"] = wrapped["python_wrap"], wrapped["rust_wrap"]
    probe_gen = CodeGenerator(
        seed=cfg.seed + 99_991, exclude=exclude, random_names=True, words=words
    )
    probes = copy_probes(probe_gen, cfg.probes_per_language)

    def tokenizer_texts() -> Iterator[str]:
        for key in ("python", "rust", "python_synthetic", "rust_synthetic"):
            yield from split[key]

    base: dict[str, Any] | None = None
    if cfg.init_from is not None:
        # Continue an existing model with its own tokenizer (loaded before --out may replace it).
        tokenizer = AutoTokenizer.from_pretrained(cfg.init_from)
        base_metrics = cfg.init_from / "training_metrics.json"
        if base_metrics.exists():
            prev = json.loads(base_metrics.read_text())
            base = {
                key: prev.get(key)
                for key in ("command", "machine", "total_seconds", "base", "config")
            } | {"train": {k: v for k, v in prev["train"].items() if k != "train_loss_every_50"}}
            base["completions"] = {k: v for k, v in prev["completions"].items() if "fraction" in k}
            base["val"] = prev["val"]
    else:
        tokenizer = train_tokenizer(tokenizer_texts(), cfg.vocab_size)
    streams = {
        key: encode_stream(
            tokenizer, docs,
            split_fraction=cfg.split_fraction if "synthetic" in key or "copy" in key else 0.0,
            seed=cfg.seed,
        )
        for key, docs in split.items()
    }  # fmt: skip
    for key, stream in streams.items():
        log.info("%s: %d docs, %d tokens", key, len(split[key]), len(stream))

    if cfg.init_from is not None:
        model: Any = AutoModelForCausalLM.from_pretrained(
            cfg.init_from, dtype=torch.float32, attn_implementation="sdpa"
        )
    else:
        model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %.2fM parameters", n_params / 1e6)
    train_info = train(
        cfg, model, {k: streams[k] for k, _ in cfg.mix}, tokenizer=tokenizer, probes=probes
    )

    if cfg.out.exists():
        shutil.rmtree(cfg.out)
    cfg.out.mkdir(parents=True)
    model.to(torch.float16).save_pretrained(cfg.out)
    tokenizer.save_pretrained(cfg.out)
    eos = tokenizer.eos_token_id
    GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(cfg.out)

    # Evaluate what ships: the saved float16 weights, loaded back and computed in float32.
    shipped = AutoModelForCausalLM.from_pretrained(cfg.out, dtype=torch.float32)
    shipped.eval()
    shipped_tok = AutoTokenizer.from_pretrained(cfg.out)
    vocab = len(shipped_tok)
    val: dict[str, Any] = {}
    for lang in ("python", "rust"):
        for kind, train_key in (("", lang), ("_synthetic", f"{lang}_synthetic")):
            key = f"{lang}{kind}_val"
            if len(streams[key]) <= EVAL_SEQ_LEN:
                continue
            ppl, targets = perplexity(shipped, streams[key], EVAL_SEQ_LEN, max_blocks=200)
            val[key] = {
                "ppl": ppl,
                "loss": math.log(ppl),
                "unigram_ppl": unigram_perplexity(streams[train_key], targets, vocab),
                "tokens": int(targets.size),
            }
            log.info("%s: ppl %.2f, unigram %.2f", key, ppl, val[key]["unigram_ppl"])
    completions = evaluate_completions(shipped, shipped_tok)
    completions["corpus"] = evaluate_corpus_prompts(shipped, shipped_tok)
    completions["held_out_random_names"] = calls_rate(shipped, shipped_tok, probes)
    log.info("completion call rates: %s", {k: v for k, v in completions.items() if "fraction" in k})
    log.info("corpus prompts: %s", completions["corpus"])
    sizes = {p.name: p.stat().st_size for p in sorted(cfg.out.iterdir())}
    metrics = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "parameters": n_params,
        "non_embedding_parameters": n_params - model.get_input_embeddings().weight.numel(),
        "vocab_size": vocab,
        "data": {
            "python": py_source,
            "rust": rs_sources,
            "docs": {k: len(v) for k, v in split.items()},
            "tokens": {k: len(v) for k, v in streams.items()},
            "held_out_signatures_in_training_text": leaked,
            "excluded_function_names": sorted(exclude),
        },
        "train": train_info,
        "val": val,
        "completions": completions,
        "file_sizes": sizes,
        "total_seconds": time.time() - t0,
        "machine": f"{platform.machine()} {cpu_name()}, torch {torch.__version__}, "
        f"{cfg.threads} threads, bf16 autocast",
        "command": recorded_command(cfg),
        "base": base,
    }
    (cfg.out / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    card = cfg.out.parent / "MODEL_CARD.md"
    card.write_text(model_card(metrics))
    log.info("wrote %s and %s (%.0f s total)", cfg.out, card, metrics["total_seconds"])
    return cfg.out


def export_checkpoint(cfg: TrainConfig) -> Path:
    """Save the model of a stopped run (``cfg.checkpoint_dir/last.pt``) as a model directory.

    Called with the stopped run's own flags plus ``--export-checkpoint`` (and a new ``--out``),
    so ``training_metrics.json`` records that run's config, command, steps, time and probes;
    the directory can then be continued with ``--init-from``. No evaluation is run here.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if cfg.init_from is None or cfg.checkpoint_dir is None:
        raise SystemExit("--export-checkpoint needs the run's --init-from and --checkpoint-dir")
    state = torch.load(cfg.checkpoint_dir / "last.pt", weights_only=False)
    model = AutoModelForCausalLM.from_pretrained(cfg.init_from, dtype=torch.float32)
    model.load_state_dict(state["model"])
    tokenizer = AutoTokenizer.from_pretrained(cfg.init_from)
    prev = json.loads((cfg.init_from / "training_metrics.json").read_text())
    cfg.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(cfg.out)  # float32: an intermediate stage, continued later
    tokenizer.save_pretrained(cfg.out)
    eos = tokenizer.eos_token_id
    GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(cfg.out)
    history = state["history"]
    metrics = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "train": {
            "train_seconds": state["elapsed"],
            "final_train_loss_mean_last_50": sum(history[-50:]) / len(history[-50:]),
            "train_loss_every_50": history[::50],
            "steps": state["step"],
            "tokens_seen": state["step"] * cfg.batch_size * cfg.seq_len,
            "probes": state["probes"],
            "stopped_early": True,
        },
        "val": {},
        "completions": {},
        "machine": f"{platform.machine()} {cpu_name()}, torch {torch.__version__}, "
        f"{cfg.threads} threads, bf16 autocast",
        "command": recorded_command(cfg),
        "total_seconds": state["elapsed"],
        "base": {key: prev.get(key) for key in ("command", "machine", "total_seconds", "base",
                                                "config", "train", "val", "completions")},
    }  # fmt: skip
    (cfg.out / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    log.info("exported step %d of %s to %s", state["step"], cfg.checkpoint_dir, cfg.out)
    return cfg.out
