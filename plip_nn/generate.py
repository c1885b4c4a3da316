"""Generation with attention edits applied at every step, through the KV cache.

At step 0 (prefill) the prompt's source rows are edited; at each later step the single new query
row sits at absolute position ``prompt_len + i - 1`` and is edited when it is a source. Which
rows are sources is the *source policy*, defined once in :func:`plip_nn.kernels.policy_rows`
(used by :func:`generate`, :func:`generate_recompute` and :func:`plip_nn.intervene` under a
user's ``generate``) and named through :func:`resolve_source_policy`:

* ``"markers"`` (default): the prompt's marker token, plus every generated token that completes
  a marker (``>>>``, ``#[test]``) -- for a generated marker the edited row is the marker's last
  token, because its earlier tokens were already processed when the marker became recognisable.
* ``"continuation"``: the prompt's marker row and every row after it, generated rows included
  (the whole generated test is cut off from the function).
* ``"to_call"``: the prompt's rows from the marker on, then every generated row until the
  test's first call of the function has been written (the name and its ``(``: the rows of the
  name's tokens are edited, the row of the token that completes the call is not) or the first
  test ends (Python: the docstring closes; Rust: the first body's ``}``), whichever comes
  first. The request names the function and the language (``call_name``, ``language``); the
  check runs in the trace on the generated tokens' texts
  (:func:`plip_nn.kernels.call_done`).

The edit scope's row names (:data:`plip_nn.scope.ROWS`) name them too: ``marker`` and
``marker_span`` are ``"markers"`` (the edits' sources say which prompt rows), ``continuation``
is ``"continuation"`` and ``to_call`` is ``"to_call"``.

Edits on scores are not cached, so they are re-applied at every step. A KV-cached run that edits
the new query row at each step equals a full recomputation that applies the accumulated edge set
(all edited rows so far) at every step; :func:`generate_recompute` is that reference.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from plip_nn import kernels
from plip_nn.decoding import RowSampler, RowStop, row_generator, sample_tokens, token_texts
from plip_nn.edits import AttentionEdit, Condition, EditSpecError
from plip_nn.models import ModelHandle
from plip_nn.padding import pad_batch, pad_id
from plip_nn.plan import build_plan, generation_row, plain_plan, plain_sites
from plip_nn.remote import configure_remote, register_for_remote
from plip_nn.routes import ROUTES, item_route, validate_edits
from plip_nn.verify import EditStats, check_stats, missing_reading

__all__ = [
    "SOURCE_POLICIES",
    "GenerationRequest",
    "GenerationResult",
    "RowSampler",
    "RowStop",
    "call_watch",
    "generate",
    "generate_recompute",
    "marker_token_sequences",
    "resolve_source_policy",
    "row_generator",
    "sample_tokens",
    "token_texts",
]

log = logging.getLogger(__name__)

SOURCE_POLICIES = (kernels.POLICY_MARKERS, kernels.POLICY_CONTINUATION, kernels.POLICY_TO_CALL)
# The edit scope's row names (plip_nn.scope.ROWS) -> the source policy that edits those rows.
_SCOPE_ROWS = {
    "marker": kernels.POLICY_MARKERS,
    "marker_span": kernels.POLICY_MARKERS,
    "to_call": kernels.POLICY_TO_CALL,
    "continuation": kernels.POLICY_CONTINUATION,
}


def resolve_source_policy(name: str, where: str = "source_policy") -> str:
    """The source policy named ``name``: one of :data:`SOURCE_POLICIES`, or a row scope name
    (``marker``, ``marker_span``: ``"markers"``; ``continuation``). The one check of a policy
    name; ``where`` names the argument in the error.

    Raises:
        EditSpecError: an unknown name.
    """
    if isinstance(name, str) and name in SOURCE_POLICIES:
        return name
    if isinstance(name, str) and name in _SCOPE_ROWS:
        return _SCOPE_ROWS[name]
    raise EditSpecError(
        f"{where}={name!r}; use one of {', '.join(SOURCE_POLICIES)} or a row scope "
        f"({', '.join(_SCOPE_ROWS)})"
    )


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """A prompt to continue under a condition.

    Args:
        key: unique key.
        sample_id: corpus id (named in errors).
        input_ids: the prompt's token ids (unpadded).
        condition: edits with prompt positions; every edit's ``sources`` are the prompt's marker.
        marker_token_seqs: token-id sequences that, when generated, form a new marker.
        source_policy: this request's source policy (``None``: the ``generate`` call's), so
            that one batch can mix conditions of different row scopes.
        call_name: the function whose first call ends ``to_call`` editing (needed there).
        language: ``python`` or ``rust``: how the first test ends (needed for ``to_call``).
        sample_seed: sample this row with its own generator seeded so (temperature sampling:
            softmax(logits / temperature), no top-k/top-p), independent of the other rows of
            its batch; ``None``: the ``generate`` call's decoding (greedy by default). Rows with
            and without a seed share a batch: the call itself stays greedy.
        stop: the row may end early: once ``stop(text)`` is True for the text of its new
            tokens (decoded as the result's ``text``), its result ends at that token, and the
            batch ends when every row has ended or made ``max_new_tokens`` (a row's steps
            after its stop run on padding that no other row sees, and are not returned).
            ``None``: always ``max_new_tokens`` tokens. Local runs only.
        stop_chars: with ``stop``, call it only at steps whose new token's text holds one of
            these characters (a cheap filter: e.g. a test can only end on a newline or a
            ``}``); ``None``: at every step.
    """

    key: str
    sample_id: str
    input_ids: tuple[int, ...]
    condition: Condition
    marker_token_seqs: tuple[tuple[int, ...], ...] = ()
    source_policy: str | None = None
    call_name: str | None = None
    language: str | None = None
    sample_seed: int | None = None
    stop: Callable[[str], bool] | None = field(default=None, compare=False)
    stop_chars: str | None = None

    def __post_init__(self) -> None:
        if self.sample_seed is not None and (
            not isinstance(self.sample_seed, int) or not 0 <= self.sample_seed < 2**63
        ):
            raise EditSpecError(
                f"sample {self.sample_id!r}: sample_seed={self.sample_seed!r}; use an int >= 0"
            )
        if self.source_policy is not None:
            policy = resolve_source_policy(self.source_policy, f"{self.sample_id!r}: source_policy")
            object.__setattr__(self, "source_policy", policy)
        if self.language is not None and self.language not in ("python", "rust"):
            raise EditSpecError(
                f"sample {self.sample_id!r}: language={self.language!r}; use python or rust"
            )

    def call(self, policy: str, tokenizer: Any) -> list | None:
        """The row's ``to_call`` watch ``[name, language, texts]`` under ``policy`` (None for
        the other policies).

        Raises:
            EditSpecError: ``to_call`` without ``call_name`` or ``language``.
        """
        where = f"sample {self.sample_id!r}: GenerationRequest"
        return call_watch(policy, self.call_name, self.language, tokenizer, where)


def call_watch(
    policy: str, call_name: str | None, language: str | None, tokenizer: Any, where: str
) -> list | None:
    """The ``to_call`` watch of a generation row, ``[name, language, texts]`` (the ``C_*``
    layout of :mod:`plip_nn.kernels`); None for the other policies.

    Raises:
        EditSpecError: ``to_call`` without a function name or language (``where`` names the
            caller).
    """
    if policy != kernels.POLICY_TO_CALL:
        return None
    if not call_name or language not in ("python", "rust"):
        raise EditSpecError(
            f"{where}: the to_call policy stops at the test's first call of the function; "
            f"pass call_name= (got {call_name!r}) and language='python' or 'rust' (got "
            f"{language!r})"
        )
    return [call_name, language, token_texts(tokenizer)]


@dataclass(frozen=True)
class GenerationResult:
    """Generated tokens and the attention the edits achieved at each step."""

    key: str
    sample_id: str
    condition: str
    new_token_ids: tuple[int, ...]
    text: str
    step_levels: tuple[float, ...]  # mean achieved level on edited rows per step (NaN: none)
    n_edited_steps: int = 0
    stats: tuple[tuple[float, ...], ...] = field(default=(), repr=False)
    stopped: bool = False  # the request's ``stop`` ended it before max_new_tokens


def marker_token_sequences(tokenizer: Any, marker: str, contexts: Sequence[str] = ()) -> tuple:
    """Token-id sequences that spell ``marker`` as it appears in typical generated code.

    Each context is a string containing ``marker``; the tokens overlapping the marker's
    characters (by offset mapping) form one sequence. Defaults cover indentation and newlines.
    """
    contexts = tuple(contexts) or (
        marker,
        f" {marker}",
        f"\n{marker}",
        f"    {marker} ",
        f"\n    {marker} ",
        f"\n\n{marker}\n",
    )
    seqs = []
    for ctx in contexts:
        start = ctx.index(marker)
        end = start + len(marker)
        enc = tokenizer(ctx, add_special_tokens=False, return_offsets_mapping=True)
        ids = [
            i
            for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=False)
            if b > start and a < end
        ]
        if ids:
            seqs.append(tuple(ids))
    return tuple(dict.fromkeys(seqs))


def _check_request(handle: ModelHandle, req: GenerationRequest, policy: str, route: str) -> None:
    validate_edits(handle, req.sample_id, req.condition.edits, len(req.input_ids), route)
    req.call(req.source_policy or policy, handle.tokenizer)  # to_call names its function
    if req.condition.edits:
        handle.require_route(route, f"generation with {route}-route attention edits")
    for _edit in req.condition.edits[:1]:
        if policy == "continuation" and handle.sliding_windows and any(handle.sliding_windows):
            log.warning(
                "%s: sliding-window layers may mask function tokens for late generated rows",
                req.sample_id,
            )


def _rows(
    reqs: Sequence[GenerationRequest], offsets: Sequence[int], policy: str, tokenizer: Any
) -> list[dict[str, Any]]:
    rows = []
    for req, off in zip(reqs, offsets, strict=True):
        pol = req.source_policy or policy
        call = req.call(pol, tokenizer)
        rows.append(generation_row(req.condition.edits, off, pol, req.marker_token_seqs, call))
    return rows


def _verify(req: GenerationRequest, mine: list[list[float]]) -> None:
    """Check every edit's stats at every step; each (edit, layer) must be verified at step 0
    when the request has prompt sources (the prefill always edits them)."""
    seen = set()
    for st in mine:
        step = int(st[kernels.GEN_STEP])
        layer = int(st[kernels.GEN_LAYER])
        e_idx = int(st[kernels.GEN_EDIT])
        edit = req.condition.edits[e_idx]
        where = (
            f"sample {req.sample_id!r}, condition {req.condition.name!r}, step {step}, "
            f"layer {layer}"
        )
        if layer not in edit.layers:
            raise missing_reading(where, e_idx, layer)
        check_stats(EditStats.from_row(st[kernels.GEN_STATS :]), edit, where, req.sample_id)
        if step == 0:
            seen.add((e_idx, layer))
    for e_idx, edit in enumerate(req.condition.edits):
        for layer in edit.layers:
            if (e_idx, layer) not in seen:
                where = f"sample {req.sample_id!r}, condition {req.condition.name!r}, step 0"
                raise missing_reading(where, e_idx, layer)


def generate(
    handle: ModelHandle,
    requests: Sequence[GenerationRequest],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    seed: int = 0,
    temperature: float = 1.0,
    source_policy: str = "markers",
    batch_size: int = 1,
    remote: str = "none",
    route: str = "auto",
) -> list[GenerationResult]:
    """Generate a continuation of every request with its edits applied at every step.

    Many (prompt, condition) requests share one KV-cached loop: ``batch_size`` rows per
    ``generate`` call, left-padded, each row with its own edits (one vectorised edit site per
    layer and step serves all of them). Requests are batched in order of prompt length (less
    padding) and per route; results come back in the order of ``requests``.

    Args:
        handle: the loaded model.
        requests: prompts and conditions.
        max_new_tokens: tokens generated per prompt (always exactly this many; trim afterwards).
        do_sample: sample instead of greedy decoding (seeded with ``seed``, HF's sampler and
            the model's generation config); rows with a ``sample_seed`` need ``do_sample=False``.
        seed: torch seed for sampling.
        temperature: sampling temperature (also of the rows with a ``sample_seed``).
        source_policy: ``"markers"`` or ``"continuation"`` (see the module docstring).
        batch_size: rows per KV-cached loop (one ``generate`` call), i.e. rows per forward pass.
        remote: ``"none"``, ``"local"`` or ``"ndif"``.
        route: ``"auto"`` (the handle's choice per request, :func:`plip_nn.routes.item_route`),
            ``"softmax"`` or ``"mask"``.
    """
    source_policy = resolve_source_policy(source_policy)
    if max_new_tokens < 1:
        raise EditSpecError(f"max_new_tokens={max_new_tokens}; use an int >= 1")
    if batch_size < 1:
        raise EditSpecError(f"batch_size={batch_size}; use an int >= 1")
    routes = [item_route(handle, req.condition.edits, route) for req in requests]
    for req, r in zip(requests, routes, strict=True):
        _check_request(handle, req, source_policy, r)
    seeded = any(req.sample_seed is not None for req in requests)
    if seeded and (do_sample or remote != "none"):
        raise EditSpecError(
            "requests with a sample_seed are sampled per row locally: pass do_sample=False "
            f"and remote='none' (got do_sample={do_sample}, remote={remote!r})"
        )
    if remote != "none" and any(req.stop is not None for req in requests):
        raise EditSpecError(
            "requests with a stop rule end early on this machine's check of their text: run "
            f"them with remote='none' (got remote={remote!r}) or drop stop="
        )
    if seeded and not (math.isfinite(temperature) and temperature > 0):
        raise EditSpecError(f"temperature={temperature!r}; use a number > 0")
    remote_arg = configure_remote(remote)
    if remote_arg:
        register_for_remote()
    gen_kwargs: dict[str, Any] = {"do_sample": do_sample}
    if do_sample:
        gen_kwargs["temperature"] = temperature
        torch.manual_seed(seed)
    pad = pad_id(handle)
    gen_kwargs["pad_token_id"] = pad
    sites = plain_sites(handle)
    embed = embed_path(handle)
    results: dict[int, GenerationResult] = {}
    for r in ROUTES:
        # Shortest prompts first (stable): rows of one batch have similar lengths.
        order = sorted(
            (i for i, x in enumerate(routes) if x == r), key=lambda i: len(requests[i].input_ids)
        )
        with handle.use_route(r):
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = [requests[i] for i in idx]
                kwargs = dict(gen_kwargs)
                if any(req.sample_seed is not None for req in batch):
                    sampler = RowSampler([req.sample_seed for req in batch], temperature)
                    kwargs["logits_processor"] = LogitsProcessorList([sampler])
                got = _generate_batch(
                    handle, batch, max_new_tokens, source_policy, r, remote_arg, kwargs,
                    sites, embed,
                )  # fmt: skip
                results.update(zip(idx, got, strict=True))
    return [results[i] for i in range(len(requests))]


def _generate_batch(
    handle: ModelHandle,
    batch: list[GenerationRequest],
    max_new_tokens: int,
    source_policy: str,
    route: str,
    remote_arg: Any,
    gen_kwargs: dict[str, Any],
    sites: list,
    embed: str,
) -> list[GenerationResult]:
    """One KV-cached ``generate`` over ``batch`` (left-padded), checked and split per request."""
    pad = gen_kwargs["pad_token_id"]
    inputs, offsets = pad_batch([r.input_ids for r in batch], pad, handle.device)
    del inputs["position_ids"]  # generate derives positions from the mask at every step
    rows = _rows(batch, offsets, source_policy, handle.tokenizer)
    width = inputs["input_ids"].shape[1]
    stopper = None
    if any(req.stop is not None for req in batch):
        if remote_arg:
            raise EditSpecError(
                "requests with a stop rule end early on this machine's check of their text: "
                "run them with remote='none' or drop stop="
            )
        stopper = RowStop(batch, width, handle.tokenizer)
        gen_kwargs = {**gen_kwargs, "stopping_criteria": StoppingCriteriaList([stopper])}
    args = (handle.nn, inputs, sites, embed, rows, max_new_tokens, gen_kwargs, route)
    with torch.inference_mode():
        if remote_arg:
            import nnsight

            with handle.nn.session(remote=remote_arg):
                seqs, stats = kernels.generation_pass(*args)
                saved = nnsight.save([seqs, stats])
            seqs, stats = saved
        else:
            with warnings.catch_warnings():  # an early stop leaves the step loop's tail unrun
                warnings.filterwarnings("ignore", message=".*was never reached.*")
                seqs, stats = kernels.generation_pass(*args)
    if stopper is not None and stopper.last is not None:
        seqs = stopper.last  # the sequences as generate ended them (the trace's result when
        # the run made every step; not read by the trace when it ended early)
    if seqs is None:
        raise RuntimeError(
            "generation ended without its sequences (no stopping criterion read them)"
        )
    table = torch.cat([t.detach().cpu() for t in stats]).tolist() if len(stats) else []
    by_row: dict[int, list[list[float]]] = {r: [] for r in range(len(batch))}
    for st in table:
        by_row[int(st[kernels.GEN_ROW])].append(st)
    out = []
    for r, req in enumerate(batch):
        length = max_new_tokens if stopper is None else stopper.length.get(r, max_new_tokens)
        new = tuple(int(t) for t in seqs[r, width : width + length])
        mine = by_row[r]
        _verify(req, mine)  # every step's edits, those on the padding after a stop included
        per_step: dict[int, list[float]] = {}
        for st in mine:
            if int(st[kernels.GEN_STEP]) < length:
                per_step.setdefault(int(st[kernels.GEN_STEP]), []).append(
                    st[kernels.GEN_STATS + kernels.ST_LEVEL_AFTER]
                )
        levels = [
            sum(per_step[i]) / len(per_step[i]) if i in per_step else math.nan
            for i in range(length)
        ]
        out.append(
            GenerationResult(
                key=req.key,
                sample_id=req.sample_id,
                condition=req.condition.name,
                new_token_ids=new,
                text=handle.tokenizer.decode(list(new), skip_special_tokens=False),
                step_levels=tuple(levels),
                n_edited_steps=len(per_step),
                stats=tuple(map(tuple, mine)),
                stopped=length < max_new_tokens,
            )
        )
    return out


def embed_path(handle: ModelHandle) -> str:
    """The module path of the model's input embedding (its input: the tokens fed at a step)."""
    embed = handle.hf.get_input_embeddings()
    for name, mod in handle.hf.named_modules():
        if mod is embed:
            return name
    raise EditSpecError("cannot find the input embedding module of the model")


def generate_recompute(
    handle: ModelHandle,
    request: GenerationRequest,
    *,
    max_new_tokens: int = 64,
    source_policy: str = "markers",
    route: str = "auto",
    temperature: float = 1.0,
) -> tuple[int, ...]:
    """Reference: full recomputation at every step, no KV cache; greedy, or sampled at
    ``temperature`` when the request has a ``sample_seed`` (its own generator, on the
    recomputed scores: the reference of :class:`RowSampler`).

    At each step the whole sequence is run through one trace that applies the *accumulated*
    edge set: every row edited so far (the prompt marker, plus generated rows chosen by the
    policy) keeps its edit. This is the original system's method and the reference that the
    KV-cached :func:`generate` must match token for token (on the same route: ``route`` is
    resolved as :func:`generate` resolves it; EOS is banned, as ``generate`` always makes
    ``max_new_tokens`` tokens).
    """
    policy = request.source_policy or resolve_source_policy(source_policy)
    route = item_route(handle, request.condition.edits, route)
    banned = _eos_ids(handle)
    seq = list(request.input_ids)
    prompt_len = len(seq)
    row = generation_row(
        request.condition.edits, 0, policy, request.marker_token_seqs,
        request.call(policy, handle.tokenizer),
    )  # fmt: skip
    sites = plain_sites(handle)
    new: list[int] = []
    edited_rows: list[int] = []
    gen = None if request.sample_seed is None else row_generator(request.sample_seed)
    for step in range(max_new_tokens):
        # The rows this step adds (the prompt's at step 0, the fed token's after), by the one
        # policy definition; a full recomputation keeps every row edited so far.
        edited_rows += kernels.policy_rows(
            row[kernels.ROW_POLICY], row[kernels.ROW_SOURCES], len(seq), step,
            seq[prompt_len:], row[kernels.ROW_MARKERS], row[kernels.ROW_CALL],
        )  # fmt: skip
        if not edited_rows:  # nothing to edit yet: the plain model
            edits: tuple[AttentionEdit, ...] = ()
        else:
            edits = tuple(
                AttentionEdit(
                    layers=e.layers,
                    sources=tuple(edited_rows),
                    targets=e.targets,
                    op=e.op,
                    heads=e.heads,
                )
                for e in request.condition.edits
            )
        plan = plain_plan(build_plan([(edits, ())], [0]))
        ids = torch.tensor([seq], dtype=torch.long, device=handle.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        with torch.inference_mode(), handle.use_route(route):
            _out, lp_last = kernels.traced_pass(
                handle.nn, inputs, sites, plan, None, False, False, route
            )
        scores = lp_last[0].clone()
        scores[banned] = -math.inf  # generate() runs min_new_tokens = max_new_tokens
        if gen is None:
            tok = int(scores.argmax())
        else:
            u = torch.rand(1, generator=gen, dtype=torch.float64)
            tok = int(sample_tokens(scores[None], temperature, u.to(scores.device))[0])
        seq.append(tok)
        new.append(tok)
    return tuple(new)


def _eos_ids(handle: ModelHandle) -> list[int]:
    """The EOS ids that :func:`generate` bans until ``max_new_tokens`` (``min_new_tokens``)."""
    config = getattr(handle.hf, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
