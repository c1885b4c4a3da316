"""Model loading and the handle the engine runs on.

plip-nn edits attention inside *unmodified* HuggingFace models through nnsight. Where the edit
happens -- the softmax inside each attention module's eager attention function -- is found
structurally by :mod:`plip_nn.sites` (:func:`~plip_nn.sites.resolve_sites`); this module wraps
a model with its resolved sites (:class:`ModelHandle`, :func:`wrap_model`), picks the attention
route per piece of work, and loads models (:func:`load_model`).

A runtime self-check (:meth:`ModelHandle.self_check`) runs one tiny trace and verifies that
the op's input is causally masked and its output is a row-stochastic ``[batch, heads, q, k]``
tensor. Anything that does not resolve raises :class:`UnsupportedArchitectureError`.

``AttentionSite``, ``UnsupportedArchitectureError``, ``VERIFIED_ARCHITECTURES`` and
``resolve_sites`` live in :mod:`plip_nn.sites` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from plip_nn.sites import (
    VERIFIED_ARCHITECTURES,
    AttentionSite,
    UnsupportedArchitectureError,
    _sliding_windows,
    resolve_sites,
)

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


class ModelLoadError(ValueError):
    """A model name/path could not be loaded (bad input: the message says what to do)."""


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
