"""plip-nn: causal tests of test-marker -> function attention inside unmodified HF models.

Importing this package loads no model and does no I/O.
"""

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
from plip_nn.models import (
    AttentionSite,
    ModelHandle,
    ModelLoadError,
    UnsupportedArchitectureError,
    load_model,
    wrap_model,
)
from plip_nn.trace import EditReading, Item, ItemResult, RemoteConfigError, run

__all__ = [
    "AttentionEdit",
    "AttentionSite",
    "CausallyMaskedEdgeError",
    "Condition",
    "EditReading",
    "EditSpecError",
    "EditVerificationError",
    "Item",
    "ItemResult",
    "Knockout",
    "ModelHandle",
    "ModelLoadError",
    "Probe",
    "RemoteConfigError",
    "Scale",
    "SetValue",
    "UnsupportedArchitectureError",
    "load_model",
    "run",
    "wrap_model",
]
