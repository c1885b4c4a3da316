"""Tiny random configs of every supported architecture, built in code (no downloads)."""

from __future__ import annotations

import functools

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    GraniteConfig,
    LlamaConfig,
    MistralConfig,
    Olmo2Config,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
    Starcoder2Config,
)

VOCAB = 320
COMMON = dict(
    vocab_size=VOCAB, max_position_embeddings=256, bos_token_id=0, eos_token_id=0, pad_token_id=0
)
LLAMA_LIKE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    **COMMON,
)


def _configs() -> dict:
    return {
        "qwen2": Qwen2Config(**LLAMA_LIKE),
        "qwen3": Qwen3Config(head_dim=16, **LLAMA_LIKE),
        "llama": LlamaConfig(**LLAMA_LIKE),
        "mistral": MistralConfig(sliding_window=None, **LLAMA_LIKE),
        "starcoder2": Starcoder2Config(sliding_window=None, **LLAMA_LIKE),
        "gemma": GemmaConfig(head_dim=16, **LLAMA_LIKE),
        "gemma2": Gemma2Config(head_dim=16, sliding_window=64, **LLAMA_LIKE),
        "gemma3": Gemma3TextConfig(head_dim=16, sliding_window=64, **LLAMA_LIKE),
        "phi3": Phi3Config(**LLAMA_LIKE),
        "gpt2": GPT2Config(
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=256,
            vocab_size=VOCAB,
            bos_token_id=0,
            eos_token_id=0,
        ),
        "gpt_neox": GPTNeoXConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            **COMMON,
        ),
        "olmo2": Olmo2Config(**LLAMA_LIKE),
        "granite": GraniteConfig(**LLAMA_LIKE),
    }


ARCHS = tuple(_configs())
MODEL_TYPES = {arch: config.model_type for arch, config in _configs().items()}  # HF model_type


@functools.cache
def tiny_model(arch: str, seed: int = 0, init_range: float = 0.2) -> torch.nn.Module:
    """A tiny random causal LM of ``arch`` with eager attention, in eval mode.

    ``init_range`` is larger than HF's default so that attention is far from uniform and edits
    visibly change the logits (with 0.02 every token looks alike).
    """
    config = _configs()[arch]
    config.initializer_range = init_range
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval()


@functools.cache
def tiny_tokenizer(vocab: int = VOCAB):
    """A byte-level BPE tokenizer trained in code on a few lines of Python and Rust."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = [
        'def add(a, b):\n    """Add.\n\n    >>> add(2, 3)\n    5\n    """\n    return a + b\n',
        "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\n#[test]\nfn test_add() {\n"
        "    assert_eq!(add(2, 3), 5);\n}\n",
    ] * 20
    tok.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


@functools.cache
def tiny_handle(arch: str = "qwen2", seed: int = 0):
    """A wrapped tiny model of ``arch`` (fresh nnsight wrapper around the cached HF model)."""
    from plip_nn.models import wrap_model

    return wrap_model(tiny_model(arch, seed), tiny_tokenizer(), name=f"tiny-{arch}")
