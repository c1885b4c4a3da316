"""Structural resolution of the attention intervention points (the sites).

plip-nn edits attention inside *unmodified* HuggingFace models through nnsight. The intervention
point is the softmax inside each attention module's eager attention function: its input is the
masked pre-softmax score tensor ``[batch, heads, q, k]``, its output the probabilities.

nnsight names operations by the code it instruments (``attention_interface_1``,
``nn_functional_softmax_0``) and those names shift between versions. We therefore find them
*structurally* and name them with nnsight's own instrumenter, so the labels always match:

1. the decoder layers are the ``nn.ModuleList`` whose length is ``config.num_hidden_layers``;
2. in each layer, the attention module is the submodule whose ``forward`` calls a function it
   obtained from an attention-function registry lookup ``X.get_interface(impl, default)``
   (transformers' dispatch); the eager function is that lookup's ``default``;
3. inside the eager function, the intervention point is its single call to ``softmax``.

Anything that does not resolve raises :class:`UnsupportedArchitectureError`. The handle that
uses the sites is :class:`plip_nn.models.ModelHandle`.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

__all__ = [
    "VERIFIED_ARCHITECTURES",
    "AttentionSite",
    "UnsupportedArchitectureError",
    "resolve_sites",
]


class UnsupportedArchitectureError(RuntimeError):
    """The attention intervention point could not be found or failed the self-check."""


@dataclass(frozen=True)
class AttentionSite:
    """Where one layer's attention probabilities are computed, as nnsight paths/labels."""

    layer: int
    module_path: str  # e.g. "model.layers.3.self_attn"
    call_op: str  # label of the attention-function call in the module's forward
    softmax_op: str  # label of the softmax inside the eager attention function
    consumer_op: str  # label of the call that multiplies the probabilities with V
    probs_arg: int  # position of the probabilities among that call's arguments

    def plain(self) -> tuple[str, str, str, str, int]:
        """The site as the plain tuple the in-trace code takes (slots ``kernels.SITE_*``)."""
        return (self.module_path, self.call_op, self.softmax_op, self.consumer_op, self.probs_arg)


def _instrument_labels(func: Callable) -> dict[str, ast.Call]:
    """Label -> call node for every call in ``func``, labelled exactly as nnsight labels them."""
    try:
        from nnsight.intervention.source import Instrument, decorator_chain
    except ImportError as err:  # pragma: no cover - depends on the installed nnsight
        raise UnsupportedArchitectureError(
            "this nnsight version has no source instrumenter (nnsight.intervention.source."
            "Instrument); install nnsight 0.8.x"
        ) from err

    inner, _ = decorator_chain(func)
    code = inner.__code__
    lines, _ = inspect.getsourcelines(code)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    calls: dict[str, ast.Call] = {}

    class Recording(Instrument):
        def wrap(self, name, fn, args, keywords, node):
            wrapped = super().wrap(name, fn, args, keywords, node)
            if isinstance(node, ast.Call):
                calls[self.names[-1]] = node
            return wrapped

    Recording().visit(tree)
    return calls


def _dotted(expr: ast.expr) -> list[str]:
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if isinstance(expr, ast.Name):
        parts.append(expr.id)
    return parts[::-1]


def _registry_defaults(func: Callable) -> dict[str, ast.expr]:
    """Local names bound to ``X.get_interface(impl, default)`` in ``func`` -> the default expr."""
    inner = inspect.unwrap(func)
    source = textwrap.dedent(inspect.getsource(inner))
    out: dict[str, ast.expr] = {}
    for node in ast.walk(ast.parse(source)):
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if not isinstance(target, ast.Name) or not isinstance(value, ast.Call):
            continue
        callee = _dotted(value.func)
        if callee and callee[-1] == "get_interface" and len(value.args) >= 2:
            out[target.id] = value.args[1]
    return out


def _resolve_global(func: Callable, expr: ast.expr) -> Callable | None:
    parts = _dotted(expr)
    if not parts:
        return None
    inner = inspect.unwrap(func)
    namespace: Any = getattr(inner, "__globals__", None) or vars(sys.modules[inner.__module__])
    obj: Any = namespace.get(parts[0])
    for p in parts[1:]:
        obj = getattr(obj, p, None)
    return obj if callable(obj) else None


def _module_forward(module: torch.nn.Module) -> Callable:
    from nnsight.intervention.source import module_body

    return module_body(module)


def _find_attention_call(module: torch.nn.Module) -> tuple[str, Callable] | None:
    """The label of the attention-function call in ``module.forward`` and the eager function."""
    try:
        forward = _module_forward(module)
        defaults = _registry_defaults(forward)
    except (OSError, TypeError, SyntaxError):
        return None
    if not defaults:
        return None
    labels = _instrument_labels(forward)
    for label, call in labels.items():
        if isinstance(call.func, ast.Name) and call.func.id in defaults:
            eager = _resolve_global(forward, defaults[call.func.id])
            if eager is not None:
                return label, eager
    return None


_CONSUMERS = ("matmul", "bmm", "einsum")


def _find_softmax(eager: Callable) -> tuple[str, str, int]:
    """Labels of the softmax and of the call that multiplies its probabilities with V.

    The consumer is found structurally: the softmax's result is bound to a local name (possibly
    rebound by dropout); the first later ``matmul``/``bmm``/``einsum`` call taking that name as
    an argument is where the model reads the probabilities. Returns ``(softmax label, consumer
    label, position of the probabilities among the consumer's arguments)``.
    """
    where = f"{eager.__module__}.{eager.__qualname__}"
    labels = _instrument_labels(eager)
    found = [label for label, call in labels.items() if _dotted(call.func)[-1:] == ["softmax"]]
    if len(found) != 1:
        raise UnsupportedArchitectureError(
            f"expected exactly one softmax call in {where}, "
            f"found {found}; this attention function is not supported"
        )
    softmax_line = labels[found[0]].lineno
    tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(eager))))
    names = {
        node.targets[0].id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and any(
            isinstance(c, ast.Call) and _dotted(c.func)[-1:] == ["softmax"]
            for c in ast.walk(node.value)
        )
    }
    consumers = []
    for label, call in labels.items():
        if _dotted(call.func)[-1:] and _dotted(call.func)[-1] in _CONSUMERS:
            if call.lineno < softmax_line:
                continue
            for i, arg in enumerate(call.args):
                if isinstance(arg, ast.Name) and arg.id in names:
                    consumers.append((call.lineno, call.col_offset, label, i))
    if not consumers:
        raise UnsupportedArchitectureError(
            f"no matmul/bmm/einsum call in {where} takes the softmax's probabilities "
            f"(bound to {sorted(names)}); cannot verify edits where the model reads them"
        )
    _line, _col, label, index = min(consumers)
    return found[0], label, index


def _decoder_layers(model: torch.nn.Module, n_layers: int) -> tuple[str, torch.nn.ModuleList]:
    candidates = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers
    ]
    if not candidates:
        raise UnsupportedArchitectureError(
            f"no nn.ModuleList of length num_hidden_layers={n_layers} in "
            f"{type(model).__name__}; cannot find the decoder layers"
        )
    # The shallowest match is the decoder stack (deeper ones would be inside a layer).
    return min(candidates, key=lambda c: c[0].count("."))


# Architectures whose sites resolve structurally and whose edits tests/test_engine.py checks
# against a hand-written attention reference: the name users know -> the HF ``model_type``
# values it covers. Resolution itself is structural; this list says what has been verified.
VERIFIED_ARCHITECTURES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "qwen2": ("qwen2",),
        "qwen3": ("qwen3",),
        "llama": ("llama",),
        "mistral": ("mistral",),
        "starcoder2": ("starcoder2",),
        "gemma": ("gemma",),
        "gemma2": ("gemma2",),
        "gemma3": ("gemma3_text",),  # the text model (Gemma3ForCausalLM)
        "phi3": ("phi3",),
        "gpt2": ("gpt2",),
        "gpt_neox": ("gpt_neox",),
        "olmo2": ("olmo2",),
        "granite": ("granite",),
    }
)


def resolve_sites(model: torch.nn.Module) -> list[AttentionSite]:
    """Find every layer's attention module, its attention-function call and the softmax inside."""
    config: Any = model.config
    n_layers = int(config.num_hidden_layers)
    stack_name, layers = _decoder_layers(model, n_layers)
    sites: list[AttentionSite] = []
    cache: dict[type, tuple[str, str, str, int] | None] = {}
    for i, layer in enumerate(layers):
        found: tuple[str, str, str, str, int] | None = None
        for sub_name, sub in layer.named_modules():
            if sub is layer:
                continue
            key = type(sub)
            if key not in cache:
                hit = _find_attention_call(sub)
                cache[key] = None if hit is None else (hit[0], *_find_softmax(hit[1]))
            resolved = cache[key]
            if resolved is not None:
                found = (sub_name, *resolved)
                break
        if found is None:
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} layer {i}: no submodule calls an attention function "
                "obtained from transformers' attention registry (get_interface); this "
                "architecture is not supported"
            )
        prefix = f"{stack_name}.{i}" if stack_name else str(i)
        sites.append(
            AttentionSite(
                layer=i,
                module_path=f"{prefix}.{found[0]}",
                call_op=found[1],
                softmax_op=found[2],
                consumer_op=found[3],
                probs_arg=found[4],
            )
        )
    return sites


def _sliding_windows(config: Any, n_layers: int) -> list[int | None]:
    """Per-layer sliding window (keys with ``s - t >= window`` are masked), None = full."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if not window:
        return [None] * n_layers
    if layer_types is not None:
        return [int(window) if t == "sliding_attention" else None for t in layer_types]
    if getattr(config, "use_sliding_window", True) is False:
        return [None] * n_layers
    return [int(window)] * n_layers
