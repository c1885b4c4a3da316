"""The embedded tiny Qwen2 code model shipped with plip-nn (the default ``--model``).

A toy causal code LM (grouped-query attention, a few million parameters) trained by
``scripts/train_embedded_model.py`` on Python (standard library + synthetic doctests) and Rust
(Debian crate sources + synthetic ``#[test]`` functions); see ``data/MODEL_CARD.md``. It lets the
whole study run offline on a CPU. Importing this module does no I/O.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EMBEDDED_MODEL_CARD", "EMBEDDED_MODEL_DIR", "EMBEDDED_MODEL_NAME"]

EMBEDDED_MODEL_DIR = Path(__file__).parent / "data" / "model"
"""HF model directory: config.json, model.safetensors (float16), tokenizer files."""

EMBEDDED_MODEL_NAME = "plip-nn/embedded-tiny-qwen2"
"""The name recorded in manifests for the embedded model."""

EMBEDDED_MODEL_CARD = Path(__file__).parent / "data" / "MODEL_CARD.md"
"""Architecture, training data and licenses, measured perplexities and completions."""
