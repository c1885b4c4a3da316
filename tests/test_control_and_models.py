"""Mass-matched control, --skip-masked and several models, end to end on tiny random models."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from study_fixtures import corpus_dict, write_corpus, write_model_dir

from experiments import conditions
from experiments.cli import main as cli_main
from experiments.conditions import Positions, mass_matched_targets


def _brute_best(pos: Positions, mass: list[float]) -> float:
    cands = [k for k in range(pos.source) if k not in pos.targets]
    goal = sum(mass[t] for t in pos.targets)
    return min(
        abs(sum(mass[k] for k in c) - goal) for c in itertools.combinations(cands, len(pos.targets))
    )


def test_mass_match_within_tolerance_when_possible() -> None:
    rng = np.random.default_rng(0)
    for trial in range(30):
        mass = list(rng.dirichlet(np.ones(14)))
        pos = Positions(sample_id=f"s{trial}", source=12, targets=(0, 3, 5))
        m = mass_matched_targets(pos, mass, seed=1)
        assert len(m.keys) == 3 and not set(m.keys) & {0, 3, 5, 12}
        assert all(0 <= k < 12 for k in m.keys)
        assert m.control_mass == pytest.approx(sum(mass[k] for k in m.keys))
        assert m.target_mass == pytest.approx(mass[0] + mass[3] + mass[5])
        best = _brute_best(pos, mass)
        if best <= 0.1 * m.target_mass:  # a set within ±10% exists: the search finds one
            assert m.within and abs(m.ratio - 1) <= 0.1 + 1e-12
        else:  # none exists: the search reports it and is close to the brute-force optimum
            assert not m.within
            assert abs(m.control_mass - m.target_mass) <= best + 0.05 * m.target_mass
    assert m == mass_matched_targets(pos, mass, seed=1)  # seeded


def test_mass_match_sink_token_gets_the_heaviest_keys() -> None:
    # Token 0 is a target holding a sink-level 0.8: no other keys can match, so the control
    # takes the heaviest other keys (the closest achievable), and says so.
    mass = [0.8, 0.01, 0.05, 0.02, 0.03, 0.04, 0.01, 0.04]
    pos = Positions(sample_id="sink", source=7, targets=(0, 1))
    m = mass_matched_targets(pos, mass, seed=0)
    assert m.keys == (2, 5) and not m.within
    assert m.ratio == pytest.approx(0.09 / 0.81)


def test_build_uses_the_given_control_keys() -> None:
    pos = Positions(sample_id="s", source=9, targets=(0, 1))
    cond, _ = conditions.build("random_control", pos, layer=1, n_layers=2, control=(4, 6))
    assert cond.edits[0].targets == (4, 6)
    p = SimpleNamespace(id="s", positions=pos)
    units = conditions.plan_units([p], ["knockout", "random_control"], layer=1, n_layers=2,
                                  set_value=None, seed=0, controls={"s": (3, 5)})  # fmt: skip
    assert [u.condition.edits[0].targets for u in units] == [(0, 1), (3, 5)]
    with pytest.raises(ValueError, match="sample 's' has no mass-matched control keys"):
        conditions.plan_units([p], ["random_control"], layer=1, n_layers=2, set_value=None,
                              seed=0, controls={"other": (3, 5)})  # fmt: skip


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    a = write_model_dir(root / "tiny-a", seed=0)
    b = write_model_dir(root / "tiny-b", seed=1)
    corpus = write_corpus(root / "corpus.json")
    return root, str(a), str(b), str(corpus)


def _flags(corpus: str) -> list[str]:
    return ["--corpus", corpus, "--limit", "3", "--no-progress", "--max-new-tokens", "4",
            "--no-execute", "--no-dose-response"]  # fmt: skip


@pytest.mark.slow
def test_triangle_two_models_one_report_and_mass_matched_control(two_models, tmp_path) -> None:
    _, a, b, corpus = two_models
    out = tmp_path / "tri"
    argv = ["triangle", "--model", a, "--model", b, "--out", str(out), *_flags(corpus)]
    assert cli_main(argv) == 0
    subs = sorted(p for p in out.iterdir() if p.is_dir() and p.name != "figures")
    assert len(subs) == 2
    for sub in subs:
        man = json.loads((sub / "manifest.json").read_text())
        assert man["status"] == "complete" and man["versions"]["torch"]
        ctl = pd.read_parquet(sub / "control_match.parquet")
        rec = pd.read_parquet(sub / "records.parquet")
        # The records' independently read masses equal the control table's (same edges).
        for row in ctl[ctl["kind"] == "test"].itertuples():
            ko = rec[(rec.sample_id == row.sample_id) & (rec.condition == "knockout")].iloc[0]
            rc = rec[(rec.sample_id == row.sample_id) & (rec.condition == "random_control")]
            rc = rc.iloc[0]
            assert ko.mass_removed == pytest.approx(row.target_mass, rel=1e-4, abs=1e-6)
            assert rc.mass_removed == pytest.approx(row.control_mass, rel=1e-4, abs=1e-6)
            assert json.loads(rc.edit)[0]["targets"] == json.loads(row.control_keys)
    text = (out / "report.md").read_text()
    matrix = text.split("## Outcome matrix")[1].split("Effects behind")[0]
    assert f"| {a} |" in matrix and f"| {b} |" in matrix
    stats = pd.read_csv(out / "stats.csv")
    assert stats["model"].nunique() == 2
    assert "token 0" in text and (out / "figures" / "kl_vs_removed_mass.png").exists()
    # Resume: nothing is recomputed or duplicated.
    before = {s.name: pd.read_parquet(s / "records.parquet") for s in subs}
    assert cli_main([*argv, "--resume"]) == 0
    for s in subs:
        pd.testing.assert_frame_equal(pd.read_parquet(s / "records.parquet"), before[s.name])


def _masked_corpus(path):
    data = corpus_dict()
    bad = dict(data["python_doctest"][0])
    bad["id"] = "py_masked"
    code = bad["code"]
    late = len(code.rstrip()) - 1  # a char well after the marker: causally masked
    assert late > bad["marker_char_pos"] + 5
    bad["target_char_positions"] = [*bad["target_char_positions"], late]
    data["python_doctest"] = [bad, *data["python_doctest"]]
    return write_corpus(path, data)


def test_skip_masked(two_models, tmp_path, capsys, caplog) -> None:
    _, a, _, _ = two_models
    corpus = str(_masked_corpus(tmp_path / "masked.json"))
    argv = ["knockout", "--model", a, "--corpus", corpus, "--limit", "2", "--no-progress"]
    assert cli_main([*argv, "--out", str(tmp_path / "no")]) == 2
    assert "py_masked" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    out = tmp_path / "yes"
    assert cli_main([*argv, "--out", str(out), "--skip-masked"]) == 0
    lines = [r.getMessage() for r in caplog.records if "--skip-masked" in r.getMessage()]
    assert len(lines) == 1 and "dropped sample 'py_masked'" in lines[0]
    man = json.loads((out / "manifest.json").read_text())
    assert [s["sample_id"] for s in man["skipped_masked"]] == ["py_masked"]
    rec = pd.read_parquet(out / "records.parquet")
    assert "py_masked" not in set(rec.sample_id)
    assert cli_main(["analyze", str(out)]) == 0
    assert "`py_masked`" in (out / "report.md").read_text()
