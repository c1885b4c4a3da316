"""Train plip-nn's embedded tiny Qwen2 code model (issue #4) and write its model card.

The model is a toy: a few million parameters trained for minutes on 2 CPU threads, shipped in
``plip_nn/data/model/`` so the whole study runs offline on a laptop. Steps:

1. **Gather code text** into ``--data-dir`` (gitignored): Python from the installed standard
   library; Rust from Debian's ``librust-*-dev`` packages (crate sources, fetched with
   ``apt-get download``; crates.io itself is unreachable here). Each source file goes to train
   or validation by a hash of its path (5% validation).
2. **Add synthetic examples** (``scripts/synthetic_code.py``): small Python functions with
   doctests and Rust functions followed by ``#[test]`` functions that call them, so the toy
   model learns the marker -> call pattern. Function names of the held-out prompts in
   ``scripts/embedded_model_eval_prompts.py`` are never generated.
3. **Train a byte-level BPE tokenizer** with Qwen2's own pre-tokenizer (``AutoTokenizer`` loads
   every qwen2 directory as ``Qwen2Tokenizer`` and imposes it). That pre-tokenizer glues a space
   to the following word, so a prompt ending in ``">>> "`` or ``"#[test]\\nfn "`` ends in a bare
   space token never seen before an identifier in plain text. Half of the synthetic documents are
   therefore tokenized in pieces cut right after those markers, exactly as such prompts are.
4. **Train ``Qwen2ForCausalLM``** (grouped-query attention) with AdamW and a cosine schedule on
   random 256-token windows of the four streams (real/synthetic x Python/Rust), bf16 autocast.
5. **Save** config, float16 safetensors, tokenizer and generation config; reload the saved
   files in float32 and **evaluate** those: validation perplexity per language against an
   add-one-smoothed unigram model fitted on the training tokens, and greedy completions of the
   held-out prompts. Writes ``training_metrics.json`` and ``plip_nn/data/MODEL_CARD.md``.

Stage 2 (``--init-from DIR``) continues training an existing model directory with *its*
tokenizer (no tokenizer training) on a mix dominated by the *copy curriculum*
(``--copy-fraction``): synthetic functions whose function and parameter names are random
syllable words, so their doctests/tests can only name the function by copying it from the
context, plus the real stdlib/Rust text so real-code perplexity stays low.

Usage (the shipped model: stage 1, then the stage-2 continuation; see MODEL_CARD.md)::

    .venv/bin/python scripts/train_embedded_model.py --steps 100000 --seed 0 --minutes 25
    .venv/bin/python scripts/train_embedded_model.py --init-from plip_nn/data/model \
        --copy-fraction 0.8 --seq-len 160 --lr 1e-3 --minutes 20
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import math
import platform
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import itertools

from embedded_model_eval_prompts import PYTHON_DOCTEST_PROMPTS, RUST_TEST_PROMPTS
from synthetic_code import CodeGenerator

log = logging.getLogger("train_embedded_model")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "plip_nn" / "data" / "model"
EOS = "<|endoftext|>"
EVAL_SEQ_LEN = 256  # validation block length (fixed, so stage-1 and stage-2 PPL compare)

# Debian crate-source packages (Rust code with many #[test] functions). Missing ones are skipped.
RUST_PACKAGES = (
    "itertools", "regex", "regex-syntax", "regex-automata", "memchr", "smallvec", "hashbrown",
    "indexmap", "semver", "unicode-width", "textwrap", "bitflags", "either", "num-integer",
    "num-traits", "base64", "hex", "bytes", "arrayvec", "strsim", "heck", "unicode-segmentation",
    "fnv", "itoa", "ryu", "serde-json", "humantime", "glob", "walkdir", "same-file",
    "aho-corasick", "bstr", "camino", "rand", "rand-core", "rand-chacha", "chrono", "time",
    "syn", "quote", "proc-macro2", "serde", "toml", "url", "percent-encoding", "crc32fast",
    "byteorder", "lazy-static", "once-cell", "tempfile", "log", "anyhow", "thiserror",
    "unicode-normalization", "fastrand", "num-bigint", "num-rational", "petgraph", "slab",
)  # fmt: skip
PY_SKIP_DIRS = {"site-packages", "test", "tests", "idle_test", "__pycache__", "idlelib", "tkinter",
                "turtledemo", "lib2to3", "ensurepip", "config-3.11-x86_64-linux-gnu"}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that determines the trained model (recorded in training_metrics.json)."""

    out: Path
    data_dir: Path
    steps: int
    seed: int
    minutes: float | None = None
    vocab_size: int = 4096
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 2
    intermediate_size: int = 688
    seq_len: int = 256
    batch_size: int = 8
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.1
    threads: int = 1  # on a CPU shared with other jobs, 1 thread beat 2 by ~2x (no barrier waits)
    val_percent: int = 5
    synthetic_docs: int = 40_000
    split_fraction: float = 0.0  # share of synthetic docs tokenized in pieces cut after markers
    mix: tuple[tuple[str, float], ...] = (
        ("python", 0.2),
        ("rust", 0.2),
        ("python_synthetic", 0.3),
        ("rust_synthetic", 0.3),
    )
    init_from: Path | None = None  # continue training this model directory with its tokenizer
    copy_docs: int = 20_000  # copy-curriculum documents per language (random names)
    name_words: bool = False  # copy names also join real identifier words (curriculum v2)
    arity_balance: bool = False  # copy/wrap docs: parameter count drawn uniformly (curriculum v3)
    checkpoint_dir: Path | None = None  # checkpoint here (and resume from it when present)
    checkpoint_every_s: float = 300.0
    probe_every_s: float = 900.0  # held-out copy accuracy on random names, logged while training
    probes_per_language: int = 24
    wrap_docs: int = 40_000  # real-function copy documents per language (when in the mix)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes={self.minutes} must be > 0 (or omitted for no time limit)")
        if self.init_from is not None and not (self.init_from / "config.json").exists():
            raise ValueError(
                f"init_from={self.init_from} holds no config.json; pass a saved model directory"
            )
        if self.num_heads % self.num_kv_heads or self.num_kv_heads >= self.num_heads:
            raise ValueError(
                f"num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads} and be "
                "smaller (grouped-query attention is the point)"
            )


def copy_mix(copy_fraction: float, wrap_fraction: float = 0.0) -> tuple[tuple[str, float], ...]:
    """Training mix: ``copy_fraction`` synthetic copy curriculum, ``wrap_fraction`` real
    functions with a test calling them (``real_code_copy.py``), the rest real Python/Rust code."""
    if not (copy_fraction >= 0.0 and wrap_fraction >= 0.0 and copy_fraction + wrap_fraction < 1.0):
        raise ValueError(
            f"copy_fraction={copy_fraction} + wrap_fraction={wrap_fraction} must be in [0, 1): "
            "real code keeps val PPL honest"
        )
    real = round((1.0 - copy_fraction - wrap_fraction) / 2, 9)
    mix: tuple[tuple[str, float], ...] = (("python", real), ("rust", real))
    if copy_fraction > 0:
        half = round(copy_fraction / 2, 9)
        mix += (("python_copy", half), ("rust_copy", half))
    if wrap_fraction > 0:
        half = round(wrap_fraction / 2, 9)
        mix += (("python_wrap", half), ("rust_wrap", half))
    return mix


# -- data ---------------------------------------------------------------------------------------
def _is_val(path: str, percent: int) -> bool:
    return int(hashlib.sha1(path.encode()).hexdigest(), 16) % 100 < percent


def gather_python(stdlib: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Python source files of the installed standard library (without its tests and GUIs)."""
    files: dict[str, str] = {}
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if any(part in PY_SKIP_DIRS for part in rel.parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if 0 < len(text) < 400_000:
            files[f"python/{rel}"] = text
    n_doctest = sum(">>> " in t for t in files.values())
    source = {
        "name": f"CPython {platform.python_version()} standard library ({stdlib})",
        "license": "PSF-2.0 (Python Software Foundation License)",
        "files": len(files),
        "files_with_doctests": n_doctest,
        "chars": sum(map(len, files.values())),
    }
    return files, source


def _crate_license(crate_dir: Path) -> str:
    cargo = crate_dir / "Cargo.toml"
    if cargo.exists():
        match = re.search(r'^license\s*=\s*"([^"]+)"', cargo.read_text(errors="replace"), re.M)
        if match:
            return match.group(1)
    return "see debian/copyright"


def gather_rust(data_dir: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Rust crate sources from Debian ``librust-*-dev`` packages (downloaded once, cached)."""
    debs = data_dir / "debs"
    tree = data_dir / "rust_tree"
    debs.mkdir(parents=True, exist_ok=True)
    if not any(debs.glob("*.deb")):
        if shutil.which("apt-get") is None:
            raise RuntimeError(
                "no Rust sources: apt-get is not available to download librust-*-dev packages; "
                f"put .deb files of Debian crate packages into {debs} and rerun"
            )
        for name in RUST_PACKAGES:
            pkg = f"librust-{name}-dev"
            done = subprocess.run(
                ["apt-get", "download", pkg], cwd=debs, capture_output=True, text=True
            )
            if done.returncode != 0:
                log.warning("skipping %s: %s", pkg, done.stderr.strip().splitlines()[-1:])
    if not tree.exists():
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    registry = tree / "usr" / "share" / "cargo" / "registry"
    if not registry.exists():
        raise RuntimeError(f"no crate sources under {registry}; delete {data_dir} and rerun")
    files: dict[str, str] = {}
    sources = []
    for crate_dir in sorted(p for p in registry.iterdir() if p.is_dir()):
        count = 0
        n_tests = 0
        for path in sorted(crate_dir.rglob("*.rs")):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if 0 < len(text) < 400_000:
                files[f"rust/{path.relative_to(registry)}"] = text
                count += 1
                n_tests += text.count("#[test]")
        sources.append(
            {
                "crate": crate_dir.name,
                "license": _crate_license(crate_dir),
                "files": count,
                "test_attributes": n_tests,
            }
        )
    return files, sources


def eval_signatures() -> list[str]:
    """The ``def``/``fn`` lines of the held-out prompts (checked against the training text)."""
    lines = []
    for _, prompt in PYTHON_DOCTEST_PROMPTS + RUST_TEST_PROMPTS:
        lines += [
            ln for ln in prompt.splitlines() if re.match(r"\s*(pub |const )*(def|fn) \w+", ln)
        ]
    return sorted(set(lines))


def eval_function_names() -> set[str]:
    """Every function name defined in the held-out prompts (never generated synthetically)."""
    names = set()
    for _, prompt in PYTHON_DOCTEST_PROMPTS + RUST_TEST_PROMPTS:
        names |= set(re.findall(r"\b(?:def|fn)\s+(\w+)", prompt))
    return names | {name for name, _ in PYTHON_DOCTEST_PROMPTS + RUST_TEST_PROMPTS}


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]?[a-z]+")


def identifier_words(
    texts: Iterator[str], *, min_count: int = 5, max_words: int = 4000
) -> list[str]:
    """Lower-case words that real identifiers are made of (``parse_header`` -> parse, header).

    The copy curriculum joins random ones into function names: they tokenize like real code's
    names, and their random combinations cannot be memorised.
    """
    counts: dict[str, int] = {}
    for text in texts:
        for ident in _IDENT.findall(text):
            for part in ident.split("_"):
                for word in _CAMEL.findall(part):
                    word = word.lower()
                    if 2 <= len(word) <= 10:
                        counts[word] = counts.get(word, 0) + 1
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: -counts[w])
    return sorted(ranked[:max_words])


# Generation prompts end right after the marker: ``>>>`` (Python) and ``#[test]\n`` (Rust), so
# the model writes `` name`` / ``fn`` itself with the tokens it saw after ``def`` / ``fn``.
PROMPT_END = {"python": ">>>", "rust": "#[test]\n"}
LEGACY_PROMPT_END = {"python": ">>> ", "rust": "#[test]\nfn "}


def prompt_variants(prompt: str, language: str) -> dict[str, str]:
    """``{"marker": prompt ending at the marker, "space": the legacy ending with the space}``."""
    for end in (LEGACY_PROMPT_END[language], PROMPT_END[language]):
        if prompt.endswith(end):
            stem = prompt[: len(prompt) - len(end)]
            return {
                "marker": stem + PROMPT_END[language],
                "space": stem + LEGACY_PROMPT_END[language],
            }
    raise ValueError(f"{language} prompt ends with {prompt[-12:]!r}, not a test marker")


_RS_TESTED = re.compile(r"fn (\w+)(?:<[^>]*>)?\([^)]*\) ->")


def copy_probes(gen: CodeGenerator, n: int) -> list[tuple[str, str, str]]:
    """Held-out (language, name, prompt) cut right after the last marker of random-name docs."""
    probes = []
    for _ in range(n):
        doc = gen.python_document()
        cut = doc.rfind(">>>")
        name = re.findall(r"def (\w+)\(", doc[:cut])[-1]
        probes.append(("python", name, doc[: cut + 3]))
    for _ in range(n):
        doc = gen.rust_document()
        cut = doc.rfind("#[test]\n")
        name = _RS_TESTED.findall(doc[:cut])[-1]
        probes.append(("rust", name, doc[: cut + len("#[test]\n")]))
    return probes


def calls_rate(
    model: Any, tokenizer: Any, probes: Sequence[tuple[str, str, str]]
) -> dict[str, float]:
    """Greedy call rate per language, scored by ``analysis.preservation`` (``calls_function``)."""
    hits: dict[str, list[bool]] = {"python": [], "rust": []}
    for language, name, prompt in probes:
        completion = greedy(model, tokenizer, prompt, 24 if language == "python" else 96)
        hits[language].append(calls_function(language, prompt, completion, name))
    return {lang: sum(h) / len(h) for lang, h in hits.items() if h}


def calls_function(language: str, prompt: str, completion: str, name: str) -> bool:
    from analysis.preservation import score

    lang: Any = language  # "python" | "rust"
    return score(
        lang, prompt, completion, function_name=name, arity=0, function_source=prompt,
        execute="off",
    ).calls_function  # fmt: skip


# -- tokenizer ----------------------------------------------------------------------------------
def train_tokenizer(texts: Iterator[str], vocab_size: int) -> Any:
    """Byte-level BPE with Qwen2's own pre-tokenizer, returned as a ``Qwen2Tokenizer``.

    ``AutoTokenizer`` loads any ``model_type == "qwen2"`` directory as ``Qwen2Tokenizer``, which
    rebuilds the pre-tokenizer from its own regex; training with exactly that pipeline (NFC,
    Qwen2 split regex, byte-level) makes the shipped tokenizer tokenize like the trained one.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    spec = json.loads(tok.to_str())["model"]
    merges: Any = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
    hf_tok = Qwen2Tokenizer(
        vocab=spec["vocab"],
        merges=merges,
        bos_token=None,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    probe = 'def f(x):\n    """Doc.\n\n    >>> f(1)\n    2\n    """\n#[test]\nfn t() {}\n'
    if hf_tok(probe)["input_ids"] != tok.encode(probe).ids:
        raise RuntimeError("Qwen2Tokenizer does not reproduce the trained tokenizer's ids")
    return hf_tok


# Split points of the held-out prompt shapes: text up to here is a typical generation prompt.
MARKER_SPLIT = re.compile(r"(?<=>>> )|(?<=#\[test\]\nfn )")


def encode_stream(
    tokenizer: Any, docs: Sequence[str], *, split_fraction: float = 0.0, seed: int = 0
) -> np.ndarray:
    """Token ids of the documents, each followed by eos, as one int32 stream.

    With ``split_fraction`` > 0 that fraction of documents is encoded piecewise, cut right after
    every ``">>> "`` and ``"#[test]\\nfn "``. A prompt that ends there tokenizes with a bare
    trailing space token (the space is glued to the next word only when the word is present),
    so the model must see that token sequence in training to continue such prompts.
    """
    rng = random.Random(seed)
    eos = tokenizer.eos_token_id
    pieces: list[str] = []
    ends: list[bool] = []  # does this piece end a document?
    for doc in docs:
        parts = MARKER_SPLIT.split(doc) if rng.random() < split_fraction else [doc]
        parts = [part for part in parts if part]
        pieces += parts
        ends += [False] * (len(parts) - 1) + [True]
    ids: list[int] = []
    batch = 512
    for i in range(0, len(pieces), batch):
        rows = tokenizer(pieces[i : i + batch], add_special_tokens=False)["input_ids"]
        for row, end in zip(rows, ends[i : i + batch], strict=True):
            ids += row
            if end:
                ids.append(eos)
    return np.asarray(ids, dtype=np.int32)


# -- evaluation ---------------------------------------------------------------------------------
@torch.inference_mode()
def perplexity(
    model: Any, stream: np.ndarray, seq_len: int, max_blocks: int
) -> tuple[float, np.ndarray]:
    """Model perplexity on non-overlapping blocks; also returns the predicted target ids."""
    n_blocks = min(max_blocks, (len(stream) - 1) // seq_len)
    if n_blocks < 1:
        raise ValueError(f"validation stream of {len(stream)} tokens is shorter than one block")
    blocks = torch.from_numpy(stream[: n_blocks * seq_len].astype(np.int64)).view(n_blocks, seq_len)
    nll = 0.0
    count = 0
    for i in range(0, n_blocks, 16):
        x = blocks[i : i + 16]
        logits = model(input_ids=x).logits[:, :-1].double()
        logp = torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None])
        nll -= float(logp.sum())
        count += logp.numel()
    return math.exp(nll / count), blocks[:, 1:].reshape(-1).numpy()


def unigram_perplexity(train_stream: np.ndarray, targets: np.ndarray, vocab: int) -> float:
    """Perplexity of an add-one-smoothed unigram model fitted on ``train_stream``."""
    counts = np.bincount(train_stream, minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(math.exp(-logp[targets].mean()))


def python_calls(completion: str, name: str) -> bool:
    """Whether the completion's first line holds an ``ast`` Call of ``name``."""
    line = completion.split("\n", 1)[0].strip()
    try:
        tree = ast.parse(line)
    except SyntaxError:
        return False
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
        for node in ast.walk(tree)
    )


def _first_item(completion: str) -> str | None:
    """``completion`` cut after the brace that closes its first ``{`` (None if it never closes)."""
    depth = 0
    for i, ch in enumerate(completion):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return completion[: i + 1]
            if depth < 0:
                return None
    return None


def rust_test_check(completion: str, name: str) -> dict[str, bool]:
    """tree-sitter-rust check of ``fn `` + completion.

    ``test_fn``: the text up to the first closing brace parses without ERROR/MISSING nodes as a
    function item with no parameters and at least one statement in its body.
    ``calls_function``: that body also contains a call expression of ``name``.
    """
    import tree_sitter_rust
    from tree_sitter import Language, Parser

    item = _first_item(completion)
    if item is None:
        return {"test_fn": False, "calls_function": False}
    parser = Parser(Language(tree_sitter_rust.language()))
    src = ("fn " + item).encode()
    root = parser.parse(src).root_node
    if root.has_error or len(root.named_children) != 1:
        return {"test_fn": False, "calls_function": False}
    fn = root.named_children[0]
    params = fn.child_by_field_name("parameters")
    body = fn.child_by_field_name("body")
    ok = (
        fn.type == "function_item"
        and params is not None
        and params.named_child_count == 0
        and body is not None
        and body.named_child_count > 0
    )
    calls = False
    stack = [body] if body is not None else []
    while stack:
        node = stack.pop()
        if node.type == "call_expression":
            callee = node.child_by_field_name("function")
            calls |= (
                callee is not None and src[callee.start_byte : callee.end_byte] == name.encode()
            )
        if node.type == "token_tree":
            # Macro arguments (assert_eq!(f(1), 2)) are token trees: identifier then "(".
            kids = node.children
            for a, b in itertools.pairwise(kids):
                if a.type == "identifier" and src[a.start_byte : a.end_byte] == name.encode():
                    calls |= b.type == "token_tree" and src[b.start_byte : b.start_byte + 1] == b"("
        stack.extend(node.children)
    return {"test_fn": ok, "calls_function": ok and calls}


@torch.inference_mode()
def greedy(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(
        **ids,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.eos_token_id,
    )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def evaluate_completions(model: Any, tokenizer: Any) -> dict[str, Any]:
    """Greedy completions of every held-out prompt, in both prompt endings, and their checks.

    ``calls_function`` is ``analysis.preservation``'s flag, the one the study scores; prompts end
    at the marker (the convention). ``*_space`` rates use the legacy ending with a trailing space.
    """
    out: dict[str, Any] = {}
    for language, prompts, n_new in (
        ("python", PYTHON_DOCTEST_PROMPTS, 24),
        ("rust", RUST_TEST_PROMPTS, 96),
    ):
        rows = []
        for name, prompt in prompts:
            row: dict[str, Any] = {"name": name}
            for ending, text in prompt_variants(prompt, language).items():
                completion = greedy(model, tokenizer, text, n_new)
                key = "" if ending == "marker" else "_space"
                row[f"completion{key}"] = completion
                row[f"calls_function{key}"] = calls_function(language, text, completion, name)
            rows.append(row)
        out[language] = rows
        for key in ("", "_space"):
            out[f"{language}_calls_fraction{key}"] = sum(
                r[f"calls_function{key}"] for r in rows
            ) / len(rows)
    return out


def evaluate_corpus_prompts(model: Any, tokenizer: Any) -> dict[str, Any]:
    """Greedy call rate on the corpus's generation prompts (both endings), as the study scores."""
    from plip_nn.corpus import load_corpus

    out: dict[str, Any] = {}
    for language in ("python", "rust"):
        samples = load_corpus().select(language=language, kind="generation")
        hits = {"marker": 0, "space": 0}
        for s in samples:
            for ending, text in prompt_variants(s.code, language).items():
                completion = greedy(model, tokenizer, text, 24 if language == "python" else 96)
                assert s.function is not None  # generation samples carry their function
                hits[ending] += calls_function(language, text, completion, s.function.name)
        out[f"{language}_n"] = len(samples)
        out[f"{language}_calls_fraction"] = hits["marker"] / len(samples)
        out[f"{language}_calls_fraction_space"] = hits["space"] / len(samples)
    return out


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
def main(cfg: TrainConfig) -> Path:
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
        split[lang] = [t for p, t in files.items() if not _is_val(p, cfg.val_percent)]
        split[f"{lang}_val"] = [t for p, t in files.items() if _is_val(p, cfg.val_percent)]
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
        "machine": f"{platform.machine()} {_cpu_name()}, torch {torch.__version__}, "
        f"{cfg.threads} threads, bf16 autocast",
        "command": _command(cfg),
        "base": base,
    }
    (cfg.out / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    card = cfg.out.parent / "MODEL_CARD.md"
    card.write_text(model_card(metrics))
    log.info("wrote %s and %s (%.0f s total)", cfg.out, card, metrics["total_seconds"])
    return cfg.out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _command(cfg: TrainConfig) -> str:
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
        "machine": f"{platform.machine()} {_cpu_name()}, torch {torch.__version__}, "
        f"{cfg.threads} threads, bf16 autocast",
        "command": _command(cfg),
        "total_seconds": state["elapsed"],
        "base": {key: prev.get(key) for key in ("command", "machine", "total_seconds", "base",
                                                "config", "train", "val", "completions")},
    }  # fmt: skip
    (cfg.out / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    log.info("exported step %d of %s to %s", state["step"], cfg.checkpoint_dir, cfg.out)
    return cfg.out


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


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model directory to write")
    parser.add_argument("--steps", type=int, default=2200, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--minutes", type=float, default=None, help="wall-time budget; the cosine follows time"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=ROOT / "training_data", help="cache of gathered sources"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--synthetic-docs", type=int, default=40_000, help="per language")
    parser.add_argument(
        "--init-from", type=Path, default=None,
        help="continue training this model directory with its tokenizer (no tokenizer training)",
    )  # fmt: skip
    parser.add_argument(
        "--copy-fraction", type=float, default=None,
        help="train on this fraction of copy curriculum (random names), the rest real code",
    )  # fmt: skip
    parser.add_argument("--copy-docs", type=int, default=20_000, help="copy docs per language")
    parser.add_argument(
        "--wrap-fraction", type=float, default=0.0,
        help="with --copy-fraction: this fraction of real functions followed by a calling test",
    )  # fmt: skip
    parser.add_argument("--seq-len", type=int, default=TrainConfig.seq_len)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--warmup", type=int, default=TrainConfig.warmup)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument(
        "--name-words", action="store_true",
        help="copy-curriculum names also join real identifier words (curriculum v2)",
    )  # fmt: skip
    parser.add_argument(
        "--arity-balance", action="store_true",
        help="copy and real-function docs draw the parameter count uniformly (curriculum v3)",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoint-dir", type=Path, default=None,
        help="checkpoint here every --checkpoint-every seconds; a rerun resumes from it",
    )  # fmt: skip
    parser.add_argument("--checkpoint-every", type=float, default=TrainConfig.checkpoint_every_s)
    parser.add_argument("--probe-every", type=float, default=TrainConfig.probe_every_s)
    parser.add_argument("--split-fraction", type=float, default=TrainConfig.split_fraction)
    parser.add_argument(
        "--export-checkpoint", action="store_true",
        help="no training: save --checkpoint-dir's last.pt (a stopped run, same flags) to --out",
    )  # fmt: skip
    parser.add_argument(
        "--card-only", action="store_true",
        help="no training: rewrite MODEL_CARD.md from --out's training_metrics.json",
    )  # fmt: skip
    parser.add_argument(
        "--study-run", type=Path, default=None,
        help="with --card-only: a `plip-nn triangle` run directory of this model for the card",
    )  # fmt: skip
    parser.add_argument(
        "--study-seconds", type=float, default=None, help="with --study-run: its wall time"
    )
    args = parser.parse_args(argv)
    if args.card_only:
        rewrite_card(args.out, args.study_run, args.study_seconds)
        raise SystemExit(0)
    export = args.export_checkpoint
    extra: dict[str, Any] = {}
    if args.copy_fraction is not None:
        extra["mix"] = copy_mix(args.copy_fraction, args.wrap_fraction)
    cfg = TrainConfig(
        out=args.out,
        data_dir=args.data_dir,
        steps=args.steps,
        seed=args.seed,
        minutes=args.minutes,
        threads=args.threads,
        synthetic_docs=args.synthetic_docs,
        init_from=args.init_from,
        copy_docs=args.copy_docs,
        seq_len=args.seq_len,
        lr=args.lr,
        warmup=args.warmup,
        batch_size=args.batch_size,
        name_words=args.name_words,
        arity_balance=args.arity_balance,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every_s=args.checkpoint_every,
        probe_every_s=args.probe_every,
        split_fraction=args.split_fraction,
        **extra,
    )
    if export:
        export_checkpoint(cfg)
        raise SystemExit(0)
    return cfg


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main(parse_args())
