"""MODEL_CARD.md of the embedded model: the recorded command of a run and the card from its
metrics."""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

from embedded_model_eval_prompts import PYTHON_DOCTEST_PROMPTS, RUST_TEST_PROMPTS

from embedded.config import DEFAULT_OUT, TrainConfig
from embedded.evaluate import prompt_variants

log = logging.getLogger("train_embedded_model")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def recorded_command(cfg: TrainConfig) -> str:
    cmd = f".venv/bin/python scripts/train_embedded_model.py --steps {cfg.steps} --seed {cfg.seed}"
    if cfg.minutes is not None:
        cmd += f" --minutes {cfg.minutes:g}"
    if cfg.synthetic_docs != TrainConfig.synthetic_docs:
        cmd += f" --synthetic-docs {cfg.synthetic_docs}"
    if cfg.threads != TrainConfig.threads:
        cmd += f" --threads {cfg.threads}"
    if cfg.init_from is not None:
        cmd += f" --init-from {cfg.init_from}"
        copy = sum(w for k, w in cfg.mix if k.endswith("_copy"))
        cmd += f" --copy-fraction {copy:g} --copy-docs {cfg.copy_docs}"
        wrap = sum(w for k, w in cfg.mix if k.endswith("_wrap"))
        if wrap:
            cmd += f" --wrap-fraction {wrap:g}"
    if cfg.name_words:
        cmd += " --name-words"
    if cfg.arity_balance:
        cmd += " --arity-balance"
    for flag, field in (
        ("--seq-len", "seq_len"),
        ("--batch-size", "batch_size"),
        ("--lr", "lr"),
        ("--warmup", "warmup"),
        ("--split-fraction", "split_fraction"),
    ):
        if getattr(cfg, field) != getattr(TrainConfig, field):
            cmd += f" {flag} {getattr(cfg, field):g}"
    if cfg.checkpoint_dir is not None:
        cmd += f" --checkpoint-dir {cfg.checkpoint_dir}"
    if cfg.out != DEFAULT_OUT:
        cmd += f" --out {cfg.out}"
    return cmd


def _fence(text: str) -> str:
    return "```\n" + text.replace("```", "` ` `") + "\n```"


def model_card(m: dict[str, Any]) -> str:
    """The MODEL_CARD.md text from the metrics."""
    c = m["config"]
    val = m["val"]
    comp = m["completions"]
    lines = [
        "# plip-nn embedded tiny Qwen2 code model (`plip-nn/embedded-tiny-qwen2`)",
        "",
        "A toy causal code LM shipped in `plip_nn/data/model/` so plip-nn runs offline on CPU. It",
        "has seen Python doctests and Rust `#[test]` functions; it is *not* a useful code model.",
        "",
        "## Architecture",
        "",
        f"`Qwen2ForCausalLM`: {c['num_layers']} layers, hidden {c['hidden_size']}, "
        f"{c['num_heads']} query heads / {c['num_kv_heads']} key-value heads (grouped-query "
        f"attention), head dim {c['hidden_size'] // c['num_heads']}, MLP {c['intermediate_size']}, "
        f"RoPE, tied embeddings, vocabulary {m['vocab_size']}, max positions 1024. "
        f"**{m['parameters']:,} parameters** ({m['non_embedding_parameters']:,} non-embedding). "
        "Weights in float16 safetensors; `plip_nn.models.load_model` computes in float32 on CPU.",
        "",
        "Tokenizer: byte-level BPE trained with `tokenizers` using Qwen2's pre-tokenizer (NFC,",
        "Qwen2 split regex), loaded by `AutoTokenizer` as `Qwen2Tokenizer`. That regex glues a space",
        "to the next word (`def gcd` -> `def`, ` g`, `cd`), so generation prompts end right after",
        "the marker (`>>>`, `#[test]\\n`; docs/PROMPTS.md) and the model writes ` gcd` itself with",
        "the tokens it saw after `def`/`fn`. Special token `<|endoftext|>` is eos = pad (and the",
        "config's bos id); the tokenizer adds **no** BOS.",
        "",
        "## Training data",
        "",
        f"* {m['data']['python']['name']}: {m['data']['python']['files']} files "
        f"({m['data']['python']['files_with_doctests']} with doctests), without `test/`, "
        f"GUI and `site-packages` directories. License: {m['data']['python']['license']}.",
        "* Rust crate sources from Debian bookworm `librust-*-dev` packages "
        "(`apt-get download`; crates.io is unreachable here):",
        "",
        "| crate | license | .rs files | `#[test]` |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s['crate']} | {s['license']} | {s['files']} | {s['test_attributes']} |"
        for s in m["data"]["rust"]
    ]
    tokens = m["data"]["tokens"]
    stages: list[Any] = []  # earlier training stages (--init-from chain), oldest first
    link = m.get("base")
    while link:
        stages.insert(0, link)
        link = link.get("base")
    base = stages[0] if stages else None  # stage 1: the from-scratch run
    # The last earlier stage with a validation run: v2, the model shipped before issue 11.
    parent = next((st for st in reversed(stages) if st.get("val")), None)
    stage1 = base["config"] if base and base.get("config") else c
    lines += [
        "",
        f"* Synthetic (`scripts/synthetic_code.py`, seeded; names verb_noun; stage 1): "
        f"{stage1['synthetic_docs']:,} small Python",
        "  modules whose functions carry doctests (results computed by running the function) and",
        f"  {stage1['synthetic_docs']:,} Rust files whose functions are followed by `#[test]` functions",
        "  calling them. Function names of the held-out prompts",
        "  (`scripts/embedded_model_eval_prompts.py`) are never generated.",
        f"  Held-out prompt signature lines found verbatim in the real code: "
        f"{m['data']['held_out_signatures_in_training_text'] or 'none'}.",
    ]
    lines += [
        "* Copy curriculum (stages 2-3; `CodeGenerator(random_names=True)`): 20,000 Python and",
        "  20,000 Rust documents of the same shapes whose function *and* parameter names are",
        "  random syllable words (`nux_viplo(rozer_skarken)`), so a doctest or test can only name",
        "  its function by copying it from the context (no memorisable names).",
    ]
    if c.get("name_words"):
        lines += [
            f"* Copy curriculum v2 (stages 4-5; `--name-words`): {c['copy_docs']:,}"
            f" Python and {c['copy_docs']:,} Rust documents. Half of the random names join random",
            "  real identifier words (the 4,000 most frequent lower-case words of the training",
            "  code's identifiers, e.g. `cache_row_parse`), half are syllable words, so copied",
            "  names tokenize like real code's names yet cannot be memorised. Rust tests call the",
            "  function mostly as `let result = name(..);` (60%): there the name carries its",
            "  leading space exactly as after `fn`, whereas `assert_eq!(name(` glues it to `!(`.",
            "  In stage 4 half of the Rust test names were generic (`it_works`, `basic`, ...),",
            "  so the copy happens in the body; its generic-named tests often drifted into bodies",
            "  that call nothing, so stage 5 uses a quarter (`it_works`, `basic`). (Stage 4",
            "  generated a few files with a generic test name twice; the generator now renames the",
            "  second to `test_<name>`, so a rerun of stage 4 differs there.)",
        ]
    if any(k.endswith("_wrap") for k, _ in c["mix"]):
        lines += [
            f"* Real-function copy documents (stage 5; `--wrap-fraction`, "
            f"`scripts/real_code_copy.py`): {c.get('wrap_docs', 40000):,} per language. A short",
            "  real function of the training split (stdlib module-level functions with 1-4 plain",
            "  parameters; crate top-level non-generic `fn`s with 1-3 parameters of simple types),",
            "  under its own name or a fresh random one, followed by a test calling it with one",
            "  literal per declared parameter: a doctest `>>> name(args)` without expected output",
            "  (the value is not computed), or a Rust smoke test `let result = name(args);`. The",
            "  synthetic curriculum alone copied names in synthetic-looking files but transferred",
            "  poorly to real-looking prompts (stage 4's held-out probes 71-83% vs hand-written",
            "  prompts 25-58%).",
        ]
    lines += [
        "",
        "Each real file goes to validation by a hash of its path "
        f"({c['val_percent']}%); synthetic validation documents come from a different seed.",
        "Training tokens: " + ", ".join(f"{k} {v:,}" for k, v in tokens.items()) + ".",
        "",
        "## Training",
        "",
    ]
    for i, st in enumerate(stages):
        bt = st["train"]
        how = "from scratch, tokenizer trained" if i == 0 else "continued, `--init-from`"
        lines += [
            f"**Stage {i + 1}** ({how}): {bt['steps']} steps, "
            f"{bt['tokens_seen']:,} tokens, {bt['train_seconds'] / 60:.1f} min on {st['machine']}"
            f"; mix "
            + ", ".join(f"{k} {w:g}" for k, w in st["config"]["mix"])
            + f"; lr {st['config']['lr']}, {st['config']['seq_len']}-token windows"
            + (
                "; stopped by hand and exported with `--export-checkpoint` (see below)."
                if bt.get("stopped_early")
                else "."
            ),
            "",
        ]
    if stages:
        lines += [
            f"**Stage {len(stages) + 1}** (continued from stage {len(stages)} with its tokenizer, "
            "`--init-from`): "
        ]
    lines += [
        f"{m['train']['steps']} steps (cap {c['steps']}, wall-time budget {c['minutes']} min) of AdamW (lr {c['lr']}, betas 0.9/0.95, weight decay "
        f"{c['weight_decay']}, {c['warmup']} warmup steps, cosine to {c['min_lr_ratio']} x lr), "
        f"batch {c['batch_size']} x {c['seq_len']} tokens (random windows; mix "
        + ", ".join(f"{k} {w:g}" for k, w in c["mix"])
        + f"), bf16 autocast, seed {c['seed']}: {m['train']['tokens_seen']:,} tokens seen.",
        f"Training wall time **{m['train']['train_seconds'] / 60:.1f} min** "
        f"(whole script {m['total_seconds'] / 60:.1f} min) on {m['machine']}, CPU shared with",
        "other jobs. Mean train loss over the last 50 steps: "
        f"{m['train']['final_train_loss_mean_last_50']:.3f}.",
        *_probe_lines(m["train"].get("probes", [])),
        "",
        "## Validation (the shipped float16 weights, loaded back, float32 compute)",
        "",
        "Perplexity per token on up to 200 non-overlapping 256-token blocks. Unigram baseline:",
        "token frequencies of the same language's training stream with add-one (Laplace)",
        "smoothing, evaluated on exactly the same target tokens.",
        "",
        "| split | val loss | val PPL | unigram PPL | tokens |"
        + (" previously shipped model's val PPL | ratio |" if parent else ""),
        "|---|---|---|---|---|" + ("---|---|" if parent else ""),
    ]
    lines += [
        f"| {k} | {v['loss']:.3f} | {v['ppl']:.2f} | {v['unigram_ppl']:.1f} | {v['tokens']:,} |"
        + (
            f" {parent['val'][k]['ppl']:.2f} | {v['ppl'] / parent['val'][k]['ppl']:.2f}x |"
            if parent and k in parent["val"]
            else ""
        )
        for k, v in val.items()
    ]
    lines += _completion_lines(comp, stages)
    lines += _study_lines(m.get("study"))
    if m.get("notes"):  # measurements made after training, recorded in training_metrics.json
        lines += ["", "## Notes", "", *m["notes"], ""]
    lines += [
        "All completions and checks: `plip_nn/data/model/training_metrics.json`.",
        "",
        "## Files",
        "",
        ", ".join(f"`{k}` {v / 2**20:.2f} MiB" for k, v in m["file_sizes"].items())
        + f"; total {sum(m['file_sizes'].values()) / 2**20:.2f} MiB.",
        "",
        "## Retrain",
        "",
        "```bash",
        *[st["command"] for st in stages],
        m["command"],
        "```",
        "",
        "Downloads the Debian crate packages into the gitignored `training_data/` on first use.",
        "Seeded, but bf16 CPU kernels and thread scheduling make bitwise reproduction unlikely.",
        "",
    ]
    return "\n".join(lines)


def _completion_lines(comp: dict[str, Any], stages: list[dict[str, Any]]) -> list[str]:
    n_py, n_rs = len(comp["python"]), len(comp["rust"])
    corpus = comp.get("corpus", {})
    held = comp.get("held_out_random_names", {})

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0%}"

    lines = [
        "",
        "## Greedy call rates",
        "",
        "Greedy decoding (no sampling) of the shipped weights; a completion counts when",
        "`analysis.preservation` finds a call of the function under test (`calls_function`, the",
        "flag the study scores: `ast` for Python, tree-sitter-rust for Rust). Prompts end right",
        "after the marker (the rule); the legacy ending with a trailing space is shown beside it.",
        "",
        "| prompt set | Python | Rust | Python, trailing space | Rust, trailing space |",
        "|---|---|---|---|---|",
        f"| hand-written held-out ({n_py} + {n_rs}, `scripts/embedded_model_eval_prompts.py`) | "
        f"**{pct(comp['python_calls_fraction'])}** | **{pct(comp['rust_calls_fraction'])}** | "
        f"{pct(comp['python_calls_fraction_space'])} | {pct(comp['rust_calls_fraction_space'])} |",
    ]
    if corpus:
        lines.append(
            f"| corpus generation prompts ({corpus['python_n']} + {corpus['rust_n']}) | "
            f"**{pct(corpus['python_calls_fraction'])}** | **{pct(corpus['rust_calls_fraction'])}** | "
            f"{pct(corpus['python_calls_fraction_space'])} | "
            f"{pct(corpus['rust_calls_fraction_space'])} |"
        )
    if held:
        lines.append(
            f"| held-out random names (24 + 24, probe seed) | {pct(held.get('python'))} | "
            f"{pct(held.get('rust'))} | | |"
        )
    history = [(i + 1, st["completions"]) for i, st in enumerate(stages) if st.get("completions")]
    if history:
        lines += [
            "",
            "Earlier stages on the hand-written prompts (stages 1-3 were scored with prompts",
            "ending in a trailing space and their own checks; stage 4 with this table's rule):",
            "",
            "| stage | Python calls | Rust calls |",
            "|---|---|---|",
        ]
        lines += [
            f"| {i} | {pct(c.get('python_calls_fraction'))} | {pct(c.get('rust_calls_fraction'))} |"
            for i, c in history
        ]
    lines += ["", "Samples (greedy, prompt end shown, then the completion):", ""]
    py_prompts = dict(PYTHON_DOCTEST_PROMPTS)
    rs_prompts = dict(RUST_TEST_PROMPTS)
    for lang, rows, prompts, n_lines in (
        ("Python", comp["python"][:4], py_prompts, 3),
        ("Rust", comp["rust"][:4], rs_prompts, 4),
    ):
        for r in rows:
            language = lang.lower()
            prompt = prompt_variants(prompts[r["name"]], language)["marker"]
            tail = "\n".join(prompt.splitlines()[-n_lines:])
            tail += "\n" if prompt.endswith("\n") else ""
            lines += [
                f"{lang} `{r['name']}` (calls: {r['calls_function']}):",
                "",
                _fence(tail + r["completion"]),
                "",
            ]
    return lines


def rewrite_card(out: Path, study_run: Path | None, study_seconds: float | None) -> Path:
    """Rewrite MODEL_CARD.md from ``out/training_metrics.json`` (plus a triangle run, if given)."""
    metrics_path = out / "training_metrics.json"
    m = json.loads(metrics_path.read_text())
    if study_run is not None:
        import pandas as pd

        if study_seconds is None:
            raise SystemExit("--study-run needs --study-seconds (the run's wall time)")
        gens = pd.read_parquet(study_run / "generations.parquet")
        base = gens[gens["condition"] == "baseline"]
        m["study"] = {
            "machine": m["machine"].split(",")[0] + ", 2 cores",
            "wall_seconds": study_seconds,
            "run": str(study_run),
            "baseline": {
                lang: {
                    "preserved": float(g["preserved"].mean()),
                    "calls_function": float(g["calls_function"].mean()),
                    "n": len(g),
                }
                for lang, g in base.groupby("language")
            },
        }
        metrics_path.write_text(json.dumps(m, indent=1) + "\n")
    card = out.parent / "MODEL_CARD.md"
    card.write_text(model_card(m))
    return card


def _study_lines(study: dict[str, Any] | None) -> list[str]:
    """The model in the study (``plip-nn triangle``), filled in by ``--card-only --study-run``."""
    if not study:
        return []
    lines = [
        "",
        "## In the study (`plip-nn triangle`, default settings)",
        "",
        f"Run on {study['machine']}: **{study['wall_seconds'] / 60:.1f} min** wall time.",
        "",
        "| language | baseline preservation | baseline calls | prompts |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {lang} | {r['preserved']:.0%} | {r['calls_function']:.0%} | {r['n']} |"
        for lang, r in study["baseline"].items()
    ]
    return [*lines, ""]


def _probe_lines(probes: list[dict[str, Any]]) -> list[str]:
    if not probes:
        return []
    lines = [
        "",
        "Held-out copy accuracy while training (greedy call rate on 24 + 24 random-name prompts",
        "from a separate seed, logged every 15 minutes; it decides when copying has formed):",
        "",
        "| step | minutes | Python | Rust |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {p['step']} | {p['seconds'] / 60:.0f} | {p['python']:.0%} | {p['rust']:.0%} |"
        for p in probes
    ]
    return lines
