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
from experiments.conditions import Positions, Unit
from experiments.study import part_units

# ---- resolve_layer on a stand-in study ------------------------------------------------------

# Head-mean levels per layer (4 layers). Python peaks at layer 2; Rust is flat and lower.
PY_LEVELS = {"py_a": [0.10, 0.20, 0.40, 0.90], "py_b": [0.10, 0.30, 0.20, 0.70]}
RS_LEVELS = {"rs_a": [0.05, 0.10, 0.10, 0.10], "rs_b": [0.05, 0.10, 0.20, 0.10]}
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
        return SimpleNamespace(cfg=SimpleNamespace(layer=layer), run=_Run()), scans

    return make


@pytest.mark.parametrize(
    ("flag", "kw", "scanned", "layer", "manifest"),
    [
        # no --layer: scan, take the Python peak (layer 2; the last layer is never chosen)
        (None, {}, True, 2, {"layer": 2}),
        # --layer and nothing to calibrate: no scan at all
        (1, {}, False, 1, {"layer": 1}),
        # --layer, but the experiment keeps its scan (steer)
        (1, {"always_scan": True}, True, 1, {"layer": 1}),
        # the triangle also says how the layer was chosen
        (None, {"note_choice": True}, True, 2, {"layer": 2, "layer_choice": "scan peak"}),
        (3, {"note_choice": True}, False, 3, {"layer": 3, "layer_choice": "flag"}),
    ],
)
def test_resolve_layer_scans_only_when_needed(stand_in, flag, kw, scanned, layer, manifest):
    study, scans = stand_in(flag)
    choice = resolve_layer(study, ["test", "baseline"], calibration=False, **kw)
    assert scans == ([("test", "baseline")] if scanned else [])
    assert (choice.scan is not None) == scanned
    assert choice.layer == layer
    assert choice.chosen_by == ("flag" if flag is not None else "scan peak")
    assert choice.calibration is None and choice.set_value is None
    assert study.run.json == {}  # no calibration.json without calibration
    assert study.run.manifest_updates == [manifest]  # one manifest update


@pytest.mark.parametrize(("flag", "layer"), [(None, 2), (1, 1)])
def test_resolve_layer_calibrates_at_the_chosen_layer(stand_in, flag, layer):
    study, scans = stand_in(flag)
    choice = resolve_layer(study, ("test",), calibration=True)
    assert scans == [("test",)]  # calibrating always needs the scan, even with --layer
    cal = study.run.json["calibration.json"]
    assert choice.calibration is cal
    # SetValue lifts Rust to the mean Python level at that layer (per edge).
    py = sum(v[layer] for v in PY_LEVELS.values()) / len(PY_LEVELS)
    rs = sum(v[layer] for v in RS_LEVELS.values()) / len(RS_LEVELS)
    assert cal["layer"] == layer
    assert cal["set_value"] == pytest.approx(py) == choice.set_value
    assert cal["rust_level"] == pytest.approx(rs)
    assert study.run.manifest_updates == [{"layer": layer}]


# ---- named work units -----------------------------------------------------------------------


def _prepared(sid: str, source: int, targets: tuple[int, ...]) -> Any:
    return SimpleNamespace(
        id=sid, positions=Positions(sample_id=sid, source=source, targets=targets)
    )


def test_plan_units_are_named_and_ordered():
    a = _prepared("a", 9, (0, 1))
    b = _prepared("b", 9, (0, 1, 2, 3))
    names = ["baseline", "knockout_all_layers", "set_value_calibrated", "scale_2"]
    units = conditions.plan_units(
        [a, b], names, layer=1, n_layers=3, set_value=0.3, seed=0
    )  # fmt: skip
    # b's four targets cannot all get 0.3 (0.3 * 4 >= 1): no SetValue unit, orders keep their gaps
    got = [(u.sample.id, u.condition.name, u.record_layer, u.order) for u in units]
    assert got == [
        ("a", "baseline", 1, 0),
        ("a", "knockout_all_layers", conditions.ALL_LAYERS, 1),
        ("a", "set_value_calibrated", 1, 2),
        ("a", "scale_2", 1, 3),
        ("b", "baseline", 1, 0),
        ("b", "knockout_all_layers", -1, 1),
        ("b", "scale_2", 1, 3),
    ]
    assert [u.key for u in units[:2]] == ["a/baseline/1", "a/knockout_all_layers/-1"]
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
    at = scan[(scan.layer == layer) & (scan.kind == "test")]
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
            triangle.Config(**env, out=str(tmp_path / "t"), generation=False, dose_response=False)
        ),
    }
    cals = {}
    for name, out in runs.items():
        man = _manifest(out)
        cal = json.loads((out / "calibration.json").read_text())
        # the tiny model has 2 layers and the last is never chosen: the scan peak is layer 0
        assert man["layer"] == cal["layer"] == 0, name
        assert ("layer_choice" in man) == (name == "triangle"), name
        ref = _independent_calibration(out, 0)
        assert cal["python_level"] == pytest.approx(ref["python_level"], abs=1e-9), name
        assert cal["set_value"] == cal["python_level"], name
        assert cal["rust_level"] == pytest.approx(ref["rust_level"], abs=1e-9), name
        cals[name] = cal
    assert _manifest(runs["triangle"])["layer_choice"] == "scan peak"
    # the triangle scans baselines too; calibration reads the tests only
    for name in ("steer", "generate", "triangle"):
        for k in ("python_level", "rust_level", "set_value", "scale_factor"):
            assert cals[name][k] == pytest.approx(cals["calibrate"][k], rel=1e-5), (name, k)
    # the calibrated value is the one the SetValue rows got
    rec = pd.read_parquet(runs["steer"] / "records.parquet")
    sv = rec[rec.condition == "set_value_calibrated"]
    assert len(sv) > 0 and (sv.factor == cals["steer"]["set_value"]).all()


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
    # steer with --layer and --no-set-value keeps its scan, calibrates nothing
    s = steer.main(
        steer.Config(**env, out=str(tmp_path / "s"), layer=1, factors=(2.0,), set_value=False)
    )
    assert (s / "layer_scan.parquet").exists() and not (s / "calibration.json").exists()
    assert set(pd.read_parquet(s / "records.parquet").condition) == {"baseline", "scale_2"}
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
    assert sorted(rec[rec.condition == "knockout"].layer.unique()) == [0, 1]
    assert (rec[rec.condition == "baseline"].layer == conditions.ALL_LAYERS).all()


def test_record_parts_hold_whole_batches(env, tmp_path):
    out = knockout.main(
        knockout.Config(
            **{**env, "limit": None}, out=str(tmp_path / "k"), layer=0, batch_size=3,
            languages=("python",), kinds=("test",),
        )
    )  # fmt: skip
    parts = sorted((out / "parts" / "records").glob("*.parquet"))
    # 4 tests x 5 conditions = 20 units; parts of 4 batches of 3 = 12 units
    assert [len(pd.read_parquet(p)) for p in parts] == [12, 8]
