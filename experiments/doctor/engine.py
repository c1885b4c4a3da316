"""Engine checks of ``plip-nn doctor``: the embedded model's self-check (one verified knockout
at one layer and one SetValue, achieved against requested, with the route each took), a
model's architecture on a meta-device model built from its config (no weights), and the tiny
verified knockout trace that ``--remote local`` / ``--remote ndif`` run.

The remote trace's body calls only :func:`plip_nn.kernels.edit_site` (a module that imports
torch and math only) with plain lists and strings, so it stays inside NDIF's sandbox.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from experiments.doctor import FAIL, OK, WARN, Check

__all__ = [
    "PROBE_IDS",
    "ConfigUnavailable",
    "check_architecture",
    "embedded_self_check",
    "load_config",
    "load_tokenizer",
    "meta_handle",
    "trace_check",
]

PROBE_IDS = (1, 2, 3, 4, 5, 6, 7, 8)
"""The token ids of every doctor pass (any ids do: the checks read attention, not text)."""
_TARGETS = (1, 2)
_SET_VALUE = 0.3


class ConfigUnavailable(RuntimeError):
    """A model's config cannot be read offline; ``fix`` says how to make it available."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def _route_label(handle: Any, route: str) -> str:
    impl = "eager" if route == "softmax" else handle.implementations[0]
    return f"{route} route ({impl})"


def embedded_self_check(device: str) -> tuple[Any, list[Check]]:
    """Load the embedded model (``attn="auto"``: SDPA, eager for SetValue) with its
    structural self-check, then run one verified knockout and one SetValue at the last layer.

    Returns the handle (``None`` when loading failed) and the checks.
    """
    from plip_nn.edits import AttentionEdit, Condition, Knockout, SetValue
    from plip_nn.embedded import EMBEDDED_MODEL_NAME
    from plip_nn.models import load_model
    from plip_nn.routes import item_route
    from plip_nn.trace import Item, run

    start = time.perf_counter()
    try:
        handle = load_model(None, device=device, attn="auto")
    except Exception as err:  # the self-check raises UnsupportedArchitectureError
        detail = f"{EMBEDDED_MODEL_NAME} does not load or fails its self-check: {_one_line(err)}"
        fix = "reinstall plip-nn (pip install -c constraints.txt -e .) with the pinned versions"
        return None, [Check("self-check", FAIL, detail, fix)]
    loaded = time.perf_counter() - start
    layer = handle.n_layers - 1
    source = len(PROBE_IDS) - 1
    edits = {
        "knockout": AttentionEdit(
            layers=(layer,), sources=(source,), targets=_TARGETS, op=Knockout()
        ),
        "set_value": AttentionEdit(
            layers=(layer,), sources=(source,), targets=_TARGETS[:1], op=SetValue(value=_SET_VALUE)
        ),
    }
    items = [
        Item(
            key=k, sample_id="doctor", input_ids=PROBE_IDS, condition=Condition(name=k, edits=(e,))
        )
        for k, e in edits.items()
    ]
    checks = [
        Check(
            "self-check",
            OK,
            f"{EMBEDDED_MODEL_NAME} loaded on {handle.device} and its edit sites verified on "
            f"every route ({', '.join(handle.implementations)}) in {loaded:.1f} s",
        )
    ]
    try:
        results = run(handle, items, batch_size=2)
    except Exception as err:
        fix = "the engine does not edit this model as specified: report it with this line"
        checks.append(Check("verified edits", FAIL, _one_line(err), fix))
        return handle, checks
    requested = {"knockout": 0.0, "set_value": _SET_VALUE}
    for res in results:
        reading = res.readings[0]
        route = item_route(handle, items[0 if res.key == "knockout" else 1].condition.edits, "auto")
        what = "knockout" if res.key == "knockout" else f"SetValue({_SET_VALUE})"
        checks.append(
            Check(
                res.key.replace("_", " "),
                OK,
                f"{what} at layer {layer}, rows {source} -> keys {list(edits[res.key].targets)}: "
                f"attention {reading.level_before:.4f} -> {reading.level_after:.4f} (requested "
                f"{requested[res.key]:g}, error {reading.error_ratio:.2g}x tolerance), "
                f"{_route_label(handle, route)}",
            )
        )
    return handle, checks


def load_config(name: str) -> Any:
    """The model's config from a local directory, or from the HF cache only (never the network).

    Raises:
        ConfigUnavailable: the directory has no config, or the hub name's config is not cached.
    """
    from transformers import AutoConfig

    path = Path(name).expanduser()
    if path.exists():
        try:
            return AutoConfig.from_pretrained(str(path))
        except (OSError, ValueError) as err:
            raise ConfigUnavailable(
                f"{name}: no usable config.json ({_one_line(err)})",
                "pass a model directory that holds the model's config.json",
            ) from err
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigUnavailable(
            f"{name}: its config is not in the local HF cache (the doctor never downloads)",
            f"fetch the config and tokenizer (no weights) once: `huggingface-cli download {name} "
            "config.json tokenizer.json tokenizer_config.json` (gated models need "
            "`huggingface-cli login` and accepted terms), or pass a local model directory",
        ) from err


def load_tokenizer(name: str) -> Any:
    """The model's tokenizer from a local directory or the HF cache only (never the network).

    Raises:
        ConfigUnavailable: it is not there.
    """
    from transformers import AutoTokenizer

    path = Path(name).expanduser()
    try:
        if path.exists():
            return AutoTokenizer.from_pretrained(str(path))
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigUnavailable(
            f"{name}: its tokenizer is not available offline ({_one_line(err)})",
            f"fetch it (no weights) once: `huggingface-cli download {name} tokenizer.json "
            "tokenizer_config.json special_tokens_map.json`, or pass a local model directory",
        ) from err


def _meta_model(config: Any) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def check_architecture(name: str) -> list[Check]:
    """The model's architecture is supported and the edit site is found, on a meta-device
    model built from its config (no weights are read or downloaded)."""
    from plip_nn.models import VERIFIED_ARCHITECTURES, UnsupportedArchitectureError, resolve_sites

    try:
        config = load_config(name)
    except ConfigUnavailable as err:
        return [Check("model config", FAIL, str(err), err.fix)]
    model_type = str(getattr(config, "model_type", "?"))
    verified = [arch for arch, types in VERIFIED_ARCHITECTURES.items() if model_type in types]
    checks = [
        Check(
            "model config",
            OK,
            f"{name}: model_type {model_type}, "
            f"{config.num_hidden_layers} layers (meta device, no weights)",
        )
    ]
    try:
        sites = resolve_sites(_meta_model(config))
    except (UnsupportedArchitectureError, ValueError, TypeError, KeyError) as err:
        fix = "use a decoder-only HF model whose attention goes through transformers' registry"
        return [*checks, Check("edit site", FAIL, f"{model_type}: {_one_line(err)}", fix)]
    site = sites[0]
    text = (
        f"found in all {len(sites)} layers: {site.module_path} -> {site.call_op} -> "
        f"{site.softmax_op} (read by {site.consumer_op})"
    )
    if verified:
        return [*checks, Check("edit site", OK, f"{text}; {verified[0]} is verified")]
    fix = "the site resolves structurally; check edits on a small model of this family first"
    return [
        *checks,
        Check("edit site", WARN, f"{text}; {model_type} is not in the verified list", fix),
    ]


def meta_handle(name: str) -> Any:
    """A :class:`plip_nn.models.ModelHandle` on the meta-device model nnsight builds for
    ``name`` (its config and tokenizer, no weights), for NDIF: the server holds the weights.

    Built by name, as nnsight builds a remote model, so its remote key names the checkpoint;
    the task is given (``text-generation``) so that nothing asks the Hub for it.
    """
    from nnsight import TransformersModel

    from plip_nn.models import ModelHandle, resolve_sites

    config = load_config(name)
    # Sites are resolved on a bare twin (the same class from the same config): nnsight's
    # wrapper replaces the modules' forwards the structural lookup reads.
    sites = resolve_sites(_meta_model(config))
    nn_model = TransformersModel(
        name, config=config, tokenizer=load_tokenizer(name), task="text-generation"
    )
    return ModelHandle(nn_model, nn_model._module, sites, name=name, attn="as_loaded")


@contextlib.contextmanager
def _result_bytes() -> Iterator[list[int]]:
    """Record the size of every result blob the NDIF backend receives (before it is loaded)."""
    from nnsight.intervention.backends.remote import RemoteBackend

    seen: list[int] = []
    real = RemoteBackend.finalize

    def finalize(self: Any, content: bytes) -> Any:
        seen.append(len(content))
        return real(self, content)

    RemoteBackend.finalize = finalize
    try:
        yield seen
    finally:
        RemoteBackend.finalize = real


def _saved_bytes(saves: dict[str, Any]) -> int:
    """Bytes of ``saves`` as a server ships them (``torch.save``, uncompressed)."""
    buffer = io.BytesIO()
    torch.save(saves, buffer)
    return len(buffer.getvalue())


def trace_check(handle: Any, remote: str) -> Check:
    """One tiny trace with a verified knockout (last layer), run through ``remote``
    (``"local"``: nnsight's offline simulation; ``"ndif"``: NDIF, key already configured):
    the achieved attention, the bytes returned and the wall time."""
    from plip_nn import kernels
    from plip_nn.edits import AttentionEdit, Knockout
    from plip_nn.plan import build_plan, plain_plan
    from plip_nn.remote import configure_remote, register_for_remote
    from plip_nn.routes import resolve_route, validate_edits
    from plip_nn.verify import EditStats, check_stats

    name = f"{remote} trace"
    layer = handle.n_layers - 1
    n = len(PROBE_IDS)
    edit = AttentionEdit(layers=(layer,), sources=(n - 1,), targets=_TARGETS, op=Knockout())
    route = resolve_route(handle, "auto")
    validate_edits(handle, "doctor", [edit], n, route)
    plan = plain_plan(build_plan([([edit], ())], [0]))[layer]
    groups, verify = plan[kernels.PLAN_EDITS], plan[kernels.PLAN_VERIFY]
    site = handle.sites[layer].plain()
    device = "cpu" if remote == "ndif" else handle.device
    ids = torch.tensor([PROBE_IDS], device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    remote_arg = configure_remote(remote)
    register_for_remote()
    model = handle.nn
    stats: Any = None
    start = time.perf_counter()
    try:
        with (
            _result_bytes() as received,
            torch.inference_mode(),
            model.trace(inputs, remote=remote_arg),
        ):
            stats, _ = kernels.edit_site(model, site, groups, verify, [], route)
            stats = stats.cpu().save()
    except Exception as err:
        return Check(name, FAIL, f"the trace failed: {_one_line(err)}", _trace_fix(remote))
    wall = time.perf_counter() - start
    if not isinstance(stats, torch.Tensor) or stats.ndim != 2 or len(stats) != 1:
        return Check(name, FAIL, "the trace returned no verified reading", _trace_fix(remote))
    st = EditStats.from_row(stats[0].tolist())
    try:
        check_stats(st, edit, f"doctor {remote} trace, layer {layer}", "doctor")
    except Exception as err:
        return Check(name, FAIL, _one_line(err), _trace_fix(remote))
    size = sum(received) if received else _saved_bytes({"stats": stats})
    return Check(
        name,
        OK,
        f"knockout at layer {layer} verified: attention {st.level_before:.4f} -> "
        f"{st.level_after:.4f} (requested 0), {size:,} bytes returned, {wall:.2f} s wall, "
        f"{_route_label(handle, route)}",
    )


def _trace_fix(remote: str) -> str:
    if remote == "ndif":
        return (
            "that error came from the server: check https://discuss.ndif.us/ and rerun "
            "`plip-nn doctor --remote local` to see whether it also fails offline"
        )
    return "the in-trace code does not survive nnsight's remote serialization: report this line"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
