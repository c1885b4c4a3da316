"""Model loading and structural resolution of the attention intervention points.

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

A runtime self-check (:meth:`ModelHandle.self_check`) then runs one tiny trace and verifies that
the op's input is causally masked and its output is a row-stochastic ``[batch, heads, q, k]``
tensor. Anything that does not resolve raises :class:`UnsupportedArchitectureError`.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

__all__ = [
    "ATTN_POLICIES",
    "VERIFIED_ARCHITECTURES",
    "AttentionSite",
    "ModelHandle",
    "ModelLoadError",
    "UnsupportedArchitectureError",
    "load_model",
    "resolve_device",
    "wrap_model",
]

log = logging.getLogger(__name__)


class UnsupportedArchitectureError(RuntimeError):
    """The attention intervention point could not be found or failed the self-check."""


class ModelLoadError(ValueError):
    """A model name/path could not be loaded (bad input: the message says what to do)."""


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


ATTN_POLICIES = ("eager", "sdpa", "auto", "as_loaded")
"""How a handle runs attention (``attn=`` of :func:`wrap_model` / :func:`load_model`).

``eager``: always eager; every edit on the softmax route. ``sdpa``: always SDPA; Knockout and
Scale on the additive-mask route, SetValue refused. ``auto``: the fastest route each piece of
work allows -- SDPA and the mask route for Knockout, Scale, reads and unedited rows, eager and
the softmax route for SetValue -- switching the model's attention implementation per forward
pass or generation batch (models that cannot run SDPA stay eager). ``as_loaded``: keep the
model's own implementation (softmax route if it is eager, mask route otherwise).
"""

_ROUTE_SOFTMAX, _ROUTE_MASK = "softmax", "mask"  # kernels.ROUTE_* (kernels imports torch only)


class ModelHandle:
    """An nnsight-wrapped HF causal LM with its resolved attention sites.

    Attributes:
        nn: the ``nnsight.TransformersModel``.
        hf: the underlying HF model (``None`` for a remote-only meta model).
        tokenizer: the model's tokenizer.
        name: model name or path (recorded in manifests).
        revision: model revision if known.
        sites: one :class:`AttentionSite` per layer.
        sliding_windows: per-layer sliding window or None.
        attn: the attention policy (:data:`ATTN_POLICIES`).
        implementations: the attention implementations the handle runs; the first is its
            default (``auto``: ``("sdpa", "eager")``).
    """

    def __init__(
        self,
        nn_model: Any,
        hf_model: torch.nn.Module,
        sites: list[AttentionSite],
        *,
        name: str,
        revision: str | None = None,
        attn: str = "as_loaded",
    ) -> None:
        self.nn = nn_model
        self.hf: Any = hf_model  # an HF PreTrainedModel (typed loosely: its config is dynamic)
        self.tokenizer = nn_model.tokenizer
        self.name = name
        self.revision = revision
        config: Any = self.hf.config
        self.config = config
        self.n_layers = int(config.num_hidden_layers)
        self.n_heads = int(config.num_attention_heads)
        self.sites = sites
        self.sliding_windows = _sliding_windows(config, self.n_layers)
        if attn not in ATTN_POLICIES:
            raise ValueError(f"attn={attn!r}; use one of {', '.join(ATTN_POLICIES)}")
        self.attn = attn
        current = str(self.attn_implementation)
        self.implementations: tuple[str, ...] = (
            ("sdpa", "eager") if attn == "auto" and current == "sdpa" else (current,)
        )

    def attention_policy(self) -> dict[str, Any]:
        """The attention choice, for manifests: the policy, the implementations and which
        route (and implementation) each kind of pass runs on."""
        mask = self.route_for(False)
        probs = self.route_for(True)

        def where(route: str) -> str:
            impl = "eager" if route == _ROUTE_SOFTMAX else self.implementations[0]
            return f"{route} route on {impl}"

        return {
            "policy": self.attn,
            "implementations": list(self.implementations),
            "knockout_scale_reads": where(mask),
            "set_value": where(probs) if probs == _ROUTE_SOFTMAX else "refused (needs eager)",
        }

    @property
    def attn_implementation(self) -> str | None:
        """The attention implementation the model runs now."""
        return getattr(self.hf.config, "_attn_implementation", None)

    # -- routes ----------------------------------------------------------------------------
    def route_for(self, needs_probs: bool) -> str:
        """The edit route for work that edits probabilities (SetValue) or not.

        ``"softmax"`` (eager) when the work edits probabilities and the handle can run eager,
        or the handle runs eager by default; ``"mask"`` (the additive-mask route) otherwise
        (SetValue is then refused with the fix, :func:`plip_nn.routes.validate_edits`).
        """
        if self.implementations[0] == "eager" or (needs_probs and "eager" in self.implementations):
            return _ROUTE_SOFTMAX
        return _ROUTE_MASK

    def require_route(self, route: str, why: str) -> None:
        """Raise unless the handle can run ``route`` (the softmax route needs eager)."""
        if route == _ROUTE_SOFTMAX and "eager" not in self.implementations:
            raise UnsupportedArchitectureError(
                f"{why} needs eager attention, but the model runs "
                f"{self.attn_implementation!r}; load it with attn='eager' or attn='auto' "
                "(load_model's default is eager) or use the additive-mask route "
                "(Knockout/Scale only)"
            )

    @contextlib.contextmanager
    def use_route(self, route: str) -> Iterator[None]:
        """Run the block with the attention implementation ``route`` needs.

        The softmax route needs eager; the mask route runs on the handle's default
        implementation. Switches the HF model (a config flag; ~0.4 ms) and switches back.
        """
        want = "eager" if route == _ROUTE_SOFTMAX else self.implementations[0]
        before = self.attn_implementation
        if want == before or want not in self.implementations:
            yield  # nothing to switch (callers validate routes with require_route)
            return
        self.hf.set_attn_implementation(want)
        try:
            yield
        finally:
            self.hf.set_attn_implementation(before)

    # -- in-trace access -------------------------------------------------------------------
    def attention_call(self, layer: int) -> Any:
        """The nnsight op of the attention-function call at ``layer`` (inside a trace)."""
        site = self.sites[layer]
        return getattr(self.nn.get(site.module_path).source, site.call_op)

    def softmax(self, layer: int) -> Any:
        """The nnsight op of the attention softmax at ``layer`` (inside a trace)."""
        site = self.sites[layer]
        return getattr(self.attention_call(layer).source, site.softmax_op)

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    def require_eager(self, why: str) -> None:
        """Raise unless the model runs eager attention *now* (inside a trace that is already
        open, e.g. :func:`plip_nn.intervene`, the implementation cannot be switched)."""
        if self.attn_implementation != "eager":
            raise UnsupportedArchitectureError(
                f"{why} needs eager attention, but the model runs "
                f"{self.attn_implementation!r}; load it with attn='eager' "
                "(load_model does this by default) or use the additive-mask route "
                "(Knockout/Scale only)"
            )

    def self_check(self) -> None:
        """Run tiny traces that verify the intervention points of every route the handle uses.

        Every route: an identity edit (Scale(1)) at the first and last layer goes through
        :func:`plip_nn.kernels.edit_site` and must verify -- on the softmax route against the
        probabilities the consumer op multiplies with V, on the mask route against the
        attention call's output recomputed from its q, k, v and mask. Under eager the check
        also verifies that the softmax op's input is ``[batch, heads, q, k]`` with ``heads ==
        num_attention_heads``, future keys are masked, and the output rows sum to 1 and put
        zero weight on future keys. An ``auto`` handle checks both implementations.
        """
        routes = {self.route_for(False)}
        if "eager" in self.implementations:
            routes.add(self.route_for(True))
        for route in sorted(routes):
            with self.use_route(route):
                self._check_edit_site(route)
                if self.attn_implementation == "eager":
                    self._check_softmax()

    def _check_edit_site(self, route: str) -> None:
        from plip_nn import kernels

        n = 5
        ids = torch.arange(1, n + 1, device=self.device)[None] % int(self.config.vocab_size)
        group = [0, None, [n - 1], [0, 2], kernels.SCALE, 1.0]
        layers = sorted({0, self.n_layers - 1})
        saved = {}
        try:
            with (
                torch.inference_mode(),
                self.nn.trace({"input_ids": ids, "attention_mask": ids * 0 + 1}),
            ):
                for layer in layers:
                    st, _ = kernels.edit_site(
                        self.nn, self.sites[layer].plain(), [group], [group], [], route
                    )
                    saved[layer] = st.save()
        except Exception as err:
            raise UnsupportedArchitectureError(
                f"{self.name}: the attention intervention point could not be traced on the "
                f"{route} route ({err}); sites: {self.sites[0]}"
            ) from err
        for layer, st in saved.items():
            ratio = float(st[0, kernels.ST_ERROR_RATIO])
            if not ratio <= 1.0:
                raise UnsupportedArchitectureError(
                    f"{self.name} layer {layer}: an identity edit on the {route} route does not "
                    f"verify (error {ratio:.3g}x tolerance); site {self.sites[layer]} is not "
                    "where the model computes and reads its attention"
                )

    def _check_softmax(self) -> None:
        n = 5
        ids = torch.arange(1, n + 1, device=self.device)[None] % int(self.config.vocab_size)
        mask = torch.ones_like(ids)
        layers = sorted({0, self.n_layers - 1})
        saved: dict[int, tuple[Any, Any]] = {}
        try:
            with torch.inference_mode(), self.nn.trace({"input_ids": ids, "attention_mask": mask}):
                for layer in layers:
                    op = self.softmax(layer)
                    saved[layer] = (op.input.save(), op.output.save())
        except Exception as err:
            raise UnsupportedArchitectureError(
                f"{self.name}: the attention softmax op could not be traced ({err}); "
                f"sites: {self.sites[0]}"
            ) from err
        for layer, (raw_scores, raw_probs) in saved.items():
            threshold = torch.finfo(raw_scores.dtype).min / 2
            scores, probs = raw_scores.float(), raw_probs.float()
            shape = (1, self.n_heads, n, n)
            future = torch.ones(n, n, dtype=torch.bool, device=probs.device).triu(1)
            problems = []
            if tuple(probs.shape) != shape or tuple(scores.shape) != shape:
                problems.append(f"shapes {tuple(scores.shape)}/{tuple(probs.shape)} != {shape}")
            else:
                if not torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-2):
                    problems.append("output rows do not sum to 1")
                if probs[..., future].abs().max() > 0:
                    problems.append("output puts weight on future keys")
                if (scores[..., future] > threshold).any():
                    problems.append("input is not causally masked")
            if problems:
                raise UnsupportedArchitectureError(
                    f"{self.name} layer {layer}: op {self.sites[layer].softmax_op} is not the "
                    f"attention softmax: {'; '.join(problems)}"
                )


def _switch(hf_model: torch.nn.Module, want: str, *, required: bool) -> bool:
    """Switch ``hf_model`` to the attention implementation ``want``; False if it cannot
    (raises instead when ``required``)."""
    current = getattr(hf_model.config, "_attn_implementation", None)
    if current == want:
        return True
    setter = getattr(hf_model, "set_attn_implementation", None)
    why = "it has no set_attn_implementation"
    if setter is not None:
        try:
            setter(want)
        except (ValueError, ImportError) as err:
            why = str(err).split(". ")[0]
        else:
            if getattr(hf_model.config, "_attn_implementation", None) == want:
                log.warning(
                    "switched %s from %r to %s attention", type(hf_model).__name__, current, want
                )
                return True
            why = "the switch did not take effect"
    if required:
        raise UnsupportedArchitectureError(
            f"{type(hf_model).__name__} runs {current!r} attention and cannot run {want!r} "
            f"({why}); load it with attn='eager' or attn='auto'"
        )
    return False


def wrap_model(
    hf_model: torch.nn.Module,
    tokenizer: Any,
    *,
    name: str = "in-memory",
    revision: str | None = None,
    attn: str = "eager",
    check: bool = True,
) -> ModelHandle:
    """Wrap an in-memory HF causal LM for editing.

    Args:
        hf_model: a ``*ForCausalLM`` model.
        tokenizer: its tokenizer (a fast tokenizer with offsets).
        name: recorded in manifests.
        revision: recorded in manifests.
        attn: the attention policy (:data:`ATTN_POLICIES`): ``eager`` (required to read or
            SetValue probabilities everywhere), ``sdpa``, ``auto`` (SDPA where the edit
            allows, eager for SetValue) or ``as_loaded``.
        check: run :meth:`ModelHandle.self_check`.
    """
    from nnsight import TransformersModel

    if attn not in ATTN_POLICIES:
        raise ValueError(f"attn={attn!r}; use one of {', '.join(ATTN_POLICIES)}")
    if attn == "eager":
        _switch(hf_model, "eager", required=True)
    elif attn == "sdpa":
        _switch(hf_model, "sdpa", required=True)
    elif attn == "auto" and not _switch(hf_model, "sdpa", required=False):
        log.warning(
            "%s cannot run SDPA attention; --attn auto runs it eager (softmax route)",
            type(hf_model).__name__,
        )
        _switch(hf_model, "eager", required=True)
    hf_model.eval()
    # Resolve before nnsight installs its controllers over the modules' forwards.
    sites = resolve_sites(hf_model)
    nn_model = TransformersModel(hf_model, tokenizer=tokenizer, dispatch=True)
    handle = ModelHandle(nn_model, hf_model, sites, name=name, revision=revision, attn=attn)
    if check:
        handle.self_check()
    return handle


def resolve_device(device: str | torch.device | None) -> str:
    """``"auto"`` (or None) -> ``"cuda"`` when a GPU is present, else ``"cpu"``."""
    if device is None or str(device) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def load_model(
    name_or_path: str | Path | None = None,
    *,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    attn: str = "eager",
    check: bool = True,
    device_map: str | dict[str, Any] | None = None,
) -> ModelHandle:
    """Load a causal LM by HF name or local path (default: the embedded tiny code model).

    Weights load straight onto their device through transformers' ``device_map`` (no full
    host copy first): ``device_map`` if given (e.g. ``"auto"`` spreads a model over several
    GPUs), else ``device`` (``"auto"``: cuda when present). On the CPU a half-precision
    checkpoint loads as float32 unless ``dtype`` says otherwise.

    ``attn`` is the attention policy (:data:`ATTN_POLICIES`; default eager).

    Raises:
        ModelLoadError: the name/path does not exist or is not a causal LM.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if attn not in ATTN_POLICIES:
        raise ModelLoadError(f"attn={attn!r}; use one of {', '.join(ATTN_POLICIES)}")
    if name_or_path is None or str(name_or_path) in ("embedded", "plip-nn/embedded-tiny-qwen2"):
        from plip_nn.embedded import EMBEDDED_MODEL_DIR, EMBEDDED_MODEL_NAME

        path: str = str(EMBEDDED_MODEL_DIR)
        name = EMBEDDED_MODEL_NAME
    else:
        path = str(name_or_path)
        name = path
    torch_dtype = _parse_dtype(dtype)
    target = resolve_device(device)
    placement = device_map if device_map is not None else target
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        if torch_dtype is None and placement == "cpu":
            # Half precision on CPU is slow and imprecise; compute in float32 unless asked.
            config = AutoConfig.from_pretrained(path, **kwargs)
            stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
            if stored in (torch.float16, torch.bfloat16, "float16", "bfloat16"):
                torch_dtype = torch.float32
        hf_model = AutoModelForCausalLM.from_pretrained(
            path,
            attn_implementation="eager" if attn == "eager" else None,
            dtype=torch_dtype if torch_dtype is not None else "auto",
            device_map=placement,
            **kwargs,
        )
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(
            f"cannot load model {name_or_path!r}: {first}. Pass a local model directory or a "
            "HuggingFace model name that is available offline (or omit --model to use the "
            "embedded model)"
        ) from err
    return wrap_model(hf_model, tokenizer, name=name, revision=revision, attn=attn, check=check)


def _parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]
