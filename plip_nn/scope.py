"""Edit scope: which query rows, which key columns and which layers an edit touches.

A scope is data (docs/CONTRACT.md, "Edit scope"): every condition of the study records its
``rows``, ``targets`` and ``layers`` as columns, and its name carries them, so analysis can
group, pair and qualify every verdict by scope. This module is the one home of the names, the
labels and the condition-name format; it imports neither torch nor a model, so
:mod:`analysis` reads it as well as :mod:`experiments`.

* **rows** (query positions):
  ``marker`` -- the token that holds the marker's first character (PLIP-rs);
  ``marker_span`` -- every token of the marker text (``>>>``; ``#[test]`` and its line
  break), plus every marker the model generates;
  ``to_call`` -- from the marker's first token to the call's prediction row, included (on a
  test sample: the row that predicts the first token of the function's name where the test
  first calls it); on a generation prompt from the marker to the end of the prompt, plus
  every generated row until the test's first call has been written or the first test ends;
  ``continuation`` -- from the marker to the end of the prompt (of the sample, in a single
  pass over a full test), plus every generated row.
* **targets** (key positions):
  ``plip`` -- the token holding each target character (the first character of ``def``/``fn``,
  the name and each parameter; PLIP-rs);
  ``identifiers`` -- every token of those identifiers (a name is often several tokens);
  ``mentions`` -- the ``identifiers`` tokens plus every token that overlaps an earlier
  mention of the function's name before the readout row (``add`` in a Rust ``fn test_add``
  header), so the report can say which path a copy of the name takes. A mention after the
  marker is edited only from the rows after it (causally valid edges).
* **layers**: ``L`` -- the chosen layer (per sample: it may be chosen on the other half of
  the samples, see :mod:`experiments.calibrate`); ``all`` -- every layer; ``w<a>-<b>`` -- the
  window of layers a..b of a sweep that slides over the layers (Geva et al. 2023).

Condition names: ``baseline``; otherwise ``<arm>@<rows>/<targets>/<layers>``, and a control
draw adds ``#<d>``: ``knockout@marker_span/identifiers/L``,
``random_control@continuation/identifiers/all#2``, ``scale_2@marker_span/identifiers/L``.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

__all__ = [
    "BASELINE",
    "CHOSEN",
    "DEFAULT_ROWS",
    "DEFAULT_TARGETS",
    "EVERY",
    "PLIP_ROWS",
    "PLIP_TARGETS",
    "ROWS",
    "TARGETS",
    "ConditionName",
    "Scope",
    "ScopeError",
    "condition_name",
    "function_half",
    "parse_condition",
    "window_label",
    "window_layers",
    "windows",
]

BASELINE = "baseline"
ROWS = ("marker", "marker_span", "to_call", "continuation")
TARGETS = ("plip", "identifiers", "mentions")
DEFAULT_ROWS = "marker_span"
DEFAULT_TARGETS = "identifiers"
PLIP_ROWS = "marker"
PLIP_TARGETS = "plip"
CHOSEN = "L"
EVERY = "all"
_WINDOW = re.compile(r"w(\d+)-(\d+)")
_NAME = re.compile(
    r"(?P<arm>[^@#]+)@(?P<rows>[a-z_]+)/(?P<targets>[a-z_]+)/(?P<layers>[^/#]+)(?:#(?P<draw>\d+))?"
)


class ScopeError(ValueError):
    """A scope name or a condition name that does not follow the format."""


def window_label(first: int, last: int) -> str:
    """``w<first>-<last>``: the label of a window of layers (both ends included)."""
    return f"w{first}-{last}"


def window_layers(label: str) -> tuple[int, ...]:
    """The layers of a window label (``w1-2`` -> ``(1, 2)``)."""
    m = _WINDOW.fullmatch(label)
    if m is None or int(m[1]) > int(m[2]):
        raise ScopeError(f"layers {label!r} is not a window label like 'w0-1'")
    return tuple(range(int(m[1]), int(m[2]) + 1))


def windows(n_layers: int, width: int, stride: int) -> list[tuple[int, ...]]:
    """The windows of a sweep: ``width`` consecutive layers, moved by ``stride``, covering all.

    The last window always ends at the last layer, so every layer is in some window.
    """
    if width < 1 or stride < 1:
        raise ScopeError(f"window width {width} and stride {stride} must be >= 1")
    width = min(width, n_layers)
    starts = list(range(0, n_layers - width + 1, stride))
    if starts[-1] != n_layers - width:
        starts.append(n_layers - width)
    return [tuple(range(s, s + width)) for s in starts]


@dataclass(frozen=True)
class Scope:
    """Rows × targets × layers of an edit (names in the module docstring)."""

    rows: str
    targets: str
    layers: str

    def __post_init__(self) -> None:
        if self.rows not in ROWS:
            raise ScopeError(f"rows {self.rows!r}: use one of {', '.join(ROWS)}")
        if self.targets not in TARGETS:
            raise ScopeError(f"targets {self.targets!r}: use one of {', '.join(TARGETS)}")
        if self.layers not in (CHOSEN, EVERY):
            window_layers(self.layers)

    @property
    def label(self) -> str:
        """``rows/targets/layers``, e.g. ``marker_span/identifiers/L``."""
        return f"{self.rows}/{self.targets}/{self.layers}"

    @property
    def is_window(self) -> bool:
        return self.layers not in (CHOSEN, EVERY)

    @property
    def is_plip(self) -> bool:
        """The original system's scope: the marker's first token to the first target tokens."""
        return self.rows == PLIP_ROWS and self.targets == PLIP_TARGETS

    def layer_indices(self, chosen: int, n_layers: int) -> tuple[int, ...]:
        """The layers edited for a sample whose chosen layer is ``chosen``."""
        if self.layers == CHOSEN:
            return (chosen,)
        if self.layers == EVERY:
            return tuple(range(n_layers))
        return window_layers(self.layers)

    def record_layer(self, chosen: int) -> int:
        """The ``layer`` column: the chosen layer, -1 for all layers, a window's first layer."""
        if self.layers == CHOSEN:
            return chosen
        if self.layers == EVERY:
            return -1
        return window_layers(self.layers)[0]

    @classmethod
    def parse(cls, label: str) -> Scope:
        parts = label.split("/")
        if len(parts) != 3:
            raise ScopeError(f"scope {label!r}: write it as rows/targets/layers")
        return cls(*parts)


@dataclass(frozen=True)
class ConditionName:
    """A parsed condition name: the arm (``knockout``, ``scale_2``, ...), scope and draw."""

    arm: str
    scope: Scope | None
    draw: int | None = None

    @property
    def name(self) -> str:
        return condition_name(self.arm, self.scope, self.draw)


def condition_name(arm: str, scope: Scope | None, draw: int | None = None) -> str:
    """The condition name for ``arm`` in ``scope`` (``baseline`` has none), with a draw."""
    if arm == BASELINE:
        if scope is not None or draw is not None:
            raise ScopeError("baseline has no scope and no draw")
        return BASELINE
    if scope is None:
        raise ScopeError(f"condition {arm!r} needs a scope")
    if "@" in arm or "#" in arm:
        raise ScopeError(f"arm {arm!r} must not contain '@' or '#'")
    return f"{arm}@{scope.label}" + ("" if draw is None else f"#{int(draw)}")


def parse_condition(name: str) -> ConditionName:
    """Split a condition name into arm, scope and draw (``baseline`` has neither).

    Raises:
        ScopeError: the name is neither ``baseline`` nor ``arm@rows/targets/layers[#d]``.
    """
    if name == BASELINE:
        return ConditionName(BASELINE, None, None)
    m = _NAME.fullmatch(name)
    if m is None:
        raise ScopeError(
            f"condition {name!r} is not 'baseline' or 'arm@rows/targets/layers[#draw]'"
        )
    scope = Scope(m["rows"], m["targets"], m["layers"])
    draw = None if m["draw"] is None else int(m["draw"])
    return ConditionName(m["arm"], scope, draw)


def function_half(sample_id: str, seed: int) -> int:
    """0 or 1: the seeded half of the samples that a sample's function belongs to.

    The layer is chosen on one half and used on the other (experiments.calibrate). The half
    follows the function, not the sample (``py_clamp`` and ``pyg_clamp`` test the same
    function and share a half): the id without its prefix up to the first ``_``.
    """
    stem = sample_id.split("_", 1)[-1]
    return zlib.crc32(f"{seed}:{stem}".encode()) % 2
