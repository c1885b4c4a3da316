"""Head-level attribution of a knockout: every head's estimate from one forward and one backward.

:func:`attribute_heads` estimates, for every head of every probed layer, how much knocking out
the probe's edges *in that head alone* would change ``log p`` of the prediction's greedy token
(the quantity :attr:`plip_nn.trace.ItemResult.dlogp_top1` measures for a real knockout). One
batched forward and one backward give all of them (attribution patching, Nanda 2023; AtP,
Kramár et al. 2024).

**What is linearised.** A knockout's change of the attention pattern is known exactly: the
softmax of the unedited scores with the targets at ``-inf``
(:func:`plip_nn.kernels.knockout_attribution`). The estimate is ``∂m/∂p · (p_ko − p)`` with that
exact ``p_ko``, so nothing is linearised *through* the edited softmax. That is AtP*'s QK fix,
built in: linearising a query/key patch through a saturated attention softmax is what fails
there, and here the pattern change is computed exactly however saturated the softmax is.

**The output softmax saturates too.** The greedy token after a marker often has ``p ≈ 1``;
the gradient of ``log p`` then vanishes while a knockout can still move it a lot. So the
backward is taken of the top-1 log-odds ``λ = log p − log(1 − p)``, whose gradient does not
vanish, and the linear estimate ``Δλ`` is mapped back exactly: ``Δlog p = logσ(λ + Δλ) −
logσ(λ)``. To first order this equals plain attribution patching on ``log p``
(``(1 − p)·Δλ``, kept as :attr:`HeadAttribution.linear`); it differs where the output is
saturated. What remains -- nonlinear effects downstream (MLPs, norms; a head that puts nearly all
its mass on the targets changes its output entirely) and paths that cancel (AtP*'s GradDrop) --
is measured, not assumed: experiments.heads compares every estimate with the measured per-head
knockout.

The metric is ``log p(top-1)``, not KL: KL(baseline‖edited) has a zero gradient at the
baseline, so its first-order estimate is zero for every head.

Gradients need the forward to track them, so this runs outside ``torch.inference_mode``; the
backward asks for the probabilities' gradients only (``backward(inputs=...)``), so no weight
gradient is computed or stored. It needs eager attention (it reads probabilities).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, EditSpecError, EditVerificationError, Knockout
from plip_nn.models import ModelHandle
from plip_nn.padding import pad_batch, pad_id
from plip_nn.plan import plain_sites
from plip_nn.remote import configure_remote, register_for_remote
from plip_nn.routes import validate_edits
from plip_nn.trace import Item, Remote

__all__ = ["HeadAttribution", "attribute_heads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadAttribution:
    """One item's attribution: per probed layer, one value per head.

    Attributes:
        key: the item's key.
        sample_id: the item's sample.
        top1: the greedy token at the prediction position (unedited).
        logp_top1: its log-probability.
        estimate: layer -> per head, the estimated change of ``log p(top1)`` when the probe's
            edges are knocked out in that head alone (negative: the knockout would lower it),
            from the linear change of the log-odds mapped back exactly (module docstring).
        linear: layer -> per head, plain attribution patching on ``log p(top1)`` (the first-
            order term, ``(1 - p)·Δλ``).
        level: layer -> per head, the mean weight on the probe's edges (mean over targets and
            sources), unedited.
        mass: layer -> per head, the weight summed over the targets (mean over sources).
    """

    key: str
    sample_id: str
    top1: int
    logp_top1: float
    estimate: dict[int, tuple[float, ...]]
    linear: dict[int, tuple[float, ...]]
    level: dict[int, tuple[float, ...]]
    mass: dict[int, tuple[float, ...]]


def _validate(handle: ModelHandle, item: Item) -> None:
    if item.condition.edits:
        raise EditSpecError(
            f"sample {item.sample_id!r}: attribute_heads estimates knockouts of the unedited "
            f"model; condition {item.condition.name!r} has edits (use a baseline condition)"
        )
    if item.probe is None:
        raise EditSpecError(
            f"sample {item.sample_id!r}: attribute_heads needs a probe (the layers, sources and "
            "targets whose per-head knockout it estimates)"
        )
    p = item.probe
    as_knockout = AttentionEdit(
        layers=p.layers, sources=p.sources, targets=p.targets, op=Knockout()
    )
    validate_edits(
        handle, item.sample_id, (as_knockout,), len(item.input_ids), kernels.ROUTE_SOFTMAX
    )


def attribute_heads(
    handle: ModelHandle,
    items: Sequence[Item],
    *,
    batch_size: int = 8,
    remote: Remote = "none",
    progress: Callable[[int], None] | None = None,
) -> list[HeadAttribution]:
    """Per item and probed layer, every head's estimated knockout effect (module docstring).

    Each item is a baseline (no edits) with a :class:`~plip_nn.edits.Probe`: the layers,
    sources and targets whose per-head knockout is estimated; ``predict_at`` is where the
    greedy token is read (default: the last token). One forward and one backward per batch of
    ``batch_size`` items.

    Args:
        handle: the loaded model (eager attention).
        items: baseline items with probes; keys must be unique.
        batch_size: items per forward/backward pass.
        remote: ``"none"`` or ``"local"`` (nnsight's offline remote simulation); ``"ndif"``
            is passed on, and works only where the server runs the forward with gradients.
        progress: called with the number of items finished after each batch.

    Raises:
        EditSpecError: an item with edits or without a probe, an edge masked by causality, a
            layer out of range, or a model without eager attention.
        EditVerificationError: a knockout would leave a query row with no allowed key.
    """
    if batch_size < 1:
        raise EditSpecError(f"batch_size={batch_size}; use an int >= 1")
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        raise EditSpecError("duplicate item keys; every item needs a unique key")
    handle.require_route(
        kernels.ROUTE_SOFTMAX,
        "head attribution (it reads attention probabilities and their gradients)",
    )
    for it in items:
        _validate(handle, it)
    remote_arg = configure_remote(remote)
    if remote_arg:
        register_for_remote()
    model = handle.nn
    sites = plain_sites(handle)
    pad = pad_id(handle)
    results: list[HeadAttribution] = []
    with handle.use_route(kernels.ROUTE_SOFTMAX):  # eager, also on an attn="auto" handle
        for start in range(0, len(items), batch_size):
            batch = list(items[start : start + batch_size])
            results.extend(_attribute_batch(model, handle, sites, pad, batch, remote_arg))
            if progress is not None:
                progress(len(batch))
    return results


def _attribute_batch(
    model: Any, handle: ModelHandle, sites: list, pad: int, batch: list[Item], remote_arg: Any
) -> list[HeadAttribution]:
    """One batch of :func:`attribute_heads`: one forward and one backward."""
    # Gradients need a tracked forward, even when the caller runs under inference mode
    # (and then the inputs must be made outside it too).
    with torch.inference_mode(False), torch.enable_grad():
        inputs, offsets = pad_batch([it.input_ids for it in batch], pad, handle.device)
        width = inputs["input_ids"].shape[1]
        predict_at = [
            width - 1 if it.predict_at is None else it.predict_at + off
            for it, off in zip(batch, offsets, strict=True)
        ]
        reads: dict[int, list] = {}
        for r, (it, off) in enumerate(zip(batch, offsets, strict=True)):
            assert it.probe is not None
            shifted = [r, [s + off for s in it.probe.sources],
                       [t + off for t in it.probe.targets]]  # fmt: skip
            for layer in it.probe.layers:
                reads.setdefault(layer, []).append(shifted)
        if remote_arg:
            import nnsight

            with model.session(remote=remote_arg):
                out = nnsight.save(
                    kernels.attribution_pass(model, inputs, sites, reads, predict_at)
                )
        else:
            out = kernels.attribution_pass(model, inputs, sites, reads, predict_at)
    return _collect(batch, reads, out)


def _log_sigmoid(x: float) -> float:
    return -(max(-x, 0.0) + math.log1p(math.exp(-abs(x))))


def _collect(batch: list[Item], reads: dict[int, list], out: dict) -> list[HeadAttribution]:
    per_row: dict[int, dict[str, dict[int, tuple[float, ...]]]] = {}
    names = ("estimate", "linear", "level", "mass")
    for layer, layer_reads in reads.items():
        table = out[kernels.result_key(kernels.ATTR, layer)].tolist()  # [n_reads, H, N_ATTR]
        for read, heads in zip(layer_reads, table, strict=True):
            r = read[kernels.R_ROW]
            row = per_row.setdefault(r, {n: {} for n in names})
            lam = float(out["logodds"][r])
            p = math.exp(float(out["lp_top1"][r]))
            d_lam = [float(h[kernels.A_ESTIMATE]) for h in heads]
            if any(not math.isfinite(v) for v in d_lam):
                it = batch[r]
                raise EditVerificationError(
                    f"sample {it.sample_id!r}, layer {layer}: knocking out targets "
                    f"{it.probe.targets if it.probe else ()} would leave a query row with no "
                    "allowed key; remove those edges"
                )
            base = _log_sigmoid(lam)
            row["estimate"][layer] = tuple(_log_sigmoid(lam + d) - base for d in d_lam)
            row["linear"][layer] = tuple((1.0 - p) * d for d in d_lam)
            row["level"][layer] = tuple(float(h[kernels.A_LEVEL]) for h in heads)
            row["mass"][layer] = tuple(float(h[kernels.A_MASS]) for h in heads)
    return [
        HeadAttribution(
            key=it.key,
            sample_id=it.sample_id,
            top1=int(out["top1"][r]),
            logp_top1=float(out["lp_top1"][r]),
            **{n: dict(sorted(per_row[r][n].items())) for n in names},
        )
        for r, it in enumerate(batch)
    ]
