"""plip-nn: causal tests of test-marker -> function attention inside unmodified HF models.

Importing this package loads no model and does no I/O.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it. Imports are lazy (PEP 562), so that importing
# ``plip_nn`` or a torch-free module such as ``plip_nn.codesrc`` does not load torch.
_HOME = {
    "HeadAttribution": "attribution",
    "attribute_heads": "attribution",
    "Corpus": "corpus",
    "CorpusError": "corpus",
    "FunctionInfo": "corpus",
    "Sample": "corpus",
    "load_corpus": "corpus",
    "AttentionEdit": "edits",
    "CausallyMaskedEdgeError": "edits",
    "Condition": "edits",
    "EditSpecError": "edits",
    "EditVerificationError": "edits",
    "Inert": "edits",
    "Knockout": "edits",
    "Probe": "edits",
    "Scale": "edits",
    "SetValue": "edits",
    "AttentionSite": "models",
    "ModelHandle": "models",
    "ModelLoadError": "models",
    "UnsupportedArchitectureError": "models",
    "load_model": "models",
    "wrap_model": "models",
    "PositionError": "positions",
    "TokenPositions": "positions",
    "locate": "positions",
    "Intervention": "intervention",
    "InterventionOrderError": "intervention",
    "intervene": "intervention",
    "RunDir": "runs",
    "RunDirError": "runs",
    "EditReading": "trace",
    "Item": "trace",
    "ItemResult": "trace",
    "RemoteConfigError": "remote",
    "run": "trace",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'plip_nn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"plip_nn.{home}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


if TYPE_CHECKING:
    from plip_nn.attribution import HeadAttribution, attribute_heads
    from plip_nn.corpus import Corpus, CorpusError, FunctionInfo, Sample, load_corpus
    from plip_nn.edits import (
        AttentionEdit,
        CausallyMaskedEdgeError,
        Condition,
        EditSpecError,
        EditVerificationError,
        Inert,
        Knockout,
        Probe,
        Scale,
        SetValue,
    )
    from plip_nn.intervention import Intervention, InterventionOrderError, intervene
    from plip_nn.models import (
        AttentionSite,
        ModelHandle,
        ModelLoadError,
        UnsupportedArchitectureError,
        load_model,
        wrap_model,
    )
    from plip_nn.positions import PositionError, TokenPositions, locate
    from plip_nn.remote import RemoteConfigError
    from plip_nn.runs import RunDir, RunDirError
    from plip_nn.trace import EditReading, Item, ItemResult, run

__all__ = [
    "AttentionEdit",
    "AttentionSite",
    "CausallyMaskedEdgeError",
    "Condition",
    "Corpus",
    "CorpusError",
    "EditReading",
    "EditSpecError",
    "EditVerificationError",
    "FunctionInfo",
    "HeadAttribution",
    "Inert",
    "Intervention",
    "InterventionOrderError",
    "Item",
    "ItemResult",
    "Knockout",
    "ModelHandle",
    "ModelLoadError",
    "PositionError",
    "Probe",
    "RemoteConfigError",
    "RunDir",
    "RunDirError",
    "Sample",
    "Scale",
    "SetValue",
    "TokenPositions",
    "UnsupportedArchitectureError",
    "attribute_heads",
    "intervene",
    "load_corpus",
    "load_model",
    "locate",
    "run",
    "wrap_model",
]
