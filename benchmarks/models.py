"""The models the benchmarks run on: the embedded model (or its stand-in) and a larger config.

Everything is built in code; nothing is downloaded. Random models get a word-level tokenizer
whose vocabulary is ``t0 .. t{V-1}`` so that every id decodes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from plip_nn.models import ModelHandle, load_model, wrap_model

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class QwenSpec:
    """A random Qwen2 configuration (eager attention)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(
                f"hidden={self.hidden}, heads={self.heads}, kv_heads={self.kv_heads}: hidden must "
                "be a multiple of heads and heads a multiple of kv_heads"
            )

    def describe(self) -> str:
        return (
            f"random Qwen2: hidden {self.hidden}, {self.layers} layers, {self.heads} heads, "
            f"{self.kv_heads} kv heads, MLP {self.intermediate}, vocab {self.vocab}, eager"
        )


# The larger config of issue #8: attention cost is visible at seq 512.
LARGER = QwenSpec(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1376, vocab=8192)
LARGER_QUICK = QwenSpec(hidden=128, layers=4, heads=4, kv_heads=2, intermediate=344, vocab=2048)
# Used in place of the embedded model until plip_nn/data/model exists: the same shape as
# the training script's default TrainConfig (scripts/embedded/config.py), random weights.
STAND_IN = QwenSpec(hidden=256, layers=4, heads=8, kv_heads=2, intermediate=688, vocab=4096)


@dataclass
class BenchModel:
    """A wrapped model plus what the report says about it."""

    key: str  # "embedded" or "larger"
    description: str
    handle: ModelHandle

    @property
    def hf(self) -> torch.nn.Module:
        return self.handle.hf

    @property
    def vocab(self) -> int:
        return int(self.handle.config.vocab_size)


def word_tokenizer(vocab: int):  # -> PreTrainedTokenizerFast
    """A word-level tokenizer with tokens ``t0 .. t{vocab-1}``; ``t0`` is pad/eos."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="t0", pad_token="t0")


def random_qwen2(spec: QwenSpec) -> torch.nn.Module:
    """A randomly initialised Qwen2 causal LM for ``spec`` in eval mode, eager attention."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        vocab_size=spec.vocab,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval()


def _no_eos(handle: ModelHandle) -> None:
    # Greedy runs of fixed length are compared token for token with a recompute loop that
    # does not stop at EOS; generate's min_new_tokens would otherwise ban EOS only there.
    gen_config = getattr(handle.hf, "generation_config", None)
    if gen_config is not None:
        gen_config.eos_token_id = None


def embedded_model_available() -> bool:
    """Whether the embedded model's files exist (it is trained separately)."""
    try:
        from plip_nn.embedded import EMBEDDED_MODEL_DIR
    except ImportError:
        return False
    return (EMBEDDED_MODEL_DIR / "config.json").is_file()


def embedded(stand_in: QwenSpec = STAND_IN, attn: str = "eager") -> BenchModel:
    """The embedded model, or a random Qwen2 stand-in of similar size when it is absent
    (``attn``: the attention policy, :data:`plip_nn.models.ATTN_POLICIES`)."""
    if embedded_model_available():
        handle = load_model(attn=attn)
        cfg = handle.config
        desc = (
            f"embedded model {handle.name}: hidden {cfg.hidden_size}, "
            f"{cfg.num_hidden_layers} layers, {cfg.num_attention_heads} heads, "
            f"vocab {cfg.vocab_size}, attn {attn}"
        )
    else:
        log.warning("embedded model not found; using a random stand-in (%s)", stand_in.describe())
        hf = random_qwen2(stand_in)
        handle = wrap_model(hf, word_tokenizer(stand_in.vocab), name="stand-in", attn=attn)
        desc = f"stand-in for the embedded model ({stand_in.describe()})"
    _no_eos(handle)
    return BenchModel(key="embedded", description=desc, handle=handle)


def larger(spec: QwenSpec = LARGER) -> BenchModel:
    """The larger random config."""
    hf = random_qwen2(spec)
    handle = wrap_model(hf, word_tokenizer(spec.vocab), name="larger")
    _no_eos(handle)
    return BenchModel(key="larger", description=spec.describe(), handle=handle)


def random_prompts(vocab: int, n: int, length: int, seed: int, vary: int = 0) -> list:
    """``n`` random prompts of token ids in ``[1, vocab)``; lengths ``length - k*vary``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        size = max(8, length - (i % 4) * vary)
        out.append(tuple(torch.randint(1, vocab, (size,), generator=gen).tolist()))
    return out
