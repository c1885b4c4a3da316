"""Evaluation of the embedded model: perplexity, greedy completions of the held-out prompts,
the call checks and the copy probes."""

from __future__ import annotations

import ast
import itertools
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from embedded_model_eval_prompts import PYTHON_DOCTEST_PROMPTS, RUST_TEST_PROMPTS
from synthetic_code import CodeGenerator

log = logging.getLogger("train_embedded_model")

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
