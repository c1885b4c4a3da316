"""Training data of the embedded model: gathered Python/Rust sources, held-out names, the
tokenizer and the token streams."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import random
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from embedded_model_eval_prompts import PYTHON_DOCTEST_PROMPTS, RUST_TEST_PROMPTS

from embedded.config import EOS

log = logging.getLogger("train_embedded_model")

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


# -- data ---------------------------------------------------------------------------------------
def is_val(path: str, percent: int) -> bool:
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
