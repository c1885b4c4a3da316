"""Train plip-nn's embedded tiny Qwen2 code model: the entry point of ``scripts/embedded/``.

``python scripts/train_embedded_model.py --help`` lists the flags (the fields of
``embedded.config.TrainConfig``); the package docstring (``scripts/embedded/__init__.py``)
describes the steps, and ``plip_nn/data/MODEL_CARD.md`` records the command of every stage.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The repository root: analysis and experiments (scripts/ itself is sys.path[0] when run).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from embedded.cli import main

if __name__ == "__main__":
    main()
