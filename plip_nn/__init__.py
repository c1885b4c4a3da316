"""plip-nn: causal tests of test-marker -> function attention inside unmodified HF models.

Importing this package loads no model and does no I/O.
"""

from plip_nn.corpus import Corpus, CorpusError, FunctionInfo, Sample, load_corpus
from plip_nn.edits import (
    AttentionEdit,
    CausallyMaskedEdgeError,
    Condition,
    EditSpecError,
    EditVerificationError,
    Knockout,
    Probe,
    Scale,
    SetValue,
)
from plip_nn.intervene import Intervention, InterventionOrderError, intervene
from plip_nn.models import (
    AttentionSite,
    ModelHandle,
    ModelLoadError,
    UnsupportedArchitectureError,
    load_model,
    wrap_model,
)
from plip_nn.positions import PositionError, TokenPositions, locate
from plip_nn.runs import RunDir, RunDirError
from plip_nn.trace import EditReading, Item, ItemResult, RemoteConfigError, run

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
    "intervene",
    "load_corpus",
    "load_model",
    "locate",
    "run",
    "wrap_model",
]
