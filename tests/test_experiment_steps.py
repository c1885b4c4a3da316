"""The steps experiments share: the layer/calibration step, named work units, part sizes.

:func:`experiments.calibrate.resolve_layer` is checked on a stand-in study (which kinds it
scans, when, what it writes) against hand-computed values, then through every experiment
that uses it on a tiny random model, where calibration.json and the manifest's layer must
come out the same way in each.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from study_fixtures import write_corpus, write_model_dir

from experiments import calibrate as calibrate_exp
from experiments import conditions, knockout, steer, triangle
from experiments import generate as gen_exp
from experiments.calibrate import resolve_layer
from experiments.conditions import Arm, Unit
from experiments.study import part_units
from plip_nn.positions import TokenPositions
from plip_nn.scope import Scope, function_half

# ---- resolve_layer on a stand-in study ------------------------------------------------------

# Head-mean levels per layer (4 layers). The functions "a" and "d" fall into different halves
# (seed 0): Python "a" peaks at layer 2, "d" at layer 1; Rust is flat and lower.
PY_LEVELS = {"py_a": [0.10, 0.20, 0.40, 0.05], "py_d": [0.10, 0.30, 0.20, 0.05]}
RS_LEVELS = {"rs_a": [0.05, 0.10, 0.10, 0.10], "rs_d": [0.05, 0.10, 0.20, 0.10]}
N_TARGETS = 2


def _scan_table() -> pd.DataFrame:
    rows = []
    for language, levels in (("python", PY_LEVELS), ("rust", RS_LEVELS)):
        for sid, per_layer in levels.items():
            for layer, level in enumerate(per_layer):
                rows.append(
                    {
                        "sample_id": sid,
                        "language": language,
                        "kind": "test",
                        "rows": "marker_span",
                        "targets": "identifiers",
                        "layer": layer,
                        "attn_level": level,
                        "attn_mass": level * N_TARGETS,
                        "n_targets": N_TARGETS,
                    }
                )
    return pd.DataFrame(rows)


class _Run:
    def __init__(self) -> None:
        self.json: dict[str, Any] = {}
        self.manifest_updates: list[dict[str, Any]] = []

    def write_json(self, name: str, obj: Any) -> None:
        self.json[name] = obj

    def update_manifest(self, **fields: Any) -> None:
        self.manifest_updates.append(fields)


@pytest.fixture
def stand_in(monkeypatch):
    scans: list[tuple[str, ...]] = []

    def fake_scan(study, kinds):
        scans.append(kinds)
        return _scan_table()

    monkeypatch.setattr(calibrate_exp, "run_scan", fake_scan)

    def make(layer):
        cfg = SimpleNamespace(layer=layer, seed=0, rows="marker_span", targets="identifiers")
        return SimpleNamespace(cfg=cfg, run=_Run()), scans

    return make


def test_the_halves_split_the_functions() -> None:
    assert function_half("py_a", 0) != function_half("py_d", 0)
    assert function_half("py_a", 0) == function_half("rs_a", 0) == function_half("pyg_a", 0)


@pytest.mark.parametrize(
    ("flag", "kw", "scanned", "by_half", "manifest"),
    [
        # no --layer: scan; each half takes the Python peak of the other half (any layer, the
        # last included): half of "a" gets "d"'s peak 1, half of "d" gets "a"'s peak 2
        (None, {}, True, {"a": 1, "d": 2}, {}),
        # --layer and nothing to calibrate: no scan at all
        (1, {}, False, {"a": 1, "d": 1}, {}),
        # --layer, but the experiment keeps its scan (steer)
        (1, {"always_scan": True}, True, {"a": 1, "d": 1}, {}),
        # the triangle also says how the layer was chosen
        (
            None,
            {"note_choice": True},
            True,
            {"a": 1, "d": 2},
            {"layer_choice": "cross-fitted scan peak"},
        ),
        (3, {"note_choice": True}, False, {"a": 3, "d": 3}, {"layer_choice": "flag"}),
    ],
)
def test_resolve_layer_scans_only_when_needed(stand_in, flag, kw, scanned, by_half, manifest):
    study, scans = stand_in(flag)
    choice = resolve_layer(study, ["test", "baseline"], calibration=False, **kw)
    assert scans == ([("test", "baseline")] if scanned else [])
    assert (choice.scan is not None) == scanned
    assert {f: choice.layer_of(f"pyg_{f}") for f in "ad"} == by_half
    assert choice.layer_of("rs_a") == by_half["a"]
    assert choice.chosen_by == ("flag" if flag is not None else "cross-fitted scan peak")
    assert choice.calibration == {} and choice.set_value is None
    assert study.run.json == {}  # no calibration.json without calibration
    [update] = study.run.manifest_updates  # one manifest update
    assert update["layer"] == choice.layer and update.items() >= manifest.items()


@pytest.mark.parametrize("flag", [None, 1])
def test_resolve_layer_calibrates_at_each_chosen_layer(stand_in, flag):
    study, scans = stand_in(flag)
    choice = resolve_layer(study, ("test",), calibration=True)
    assert scans == [("test",)]  # calibrating always needs the scan, even with --layer
    cal = study.run.json["calibration.json"]
    layers = sorted(set(choice.by_half.values()))
    assert sorted(choice.calibration) == layers == sorted(int(k) for k in cal["by_layer"])
    for layer in layers:
        # SetValue lifts Rust to the mean Python level at that layer (per edge).
        py = sum(v[layer] for v in PY_LEVELS.values()) / len(PY_LEVELS)
        rs = sum(v[layer] for v in RS_LEVELS.values()) / len(RS_LEVELS)
        c = choice.calibration[layer]
        assert c["layer"] == layer and c["set_value"] == pytest.approx(py)
        assert c["rust_level"] == pytest.approx(rs)
        assert choice.calibrations[layer].set_value == pytest.approx(py)
    assert cal["layer"] == choice.layer and choice.set_value == pytest.approx(cal["set_value"])


# ---- named work units -----------------------------------------------------------------------


def _prepared(sid: str, source: int, targets: tuple[int, ...]) -> Any:
    pos = TokenPositions(input_ids=tuple(range(source + 2)), source=source, targets=targets,
                         bos_offset=0, mid_token_chars=(), dropped_targets=())  # fmt: skip
    return SimpleNamespace(id=sid, positions=pos)


def test_plan_units_are_named_and_ordered():
    a = _prepared("a", 9, (0, 1))
    b = _prepared("b", 9, (0, 1, 2, 3))
    scope = Scope("marker", "plip", "L")
    arms = [Arm("baseline"), Arm("knockout", Scope("marker", "plip", "all")),
            Arm("set_value_calibrated", scope), Arm("scale_2", scope)]  # fmt: skip
    cal = {1: conditions.Calibration(set_value=0.3, scale_factor=2.0)}
    units = conditions.plan_units([a, b], arms, layer_of=1, n_layers=3, calibration=cal)
    # b's four targets cannot all get 0.3 (0.3 * 4 >= 1): no SetValue unit, orders keep their gaps
    got = [(u.sample.id, u.condition.name, u.record_layer, u.order) for u in units]
    assert got == [
        ("a", "baseline", 1, 0),
        ("a", "knockout@marker/plip/all", conditions.ALL_LAYERS, 1),
        ("a", "set_value_calibrated@marker/plip/L", 1, 2),
        ("a", "scale_2@marker/plip/L", 1, 3),
        ("b", "baseline", 1, 0),
        ("b", "knockout@marker/plip/all", -1, 1),
        ("b", "scale_2@marker/plip/L", 1, 3),
    ]
    assert [u.key for u in units[:2]] == ["a|baseline|1", "a|knockout@marker/plip/all|-1"]
    assert units[1].condition.edits[0].layers == (0, 1, 2)
    assert all(isinstance(u, Unit) for u in units)
    with pytest.raises(AttributeError):
        units[0].order = 5  # type: ignore[misc]


def test_part_units_count_whole_batches():
    assert part_units(8, 4) == 32  # records, scan, control: the default run directory
    assert part_units(8, 2) == 16  # generations
    assert part_units(1, 4) == 8  # never fewer than 8 units a part
    assert part_units(64, 2) == 128  # a large batch is never capped by its part


# ---- the shared step through every experiment, on a tiny model ------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("steps")
    model = write_model_dir(root / "model")
    corpus = write_corpus(root / "corpus.json")
    return {"model": str(model), "corpus": str(corpus), "progress": False, "limit": 2}


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def _independent_calibration(out: Path, layer: int) -> dict[str, float]:
    scan = pd.read_parquet(out / "layer_scan.parquet")
    at = scan[(scan.layer == layer) & (scan.kind == "test") & (scan.rows == "marker_span")]
    return {
        "python_level": float(at[at.language == "python"].attn_level.mean()),
        "rust_level": float(at[at.language == "rust"].attn_level.mean()),
    }


def test_calibration_and_layer_are_written_alike_by_every_experiment(env, tmp_path):
    runs = {
        "calibrate": calibrate_exp.main(calibrate_exp.Config(**env, out=str(tmp_path / "c"))),
        "steer": steer.main(steer.Config(**env, out=str(tmp_path / "s"), factors=(2.0,))),
        "generate": gen_exp.main(
            gen_exp.Config(
                **env,
                out=str(tmp_path / "g"),
                conditions=("baseline", "set_value_calibrated"),
                max_new_tokens=2,
                execute="off",
            )
        ),
        "triangle": triangle.main(
            triangle.Config(
                **env,
                out=str(tmp_path / "t"),
                generation=False,
                draws=1,
                layer_scopes=("layer",),
                plip_scope=False,
                factors=(2.0,),
            )
        ),
    }
    cals = {}
    for name, out in runs.items():
        man = _manifest(out)
        cal = json.loads((out / "calibration.json").read_text())
        # every layer can be chosen (the last included): each half takes the Python test
        # peak of the other half's functions, recomputed here from the scan
        scan = pd.read_parquet(out / "layer_scan.parquet")
        py = scan[(scan.kind == "test") & (scan.language == "python")
                  & (scan.rows == "marker_span") & (scan.targets == "identifiers")]  # fmt: skip
        half = py.sample_id.map(lambda sid: function_half(sid, 0))
        expected = {str(h): int(py[half != h].groupby("layer").attn_level.mean().idxmax())
                    for h in (0, 1)}  # fmt: skip
        assert man["layer_by_half"] == expected, name
        assert man["layer"] == cal["layer"] == expected["0"], name
        assert ("layer_choice" in man) == (name == "triangle"), name
        ref = _independent_calibration(out, cal["layer"])
        assert cal["python_level"] == pytest.approx(ref["python_level"], abs=1e-9), name
        assert cal["set_value"] == cal["python_level"], name
        assert cal["rust_level"] == pytest.approx(ref["rust_level"], abs=1e-9), name
        cals[name] = cal
    assert _manifest(runs["triangle"])["layer_choice"] == "cross-fitted scan peak"
    # the triangle scans baselines too; calibration reads the tests only
    for name in ("steer", "generate", "triangle"):
        for k in ("python_level", "rust_level", "set_value", "scale_factor"):
            assert cals[name][k] == pytest.approx(cals["calibrate"][k], rel=1e-5), (name, k)
    # the calibrated value is the one the SetValue rows got
    rec = pd.read_parquet(runs["steer"] / "records.parquet")
    sv = rec[rec.arm == "set_value_calibrated"]
    by_layer = {int(k): v["set_value"] for k, v in cals["steer"]["by_layer"].items()}
    assert len(sv) > 0 and (sv.factor == sv.layer.map(by_layer)).all()


def test_each_experiment_scans_and_calibrates_only_as_before(env, tmp_path):
    # generate with --layer and no calibrated condition: no scan, no calibration
    g = gen_exp.main(
        gen_exp.Config(
            **env, out=str(tmp_path / "g"), layer=1, conditions=("baseline",),
            max_new_tokens=2, execute="off",
        )
    )  # fmt: skip
    assert not (g / "layer_scan.parquet").exists() and not (g / "calibration.json").exists()
    assert _manifest(g)["layer"] == 1
    # steer with --layer and --no-calibrated keeps its scan, calibrates nothing
    s = steer.main(
        steer.Config(**env, out=str(tmp_path / "s"), layer=1, factors=(2.0,), calibrated=False)
    )
    assert (s / "layer_scan.parquet").exists() and not (s / "calibration.json").exists()
    assert set(pd.read_parquet(s / "records.parquet").condition) == {
        "baseline",
        "scale_2@marker_span/identifiers/L",
    }
    # knockout without --layer scans its own kinds; never calibrates
    k = knockout.main(knockout.Config(**env, out=str(tmp_path / "k"), kinds=("test",)))
    scan = pd.read_parquet(k / "layer_scan.parquet")
    assert set(scan.kind) == {"test"} and not (k / "calibration.json").exists()
    assert _manifest(k)["layer"] == 0
    # knockout at every layer: no layer to choose, no scan
    a = knockout.main(
        knockout.Config(**env, out=str(tmp_path / "a"), kinds=("test",), every_layer=True)
    )
    assert not (a / "layer_scan.parquet").exists() and _manifest(a)["layer"] == "all"
    rec = pd.read_parquet(a / "records.parquet")
    assert sorted(rec[rec.arm == "knockout"].layer.unique()) == [0, 1]
    assert set(rec[rec.arm == "knockout"].layers) == {"w0-0", "w1-1"}


def test_record_parts_hold_whole_batches(env, tmp_path):
    out = knockout.main(
        knockout.Config(
            **{**env, "limit": None}, out=str(tmp_path / "k"), layer=0, batch_size=3,
            languages=("python",), kinds=("test",), window=0, draws=1,
        )
    )  # fmt: skip
    parts = sorted((out / "parts" / "records").glob("*.parquet"))
    # 4 tests x 7 conditions (baseline; knockout, random and inert control at L and all) = 28
    # units; parts of 4 batches of 3 = 12 units
    assert [len(pd.read_parquet(p)) for p in parts] == [12, 12, 4]
