"""Edits, items, plans and generation workloads shared by the benchmarks (built the way
plip_nn.trace and plip_nn.generate build them)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from plip_nn import kernels
from plip_nn.edits import AttentionEdit, Condition, Knockout, Scale, SetValue
from plip_nn.generate import GenerationRequest, marker_token_sequences
from plip_nn.models import ModelHandle
from plip_nn.padding import pad_batch, pad_id
from plip_nn.plan import build_plan, plain_plan, plain_sites
from plip_nn.trace import Item


def marker_edit(n_tokens: int, layers: tuple[int, ...], op: Knockout | Scale) -> AttentionEdit:
    """An edit from the last token (the "marker") to three earlier tokens (the "function")."""
    targets = tuple(sorted({1, n_tokens // 4, n_tokens // 2}))
    return AttentionEdit(layers=layers, sources=(n_tokens - 1,), targets=targets, op=op)


def knockout_one(handle: ModelHandle, n_tokens: int) -> AttentionEdit:
    return marker_edit(n_tokens, (handle.n_layers // 2,), Knockout())


def scale_all(handle: ModelHandle, n_tokens: int, factor: float = 2.0) -> AttentionEdit:
    return marker_edit(n_tokens, tuple(range(handle.n_layers)), Scale(factor=factor))


def seven_conditions(
    n_layers: int, source: int, targets: tuple[int, ...], control: tuple[int, ...]
) -> list[Condition]:
    """Seven conditions shaped like the study's: baseline, knockout at the middle layer and at
    all layers, a knockout of ``control`` keys, Scale 2 and 6, and SetValue (0.05, or less
    when the targets could not all receive it)."""
    layer = n_layers // 2
    src = (source,)
    value = min(0.05, 0.5 / len(targets))

    def cond(
        name: str, layers: tuple[int, ...], op: Knockout | Scale | SetValue, keys
    ) -> Condition:
        edit = AttentionEdit(layers=layers, sources=src, targets=keys, op=op)
        return Condition(name=name, edits=(edit,))

    return [
        Condition(name="baseline", edits=()),
        cond("knockout", (layer,), Knockout(), targets),
        cond("knockout_all_layers", tuple(range(n_layers)), Knockout(), targets),
        cond("random_control", (layer,), Knockout(), control),
        cond("scale_2", (layer,), Scale(factor=2.0), targets),
        cond("set_value", (layer,), SetValue(value=value), targets),
        cond("scale_6", (layer,), Scale(factor=6.0), targets),
    ]


def four_conditions(handle: ModelHandle, n_tokens: int, seed: int) -> list[Condition]:
    """Four study-like conditions for a random prompt of ``n_tokens`` tokens: knockout at the
    middle layer and at all layers, a seeded random control, Scale 2 at all layers."""
    mid = handle.n_layers // 2
    edit = knockout_one(handle, n_tokens)
    rng = random.Random(seed)
    pool = [t for t in range(n_tokens - 1) if t not in edit.targets]
    control = tuple(sorted(rng.sample(pool, len(edit.targets))))
    src = edit.sources
    return [
        Condition(name="knockout", edits=(edit,)),
        Condition(
            name="knockout_all_layers",
            edits=(marker_edit(n_tokens, tuple(range(handle.n_layers)), Knockout()),),
        ),
        Condition(
            name="random_control",
            edits=(AttentionEdit(layers=(mid,), sources=src, targets=control, op=Knockout()),),
        ),
        Condition(name="scale_2", edits=(scale_all(handle, n_tokens, 2.0),)),
    ]


def synthetic_seven(n_layers: int, n_tokens: int) -> list[Condition]:
    """:func:`seven_conditions` on a random prompt: the last token to three earlier ones."""
    tgt = tuple(sorted({1, n_tokens // 4, n_tokens // 2}))
    ctrl = tuple(sorted({2, n_tokens // 3, 3 * n_tokens // 5}))
    return seven_conditions(n_layers, n_tokens - 1, tgt, ctrl)


def items_for(prompts: Sequence[tuple[int, ...]], edit_of, name: str) -> list[Item]:
    """One item per prompt under a single-edit condition; ``edit_of(n_tokens)`` makes the edit."""
    return [
        Item(
            key=f"{name}/{i}",
            sample_id=f"p{i}",
            input_ids=p,
            condition=Condition(name=name, edits=(edit_of(len(p)),)),
        )
        for i, p in enumerate(prompts)
    ]


def sites_of(handle: ModelHandle) -> list:
    return plain_sites(handle)


def batch_inputs(handle: ModelHandle, prompts: Sequence[tuple[int, ...]]) -> tuple[dict, list]:
    """Left-padded model inputs and pad offsets, exactly as the engine builds them."""
    return pad_batch(list(prompts), pad_id(handle), handle.device)


def plan_for(prompts: Sequence[tuple[int, ...]], offsets: list, edit_of) -> dict:
    """The plain per-layer plan of an edited pass (one edit per row, no extra reads)."""
    rows = [((edit_of(len(p)),), ()) for p in prompts]
    return plain_plan(build_plan(rows, offsets))


def edit_pass(model, inputs: dict, sites: list, plan: dict) -> dict:
    """An nnsight trace that applies ``plan`` through the engine's one edit site
    (:func:`plip_nn.kernels.edit_site`, with its verification), saving the logits and each
    layer's stats but no summaries (KL, NLL, top-1)."""
    out: dict = {}
    with model.trace(inputs):
        for layer in sorted(plan):
            lp = plan[layer]
            stats, _ = kernels.edit_site(
                model, sites[layer], lp[kernels.PLAN_EDITS], lp[kernels.PLAN_VERIFY], []
            )
            out[kernels.result_key(kernels.STATS, layer)] = stats.save()
        out["logits"] = model.output.logits.save()
    return out


@dataclass(frozen=True)
class Prompt:
    """A generation prompt of the shipped corpus, tokenized, with its marker and targets."""

    sample_id: str
    language: str
    input_ids: tuple[int, ...]
    source: int
    targets: tuple[int, ...]
    control: tuple[int, ...]  # as many other keys before the marker (seeded)


def corpus_prompts(handle: ModelHandle, n: int, seed: int = 0) -> list[Prompt]:
    """``n`` generation prompts of the shipped corpus, alternating Python and Rust (cycled
    when the corpus has fewer), cut to the prompt rule and located with the handle's
    tokenizer."""
    from plip_nn.codesrc import generation_prompt
    from plip_nn.corpus import load_corpus
    from plip_nn.positions import locate

    corpus = load_corpus()
    pools = [list(corpus.select(language=lang, kind="generation")) for lang in ("python", "rust")]
    out: list[Prompt] = []
    i = 0
    while len(out) < n:
        pool = pools[i % 2]
        s = pool[(i // 2) % len(pool)]
        i += 1
        code = generation_prompt(s.code, s.language)
        pos = locate(handle.tokenizer, code, s.marker_char_pos, list(s.target_char_positions))
        targets = tuple(t for t in pos.targets if t < pos.source)
        others = [t for t in range(pos.source) if t not in targets]
        if not targets or len(others) < len(targets):
            continue
        control = tuple(sorted(random.Random(f"{seed}/{s.id}").sample(others, len(targets))))
        ids = tuple(pos.input_ids)
        out.append(Prompt(str(s.id), s.language, ids, pos.source, targets, control))
    return out


def generation_requests(
    handle: ModelHandle,
    prompts: Sequence[Prompt],
    conditions_of: Callable[[Prompt], list[Condition]],
) -> list[GenerationRequest]:
    """One request per prompt and condition (prompts outer), with the language's markers."""
    from plip_nn.codesrc import MARKERS

    markers = {lang: marker_token_sequences(handle.tokenizer, m) for lang, m in MARKERS.items()}
    return [
        GenerationRequest(
            key=f"{i}/{c.name}",
            sample_id=p.sample_id,
            input_ids=p.input_ids,
            condition=c,
            marker_token_seqs=markers[p.language],
        )
        for i, p in enumerate(prompts)
        for c in conditions_of(p)
    ]


def study_grid(handle: ModelHandle) -> Callable[[Prompt], list[Condition]]:
    """The seven study-like conditions of a corpus prompt (:func:`seven_conditions`)."""
    return lambda p: seven_conditions(handle.n_layers, p.source, p.targets, p.control)


def knockout_only(handle: ModelHandle) -> Callable[[Prompt], list[Condition]]:
    """One condition per prompt: knockout at the middle layer from the marker to the function."""
    return lambda p: seven_conditions(handle.n_layers, p.source, p.targets, p.control)[1:2]
