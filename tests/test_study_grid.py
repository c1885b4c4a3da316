"""The study's grid: knockouts with both controls and their draws, steering in every deciding
scope, the window chosen from the knockout records, and the config's draw counts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from experiments import conditions, triangle
from experiments.conditions import Arm
from experiments.study import ConfigError
from plip_nn.edits import Inert, Knockout
from plip_nn.positions import TokenPositions
from plip_nn.scope import Scope


def _positions() -> TokenPositions:
    # 0 def, 1 name, 2 (a, 3 ,, 4 b, 5 ):, 6-8 body, 9 >>> (marker), 10 end
    return TokenPositions(input_ids=tuple(range(11)), source=9, targets=(0, 1, 2),
                          bos_offset=0, mid_token_chars=(), dropped_targets=(),
                          marker_span=(9,), identifier_targets=(0, 1, 2, 4),
                          signature=(0, 1, 2, 3, 4, 5))  # fmt: skip


def _knock(draws: int = 5, **kw) -> list[Arm]:
    args = dict(rows=("marker_span", "continuation"), targets="identifiers",
                layer_scopes=("layer", "all", "window"), n_layers=4, window=2, stride=1,
                plip=True, draws=draws)  # fmt: skip
    return conditions.knockout_arms(**{**args, **kw})  # type: ignore[arg-type]


def test_every_knockout_scope_has_both_controls_with_the_same_draws() -> None:
    arms = _knock()
    scopes = list(dict.fromkeys(a.scope for a in arms))
    # 2 rows x {L, all}, 3 windows of the first rows, PLIP at L and all
    assert len(scopes) == 2 * 2 + 3 + 2
    for scope in scopes:
        mine = [a for a in arms if a.scope == scope]
        assert [(a.arm, a.draw) for a in mine] == [
            ("knockout", None),
            *[("random_control", d) for d in range(5)],
            *[("inert_control", d) for d in range(5)],
        ]
    names = {a.name for a in arms}
    assert "inert_control@marker_span/identifiers/L#3" in names
    assert "random_control@continuation/identifiers/all#4" in names
    assert "inert_control@marker_span/identifiers/w2-3#0" in names
    # the window sweep in more than one rows value when asked
    both = _knock(window_rows=("marker_span", "continuation"))
    assert "knockout@continuation/identifiers/w1-2" in {a.name for a in both}


def test_generation_keeps_the_first_draws() -> None:
    arms = conditions.control_draws(_knock(), 2)
    for kind in conditions.CONTROL_ARMS:
        assert {a.draw for a in arms if a.arm == kind} == {0, 1}
    assert sum(a.arm == "knockout" for a in arms) == 9


def test_inert_control_edits_the_random_controls_keys_and_protects_the_targets() -> None:
    p = SimpleNamespace(id="s", positions=_positions())
    scope = Scope("marker_span", "identifiers", "all")
    keys = {("s", "marker_span", "identifiers", lay, d): (6 + (lay + d) % 3,)
            for lay in range(2) for d in range(2)}  # fmt: skip
    for d in range(2):
        rand = conditions.build(Arm("random_control", scope, d), p, layer=1, n_layers=2,
                                controls=keys)  # fmt: skip
        inert = conditions.build(Arm("inert_control", scope, d), p, layer=1, n_layers=2,
                                 controls=keys)  # fmt: skip
        assert rand is not None and inert is not None
        assert [(e.layers, e.targets) for e in rand.edits] == [
            (e.layers, e.targets) for e in inert.edits
        ]
        assert all(isinstance(e.op, Knockout) for e in rand.edits)
        assert all(e.op == Inert(protect=(0, 1, 2, 4)) for e in inert.edits)
        assert conditions.condition_op(inert) == ("inert", conditions.condition_op(inert)[1])
    with pytest.raises(ValueError, match="needs matched keys"):
        conditions.build(Arm("inert_control", scope, 0), p, layer=1, n_layers=2)
    conditions.check_arm("inert_control")


def test_steering_runs_in_every_deciding_scope() -> None:
    scopes = conditions.steering_scopes(
        ("marker_span", "to_call", "continuation") if _has_to_call() else ("marker_span",
                                                                           "continuation"),
        "identifiers", ("layer", "all", "window"), window="w2-3",
    )  # fmt: skip
    labels = [s.label for s in scopes]
    assert "marker_span/identifiers/L" in labels and "marker_span/identifiers/all" in labels
    assert "continuation/identifiers/L" in labels and "continuation/identifiers/all" in labels
    assert labels[-1] == "marker_span/identifiers/w2-3"
    arms = conditions.steering_arms(conditions.STEERING_FACTORS, scopes=scopes)
    for scope in scopes:
        assert [a.arm for a in arms if a.scope == scope] == [
            "scale_0.5", "scale_2", "scale_4", "scale_calibrated", "scale_calibrated_x2",
            "set_value_calibrated",
        ]  # fmt: skip
    # no window chosen: no window steering
    assert all(not s.is_window for s in conditions.steering_scopes(
        ("marker_span",), "identifiers", ("layer", "all", "window")))  # fmt: skip


def _has_to_call() -> bool:
    from plip_nn.scope import ROWS

    return "to_call" in ROWS


def _records(effects: dict[str, list[float]], col: str = "dlogp_gold") -> pd.DataFrame:
    rows = []
    for layers, values in effects.items():
        for i, v in enumerate(values):
            rows.append(dict(arm="knockout", rows="marker_span", targets="identifiers",
                             layers=layers, kind="test", sample_id=f"s{i}", **{col: v}))  # fmt: skip
        # a generation prompt with a huge effect must not count
        rows.append(dict(arm="knockout", rows="marker_span", targets="identifiers",
                         layers=layers, kind="generation", sample_id="g", **{col: 99.0}))  # fmt: skip
    # a control with a huge effect must not count either
    rows.append(dict(arm="inert_control", rows="marker_span", targets="identifiers",
                     layers="w0-1", kind="test", sample_id="s0", **{col: -50.0}))  # fmt: skip
    return pd.DataFrame(rows)


def test_the_window_is_the_largest_median_knockout_effect_on_tests() -> None:
    rec = _records({"L": [-9, -9, -9], "all": [-9, -9, -9], "w0-1": [-0.1, -0.2, -3.0],
                    "w1-2": [-0.5, -0.6, -0.4], "w2-3": [0.3, 0.1, 0.0]})  # fmt: skip
    assert triangle.choose_window(rec, "marker_span", "identifiers") == "w1-2"
    # |kl| where the records have no dlogp_gold
    kl = _records({"w0-1": [0.2, 0.3, 0.1], "w1-2": [0.01, 0.02, 0.03]}, col="kl")
    assert triangle.choose_window(kl, "marker_span", "identifiers") == "w0-1"
    # a tie goes to the earlier window; no window knockout: None
    tie = _records({"w1-2": [0.5], "w0-1": [-0.5]})
    assert triangle.choose_window(tie, "marker_span", "identifiers") == "w0-1"
    assert triangle.choose_window(_records({"L": [1.0]}), "marker_span", "identifiers") is None


def test_config_draws_and_the_plan_of_each_part() -> None:
    cfg = triangle.Config()
    assert cfg.draws == 5 and cfg.gen_draws == 2 and cfg.compared_draws == 1
    assert not cfg.gen_compared
    assert cfg.factors == (0.5, 2.0, 4.0)
    with pytest.raises(ConfigError, match="--gen-draws"):
        triangle.Config(gen_draws=0)
    with pytest.raises(ConfigError, match="--compared-draws"):
        triangle.Config(compared_draws=-1)
    more = triangle.Config(knockout_rows=("marker_span",), compared_draws=3)
    k3, s3 = triangle.study_arms(more, 4, "w1-2")
    p3 = triangle.study_plan(more, k3, s3, "w1-2")
    assert "random_control@marker_span/identifiers/L#2" in p3.tests
    assert "random_control@marker_span/identifiers/L#2" not in p3.generation
    cfg = triangle.Config(knockout_rows=("marker_span", "continuation"))
    knock, steer = triangle.study_arms(cfg, 4, "w1-2")
    sp = triangle.study_plan(cfg, knock, steer, "w1-2")
    deciding = ["marker_span/identifiers/L", "marker_span/identifiers/all",
                "continuation/identifiers/L", "continuation/identifiers/all",
                "marker_span/identifiers/w1-2"]  # fmt: skip
    compared = ["marker_span/identifiers/w0-1", "marker_span/identifiers/w2-3", "marker/plip/L",
                "marker/plip/all"]  # fmt: skip
    for label in deciding:
        assert f"knockout@{label}" in sp.tests and f"knockout@{label}" in sp.generation
        kind = "inert_control"  # decides: every draw on tests, gen_draws in generation
        assert {f"{kind}@{label}#{d}" for d in range(5)} <= sp.tests
        assert {f"{kind}@{label}#{d}" for d in range(2)} <= sp.generation
        assert f"{kind}@{label}#2" not in sp.generation | sp.prompts
        # the renormalising control is a compared row: its first --compared-draws (1) draws,
        # in single passes only (generated with --gen-compared)
        assert f"random_control@{label}#0" in sp.tests and f"random_control@{label}#0" in sp.prompts
        assert f"random_control@{label}#0" not in sp.generation
        assert f"random_control@{label}#1" not in sp.tests | sp.generation | sp.prompts
        # the calibrated Scale in every deciding scope, in single passes and generation
        assert (
            f"scale_calibrated@{label}" in sp.tests and f"scale_calibrated@{label}" in sp.generation
        )
        assert f"scale_calibrated@{label}" not in sp.prompts
        series = ("scale_0.5", "scale_2", "scale_4", "scale_calibrated_x2", "set_value_calibrated")
        at_l = label.endswith("/L")  # the dose series at the chosen layer only
        for arm in series:
            assert (f"{arm}@{label}" in sp.tests) == at_l and f"{arm}@{label}" not in sp.prompts
        assert (f"scale_calibrated_x2@{label}" in sp.generation) == at_l
        assert f"set_value_calibrated@{label}" not in sp.generation  # decides at the call
        assert f"scale_2@{label}" not in sp.generation
    for label in compared:
        assert f"inert_control@{label}#1" in sp.tests and f"inert_control@{label}#2" not in sp.tests
        assert f"knockout@{label}" not in sp.generation | sp.prompts
    assert "baseline" in sp.prompts and "baseline" in sp.generation
    assert {n for n in sp.prompts if not n.startswith("random_control")} <= sp.generation
    both = triangle.study_plan(triangle.Config(gen_compared=True), knock, steer, "w1-2")
    assert "knockout@marker/plip/all" in both.generation
    assert "random_control@marker_span/identifiers/L#0" in both.generation
    # before the window is chosen, the sweep's windows are compared scopes
    first = triangle.study_plan(cfg, knock, [], None)
    assert "inert_control@marker_span/identifiers/w1-2#4" not in first.tests
    assert sp.tests - first.tests >= {"inert_control@marker_span/identifiers/w1-2#4"}


def test_seeds_run_the_study_once_per_seed_then_one_report(tmp_path, monkeypatch) -> None:
    import analysis.report

    calls, analysed = [], []

    def fake_main(cfg: triangle.Config) -> Path:
        calls.append((cfg.seed, cfg.seeds, cfg.out))
        return Path(cfg.out)

    monkeypatch.setattr(triangle, "main", fake_main)
    monkeypatch.setattr(analysis.report, "analyze", lambda runs, **kw: analysed.append((runs, kw)))
    cfg = triangle.Config(seeds=(0, 1, 2), out=str(tmp_path / "s"))
    assert triangle.main_seeds(cfg) == tmp_path / "s"
    assert calls == [(s, (), str(tmp_path / "s" / f"seed-{s}")) for s in (0, 1, 2)]
    ((runs, kw),) = analysed
    assert runs == [tmp_path / "s" / f"seed-{s}" for s in (0, 1, 2)] and kw["out"] == tmp_path / "s"
    with pytest.raises(ConfigError, match="--seeds"):
        triangle.Config(seeds=(1, 1))
    with pytest.raises(ConfigError, match="--seeds"):
        triangle.Config(seeds=(-1,))
    with pytest.raises(ConfigError, match="one --model"):
        triangle.main_models(cfg, ["embedded", "other"])
