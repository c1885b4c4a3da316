"""Attention edit specifications: what to change, where, and how.

An :class:`AttentionEdit` names layers, heads (default all), source token positions (query rows),
target token positions (key columns) and one operation:

* :class:`Knockout` -- pre-softmax score ``[s, t] = -inf``; the row renormalises through softmax.
* :class:`Scale` -- post-softmax ``p[s, t] *= f`` for ``t`` in targets, then the row is divided by
  its sum. The target mass after it is :meth:`Scale.expected_mass` of the mass before.
* :class:`SetValue` -- each target edge gets exactly ``v``; the other *allowed* keys keep their
  relative proportions and share ``1 - v*|T|``. Masked (future) keys stay 0.
* :class:`Inert` -- the inert control: post-softmax ``p[s, k] = 0`` for ``k`` in the edit's
  targets (the drawn control keys), ``p[s, t]`` unchanged for ``t`` in :attr:`Inert.protect`
  (the scope's real targets), and the removed mass goes to the other allowed keys in proportion
  to their weights. Masked (future) keys stay 0; a row with no other allowed key is an error.

Positions are absolute token positions in the full (unpadded) sequence. Specs are frozen,
keyword-only, validated at construction and JSON round-trippable. The tensor functions that
carry the edits out live in :mod:`plip_nn.kernels`.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "INERT_TARGET_TOLERANCE",
    "AttentionEdit",
    "CausallyMaskedEdgeError",
    "Condition",
    "EditSpecError",
    "EditVerificationError",
    "Inert",
    "Knockout",
    "Operation",
    "Probe",
    "Scale",
    "SetValue",
    "operation_from_json",
]


class EditSpecError(ValueError):
    """An edit specification is invalid (the message names the field and the fix)."""


class CausallyMaskedEdgeError(EditSpecError):
    """An edited edge is masked by the causal (or sliding-window) mask, so editing it does nothing."""

    def __init__(self, *, sample: str, source: int, target: int, reason: str) -> None:
        self.sample = sample
        self.source = source
        self.target = target
        super().__init__(
            f"sample {sample!r}: edge (source={source}, target={target}) is masked ({reason}); "
            "editing it would do nothing. Use targets that come before the source token "
            "(check the corpus with `plip-nn corpus check`)."
        )


class EditVerificationError(RuntimeError):
    """The attention achieved in an edited pass disagrees with the requested operation."""


INERT_TARGET_TOLERANCE = 0.02  # largest relative change of a protected target under Inert


def _int_tuple(
    name: str, values: Iterable[int] | None, *, allow_empty: bool = False
) -> tuple[int, ...]:
    if values is None:
        raise EditSpecError(f"{name} is None; pass a sequence of non-negative ints")
    if isinstance(values, (str, bytes)):
        raise EditSpecError(f"{name}={values!r} is a string; pass a sequence of ints")
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise EditSpecError(f"{name} contains {v!r}; positions must be ints")
        if v < 0:
            raise EditSpecError(f"{name} contains {v}; positions must be >= 0")
        out.append(int(v))
    if not out and not allow_empty:
        raise EditSpecError(f"{name} is empty; an edit needs at least one position")
    # Order-preserving de-duplication.
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, kw_only=True)
class Knockout:
    """Remove the edges: pre-softmax score -> -inf, the row renormalises through softmax."""

    kind: ClassVar[str] = "knockout"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind}


@dataclass(frozen=True, kw_only=True)
class Scale:
    """Multiply the post-softmax weight of each target edge by ``factor`` and renormalise."""

    factor: float
    kind: ClassVar[str] = "scale"

    def __post_init__(self) -> None:
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, (int, float)):
            raise EditSpecError(f"Scale.factor={f!r} is not a number; pass a float > 0")
        if not math.isfinite(f) or f <= 0:
            raise EditSpecError(
                f"Scale.factor={f!r} must be finite and > 0 (use Knockout to remove edges)"
            )
        object.__setattr__(self, "factor", float(f))

    def expected_mass(self, mass: float) -> float:
        """Target mass after the edit, given the mass ``m`` before it: f*m / (1 - m + f*m).

        This is the Scale formula (docs/CONTRACT.md, "Edit semantics"); :meth:`factor_for`
        inverts it.
        """
        f = self.factor
        return f * mass / (1.0 - mass + f * mass)

    @staticmethod
    def factor_for(mass: float, target: float) -> float:
        """The factor ``f`` that takes target mass ``m`` to ``M``: f = M (1 - m) / (m (1 - M)).

        The inverse of :meth:`expected_mass`: ``Scale(factor=f).expected_mass(m) == M`` up to
        rounding.

        Raises:
            EditSpecError: ``m`` or ``M`` is not strictly between 0 and 1 (a mass of 0 cannot be
                scaled, and no factor reaches a mass of 0 or 1).
        """
        for name, value in (("mass", mass), ("target", target)):
            if not 0.0 < value < 1.0:
                raise EditSpecError(
                    f"Scale.factor_for: {name}={value!r} must be strictly between 0 and 1; "
                    "Scale can only move a mass in (0, 1) to another mass in (0, 1)"
                )
        return target * (1.0 - mass) / (mass * (1.0 - target))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, "factor": self.factor}


@dataclass(frozen=True, kw_only=True)
class SetValue:
    """Give each target edge exactly ``value``; other allowed keys keep their proportions."""

    value: float
    kind: ClassVar[str] = "set_value"

    def __post_init__(self) -> None:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise EditSpecError(f"SetValue.value={v!r} is not a number; pass a float in [0, 1)")
        if not math.isfinite(v) or not 0.0 <= v < 1.0:
            raise EditSpecError(f"SetValue.value={v!r} must be in [0, 1)")
        object.__setattr__(self, "value", float(v))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, "value": self.value}


@dataclass(frozen=True, kw_only=True)
class Inert:
    """Zero the edit's target edges post-softmax and give their mass to the other allowed keys,
    never to the ``protect`` keys (whose weights stay exactly as they were).

    The inert control of the study: the edit's targets are the drawn control keys, ``protect``
    the scope's real targets (absolute positions, like the edit's). Each receiving key (allowed,
    neither removed nor protected) gets ``p * (1 + removed / receivers' mass)``; with no
    receiving weight, the removed mass is shared evenly among the receiving keys.
    """

    protect: tuple[int, ...]
    kind: ClassVar[str] = "inert"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "protect", _int_tuple("Inert.protect", self.protect, allow_empty=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, "protect": list(self.protect)}


Operation = Knockout | Scale | SetValue | Inert


def operation_from_json(data: dict[str, Any]) -> Operation:
    """Build an operation from its ``to_dict`` form."""
    op = data.get("op")
    if op == "knockout":
        return Knockout()
    if op == "scale":
        return Scale(factor=data["factor"])
    if op == "set_value":
        return SetValue(value=data["value"])
    if op == "inert":
        return Inert(protect=tuple(data["protect"]))
    raise EditSpecError(f"unknown op {op!r}; expected 'knockout', 'scale', 'set_value' or 'inert'")


@dataclass(frozen=True, kw_only=True)
class AttentionEdit:
    """One operation on the edges ``sources x targets`` at ``layers`` (and ``heads``).

    Args:
        layers: layer indices (0-based) to edit.
        sources: query token positions (absolute, unpadded).
        targets: key token positions (absolute, unpadded).
        op: the operation.
        heads: attention heads to edit; ``None`` means all heads.
    """

    layers: tuple[int, ...]
    sources: tuple[int, ...]
    targets: tuple[int, ...]
    op: Operation
    heads: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _int_tuple("layers", self.layers))
        object.__setattr__(self, "sources", _int_tuple("sources", self.sources))
        object.__setattr__(self, "targets", _int_tuple("targets", self.targets))
        if self.heads is not None:
            object.__setattr__(self, "heads", _int_tuple("heads", self.heads))
        if not isinstance(self.op, (Knockout, Scale, SetValue, Inert)):
            raise EditSpecError(
                f"op={self.op!r} is not an operation; use Knockout(), Scale(factor=...), "
                "SetValue(value=...) or Inert(protect=...)"
            )
        if isinstance(self.op, Inert):
            both = sorted(set(self.op.protect) & set(self.targets))
            if both:
                raise EditSpecError(
                    f"Inert: positions {both} are both removed (targets) and protected; "
                    "draw the control keys outside the protected targets"
                )
        if isinstance(self.op, SetValue) and self.op.value * len(self.targets) >= 1.0:
            raise EditSpecError(
                f"SetValue.value={self.op.value} with {len(self.targets)} targets gives "
                f"v*|T|={self.op.value * len(self.targets):.4g} >= 1; choose v < {1 / len(self.targets):.4g}"
            )

    @property
    def edges(self) -> list[tuple[int, int]]:
        """The (source, target) pairs edited at each layer."""
        return [(s, t) for s in self.sources for t in self.targets]

    def validate(
        self,
        *,
        n_layers: int,
        n_heads: int,
        seq_len: int,
        sample: str = "?",
        sliding_windows: Sequence[int | None] | None = None,
    ) -> None:
        """Check the edit against a model and a sequence; raise with a fix on any problem.

        Args:
            n_layers: number of decoder layers of the model.
            n_heads: number of attention (query) heads.
            seq_len: length of the unpadded token sequence.
            sample: sample id, named in error messages.
            sliding_windows: per-layer sliding window (None = full attention).
        """
        for layer in self.layers:
            if layer >= n_layers:
                raise EditSpecError(
                    f"sample {sample!r}: layer {layer} is out of range; the model has {n_layers} "
                    f"layers (0..{n_layers - 1})"
                )
        if self.heads is not None:
            for h in self.heads:
                if h >= n_heads:
                    raise EditSpecError(
                        f"sample {sample!r}: head {h} is out of range; the model has {n_heads} "
                        f"heads (0..{n_heads - 1})"
                    )
        protect = self.op.protect if isinstance(self.op, Inert) else ()
        for name, positions in (
            ("source", self.sources),
            ("target", self.targets),
            ("protected target", protect),
        ):
            for p in positions:
                if p >= seq_len:
                    raise EditSpecError(
                        f"sample {sample!r}: {name} position {p} >= sequence length {seq_len}; "
                        "positions are token indices of the unpadded sequence"
                    )
        for s, t in self.edges:
            if t > s:
                raise CausallyMaskedEdgeError(
                    sample=sample, source=s, target=t, reason="target after source: causal mask"
                )
        if sliding_windows is not None:
            for layer in self.layers:
                window = sliding_windows[layer]
                if window is None:
                    continue
                for s, t in self.edges:
                    if s - t >= window:
                        raise CausallyMaskedEdgeError(
                            sample=sample,
                            source=s,
                            target=t,
                            reason=f"outside the sliding window {window} of layer {layer}",
                        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "heads": None if self.heads is None else list(self.heads),
            "sources": list(self.sources),
            "targets": list(self.targets),
            **self.op.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttentionEdit:
        heads = data.get("heads")
        return cls(
            layers=tuple(data["layers"]),
            heads=None if heads is None else tuple(heads),
            sources=tuple(data["sources"]),
            targets=tuple(data["targets"]),
            op=operation_from_json(data),
        )


@dataclass(frozen=True, kw_only=True)
class Condition:
    """A named experimental condition: a list of edits applied together (empty = baseline)."""

    name: str
    edits: tuple[AttentionEdit, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise EditSpecError(f"Condition.name={self.name!r} must be a non-empty string")
        edits = tuple(self.edits)
        for e in edits:
            if not isinstance(e, AttentionEdit):
                raise EditSpecError(f"Condition {self.name!r}: {e!r} is not an AttentionEdit")
        object.__setattr__(self, "edits", edits)

    def to_json(self) -> str:
        """JSON of the edit list (the ``edit`` column of records)."""
        return json.dumps([e.to_dict() for e in self.edits], sort_keys=True)

    @classmethod
    def from_json(cls, name: str, text: str) -> Condition:
        return cls(name=name, edits=tuple(AttentionEdit.from_dict(d) for d in json.loads(text)))


@dataclass(frozen=True, kw_only=True)
class Probe:
    """Edges whose attention is *read* (not edited): levels at ``layers`` from sources to targets."""

    layers: tuple[int, ...]
    sources: tuple[int, ...]
    targets: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _int_tuple("layers", self.layers))
        object.__setattr__(self, "sources", _int_tuple("sources", self.sources))
        object.__setattr__(self, "targets", _int_tuple("targets", self.targets))
