"""Call-only passes: a steering arm or a later control draw on a test sample stops its pass at
the call's prediction row (experiments.records.call_only_length). Attention is causal, so the
call readout must equal the whole sequence's, row for row; the records say which rows were cut."""

from __future__ import annotations

import math

import pytest

from experiments.conditions import Arm, Unit, build
from experiments.records import call_only_length, clip_condition
from experiments.study import prepare
from plip_nn.corpus import load_corpus
from plip_nn.scope import Scope
from plip_nn.trace import Item, run


@pytest.fixture(scope="module")
def embedded():
    from plip_nn.models import load_model

    return load_model("embedded", device="cpu", dtype="float32", attn="eager")


def _units(handle, ids: tuple[str, ...]) -> list[Unit]:
    preps = prepare(handle, [s for s in load_corpus().select(kind="test") if s.id in ids])
    out = []
    for p in preps:
        for arm in (
            Arm("scale_4", Scope("continuation", "identifiers", "all")),
            Arm("scale_0.5", Scope("to_call", "mentions", "L")),
            Arm("knockout", Scope("continuation", "identifiers", "all")),
        ):
            cond = build(arm, p, layer=1, n_layers=handle.n_layers)
            assert cond is not None
            out.append(Unit(p, cond, 1, 0, arm))
    return out


def test_call_only_readout_equals_the_whole_sequence(embedded) -> None:
    units = _units(embedded, ("py_clamp", "rs_clamp", "rs_count_vowels"))
    full, cut = [], []
    for u in units:
        pos = u.sample.positions
        kw = dict(sample_id=u.sample.id, predict_at=pos.call_at, gold_token=pos.gold_token)
        full.append(Item(key=u.key, input_ids=u.sample.input_ids, condition=u.condition, **kw))
        n = call_only_length(u)
        if u.arm.arm == "knockout":
            assert n is None  # the knockout keeps the whole test (its log-PPL)
            continue
        assert n == pos.call_at + 1 < len(u.sample.input_ids)
        clipped = clip_condition(u.condition, n)
        assert all(max(e.sources) < n for e in clipped.edits)
        cut.append(Item(key=u.key + "|cut", input_ids=u.sample.input_ids[:n], condition=clipped,
                        **kw))  # fmt: skip
    by_key = {r.key: r for r in run(embedded, full + cut, batch_size=8)}
    for item in cut:
        a, b = by_key[item.key.removesuffix("|cut")], by_key[item.key]
        for name in ("logp_gold_baseline", "logp_gold_condition"):
            assert math.isclose(getattr(a, name), getattr(b, name), abs_tol=2e-5), (item.key, name)
        assert a.rank_gold_condition == b.rank_gold_condition
        assert a.top1_condition == b.top1_condition
        assert abs(a.kl - b.kl) <= 1e-5 + 1e-3 * abs(a.kl)


def test_call_only_applies_to_steering_and_later_draws_only(embedded) -> None:
    [p] = prepare(embedded, [s for s in load_corpus().select(kind="test") if s.id == "rs_clamp"])
    cond = build(Arm("scale_2", Scope("marker_span", "identifiers", "L")), p, layer=1, n_layers=4)
    assert cond is not None
    assert (
        call_only_length(
            Unit(p, cond, 1, 0, Arm("scale_2", Scope("marker_span", "identifiers", "L")))
        )
        == p.positions.call_at + 1
    )
    base = build(Arm("baseline"), p, layer=1, n_layers=4)
    assert base is not None and call_only_length(Unit(p, base, 1, 0, Arm("baseline"))) is None
    [g] = prepare(embedded, [s for s in load_corpus().select(kind="generation")][:1])
    gcond = build(Arm("scale_2", Scope("marker_span", "identifiers", "L")), g, layer=1, n_layers=4)
    assert gcond is not None
    assert (
        call_only_length(
            Unit(g, gcond, 1, 0, Arm("scale_2", Scope("marker_span", "identifiers", "L")))
        )
        is None
    )
