"""The embedded model's training config: every flag of the training script is one of its fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_OUT", "EOS", "EVAL_SEQ_LEN", "ROOT", "TrainConfig", "copy_mix"]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "plip_nn" / "data" / "model"
EOS = "<|endoftext|>"
EVAL_SEQ_LEN = 256  # validation block length (fixed, so stage-1 and stage-2 PPL compare)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that determines the trained model (recorded in training_metrics.json).

    Attributes:
        out: model directory to write.
        data_dir: cache of gathered sources (gitignored).
        steps: optimizer steps (with --minutes, the time budget usually ends the run first).
        seed: seed of the data, the synthetic documents and the initialisation.
        minutes: wall-time budget; the cosine schedule follows time.
        vocab_size: BPE vocabulary size (stage 1; later stages keep their tokenizer).
        hidden_size: model width.
        num_layers: decoder layers.
        num_heads: query heads.
        num_kv_heads: key-value heads (grouped-query attention: fewer than the query heads).
        intermediate_size: MLP width.
        seq_len: training window in tokens.
        batch_size: windows per optimizer step.
        lr: peak learning rate (AdamW).
        min_lr_ratio: the cosine's floor as a fraction of the peak.
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay of the matrices.
        threads: torch CPU threads (on a CPU shared with other jobs, 1 beat 2 by about 2x: no
            barrier waits).
        val_percent: share of source files held out for validation, in percent.
        synthetic_docs: synthetic documents per language.
        split_fraction: share of synthetic documents tokenized in pieces cut after the markers.
        mix: training mix, (stream, weight) pairs; set by --copy-fraction and --wrap-fraction.
        init_from: continue training this model directory with its tokenizer (no tokenizer
            training).
        copy_docs: copy-curriculum documents per language (random names).
        name_words: copy-curriculum names also join real identifier words (curriculum v2).
        arity_balance: copy and real-function docs draw the parameter count uniformly
            (curriculum v3).
        checkpoint_dir: checkpoint here every --checkpoint-every-s seconds; a rerun resumes
            from it.
        checkpoint_every_s: seconds between checkpoints.
        probe_every_s: seconds between the held-out copy probes logged while training.
        probes_per_language: held-out random-name prompts per language of each probe.
        wrap_docs: real-function copy documents per language (when in the mix).
    """

    out: Path = DEFAULT_OUT
    data_dir: Path = ROOT / "training_data"
    steps: int = 2200
    seed: int = 0
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
    threads: int = 1
    val_percent: int = 5
    synthetic_docs: int = 40_000
    split_fraction: float = 0.0
    mix: tuple[tuple[str, float], ...] = (
        ("python", 0.2),
        ("rust", 0.2),
        ("python_synthetic", 0.3),
        ("rust_synthetic", 0.3),
    )
    init_from: Path | None = None
    copy_docs: int = 20_000
    name_words: bool = False
    arity_balance: bool = False
    checkpoint_dir: Path | None = None
    checkpoint_every_s: float = 300.0
    probe_every_s: float = 900.0
    probes_per_language: int = 24
    wrap_docs: int = 40_000

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
