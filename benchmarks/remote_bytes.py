"""P5: bytes that would cross the network for a ``remote="local"`` run vs full attention.

nnsight 0.8.1 ships a request as ``RequestModel.serialize`` (cloudpickle of the traced block and
its inputs) and returns results as ``ResponseModel.pickle()`` (``torch.save`` of the saved
values, pickle protocol 4). We record the request blobs of a real ``run(remote="local")`` and
size the response the server would send for the session's saved summaries, plus a plain
``pickle.dumps`` of the returned :class:`~plip_nn.trace.ItemResult` list.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Iterator
from typing import Any

import nnsight
import torch
from nnsight.schema.request import RequestModel
from nnsight.schema.response import ResponseModel, Status

from benchmarks import workload
from benchmarks.models import BenchModel, random_prompts
from plip_nn.trace import Item, run

log = logging.getLogger(__name__)


@contextlib.contextmanager
def capture_wire() -> Iterator[dict[str, list]]:
    """Record request blob sizes and the objects passed to ``nnsight.save`` in sessions."""
    seen: dict[str, list] = {"request_bytes": [], "saved": []}
    orig_serialize = RequestModel.serialize.__func__
    orig_save = nnsight.save

    def serialize(cls: Any, tracer: Any, compress: bool = False) -> bytes:
        blob = orig_serialize(cls, tracer, compress)
        seen["request_bytes"].append(len(blob))
        return blob

    def save(obj: Any) -> Any:
        seen["saved"].append(obj)
        return orig_save(obj)

    RequestModel.serialize = classmethod(serialize)
    nnsight.save = save
    try:
        yield seen
    finally:
        RequestModel.serialize = classmethod(orig_serialize)
        nnsight.save = orig_save


def response_bytes(saved: Any) -> int:
    """Size of the ``ResponseModel`` NDIF would send back carrying ``saved``."""
    return len(ResponseModel(id="bench", status=Status.COMPLETED, data=saved).pickle())


def _holds_tensor(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, dict):
        return any(_holds_tensor(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_holds_tensor(v) for v in obj)
    return False


def p5(bm: BenchModel, *, n_prompts: int, seq: int, batch: int) -> dict[str, Any]:
    """Per prompt: response bytes, request bytes and pickled results vs float32 attention."""
    h = bm.handle
    prompts = random_prompts(bm.vocab, n_prompts, seq, seed=41)
    items = [
        Item(key=f"p{i}/{c.name}", sample_id=f"p{i}", input_ids=p, condition=c)
        for i, p in enumerate(prompts)
        for c in workload.four_conditions(h, len(p), seed=i)
    ]
    with capture_wire() as wire:
        results = run(h, items, batch_size=batch, remote="local")
    if not wire["saved"] or not wire["request_bytes"]:
        raise AssertionError("no nnsight session payload was captured; nnsight internals moved")
    for saved in wire["saved"]:
        if not _holds_tensor(saved):
            raise AssertionError(f"captured save() value holds no tensor: {type(saved)}")
    down = sum(response_bytes(s) for s in wire["saved"])
    up = sum(wire["request_bytes"])
    returned = len(pickle.dumps(results, protocol=4))
    # What shipping the attention itself would cost: [layers, heads, seq, seq] float32.
    attention = sum(h.n_layers * h.n_heads * len(p) * len(p) * 4 for p in prompts)
    n_cond = len(items) // n_prompts
    per_prompt = {
        "response_bytes": down / n_prompts,
        "request_bytes": up / n_prompts,
        "pickled_results_bytes": returned / n_prompts,
        "attention_bytes_one_pass": attention / n_prompts,
        "attention_bytes_all_passes": attention * (1 + n_cond) / n_prompts,
    }
    return {
        "model": bm.key,
        "n_prompts": n_prompts,
        "n_conditions": n_cond,
        "seq": seq,
        "sessions": len(wire["saved"]),
        "per_prompt": per_prompt,
        "ratios": {
            "attention_one_pass_over_response": per_prompt["attention_bytes_one_pass"]
            / per_prompt["response_bytes"],
            "attention_all_passes_over_response": per_prompt["attention_bytes_all_passes"]
            / per_prompt["response_bytes"],
            "response_over_attention_one_pass": per_prompt["response_bytes"]
            / per_prompt["attention_bytes_one_pass"],
        },
        "workload": f"{n_cond} conditions per prompt, batch {batch}",
        "edit_layer": workload.knockout_one(h, seq).layers[0],
    }
