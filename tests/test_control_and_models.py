"""Mass-matched control, --skip-masked and several models, end to end on tiny random models."""

from __future__ import annotations

import binascii
import itertools
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from study_fixtures import corpus_dict, write_corpus, write_model_dir

from experiments import conditions
from experiments.cli import main as cli_main
from experiments.conditions import Arm, control_rng, match_keys
from plip_nn.positions import TokenPositions
from plip_nn.scope import Scope


def _brute_best(pool: list[int], mass: dict[int, float], n: int, goal: float) -> float:
    return min(abs(sum(mass[k] for k in c) - goal) for c in itertools.combinations(pool, n))


def test_mass_match_within_tolerance_when_possible() -> None:
    rng = np.random.default_rng(0)
    for trial in range(30):
        raw = list(rng.dirichlet(np.ones(14)))
        mass = dict(enumerate(raw))
        pool = [k for k in range(12) if k not in (0, 3, 5)]  # targets 0, 3, 5
        goal = raw[0] + raw[3] + raw[5]
        m = match_keys(pool, mass, 3, goal, np.random.default_rng([1, trial]))
        assert set(m.keys) <= set(pool) and m.count_ok == (len(m.keys) == 3)
        assert m.control_mass == pytest.approx(sum(mass[k] for k in m.keys))
        assert m.target_mass == pytest.approx(goal)
        best = _brute_best(pool, mass, 3, goal)
        any_n = min(_brute_best(pool, mass, n, goal) for n in range(1, len(pool)))
        if best <= 0.1 * goal:  # a set of 3 within ±10% exists: the search finds one
            assert m.within and abs(m.ratio - 1) <= 0.1 + 1e-12 and m.count_ok
        else:  # none of 3: the count is freed, and it matches when some count can
            assert abs(m.control_mass - goal) <= best + 0.05 * goal
            if any_n <= 0.1 * goal:
                assert m.within and not m.count_ok
            else:
                assert not m.within
        again = match_keys(pool, mass, 3, goal, np.random.default_rng([1, trial]))
        assert again == m  # seeded


def test_mass_match_sink_token_gets_the_heaviest_keys() -> None:
    # Token 0 is a target holding a sink-level 0.8: no other keys can match, so the control
    # takes the heaviest other keys (the closest achievable), and says so.
    # With the count freed it takes every pool key but the lightest (never the whole pool).
    mass = dict(enumerate([0.8, 0.01, 0.05, 0.02, 0.03, 0.04, 0.01, 0.04]))
    m = match_keys([2, 3, 4, 5, 6], mass, 2, 0.81, np.random.default_rng(0))
    assert m.keys == (2, 3, 4, 5) and not m.count_ok
    assert not m.within and m.ratio == pytest.approx(0.14 / 0.81)


def test_freed_count_reaches_a_mass_that_as_many_keys_cannot() -> None:
    # targets hold 0.30 in 2 keys; no 2 pool keys reach 0.27, but 5 of them do
    mass = {0: 0.15, 1: 0.15, **{k: 0.06 for k in range(2, 12)}}
    m = match_keys(list(range(2, 12)), mass, 2, 0.30, np.random.default_rng(3))
    assert m.within and not m.count_ok and len(m.keys) == 5
    assert m.ratio == pytest.approx(1.0)


def test_small_pool_uses_every_key_and_says_so() -> None:
    mass = {1: 0.1, 2: 0.2}
    m = match_keys([1, 2], mass, 4, 0.5, np.random.default_rng(0))
    assert m.keys == (1, 2) and not m.count_ok
    with pytest.raises(ValueError, match="pool is empty"):
        match_keys([], mass, 2, 0.5, np.random.default_rng(0))


def _positions() -> TokenPositions:
    # 0 def, 1 name, 2 (a, 3 ,, 4 b, 5 ):, 6-8 body, 9 >>> (marker), 10 end
    return TokenPositions(input_ids=tuple(range(11)), source=9, targets=(0, 1, 2),
                          bos_offset=0, mid_token_chars=(), dropped_targets=(),
                          marker_span=(9,), identifier_targets=(0, 1, 2, 4),
                          signature=(0, 1, 2, 3, 4, 5))  # fmt: skip


def test_control_pool_excludes_the_signature_and_targets() -> None:
    pos = _positions()
    assert pos.control_pool("marker") == (6, 7, 8)
    assert pos.control_pool("continuation") == (6, 7, 8)
    assert not set(pos.control_pool("marker_span")) & set(pos.signature)


def test_build_uses_the_given_control_keys_per_layer() -> None:
    pos = _positions()
    p = SimpleNamespace(id="s", positions=pos)
    scope = Scope("marker_span", "identifiers", "all")
    keys = {("s", "marker_span", "identifiers", lay, 0): (6 + lay % 3,) for lay in range(2)}
    cond = conditions.build(Arm("random_control", scope, 0), p, layer=1, n_layers=2,
                            controls=keys)  # fmt: skip
    assert cond is not None
    assert [(e.layers, e.targets, e.sources) for e in cond.edits] == [
        ((0,), (6,), (9,)),
        ((1,), (7,), (9,)),
    ]
    ko = conditions.build(Arm("knockout", scope), p, layer=1, n_layers=2)
    assert ko is not None and ko.edits[0].targets == (0, 1, 2, 4) and ko.edits[0].layers == (0, 1)
    with pytest.raises(ValueError, match="no control keys"):
        conditions.build(Arm("random_control", scope, 1), p, layer=1, n_layers=2, controls=keys)
    assert control_rng("s", 0, "marker", "plip", 1, 0).integers(1 << 30) == np.random.default_rng(
        [0, binascii.crc32(b"s"), binascii.crc32(b"marker/plip"), 1, 0]
    ).integers(1 << 30)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    a = write_model_dir(root / "tiny-a", seed=0)
    b = write_model_dir(root / "tiny-b", seed=1)
    corpus = write_corpus(root / "corpus.json")
    return root, str(a), str(b), str(corpus)


def _flags(corpus: str) -> list[str]:
    return ["--corpus", corpus, "--limit", "3", "--no-progress", "--max-new-tokens", "4",
            "--no-execute", "--draws", "1", "--layer-scopes", "layer", "all",
            "--factors", "2"]  # fmt: skip


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
        checked = 0
        ko_name = "knockout@marker_span/identifiers/L"
        for row in ctl[(ctl["kind"] == "test") & (ctl["rows"] == "marker_span")].itertuples():
            ko = rec[(rec.sample_id == row.sample_id) & (rec.condition == ko_name)].iloc[0]
            if ko.layer != row.layer:
                continue
            rc = rec[
                (rec.sample_id == row.sample_id)
                & (rec.condition == f"random_control@marker_span/identifiers/L#{row.draw}")
            ]
            rc = rc.iloc[0]
            assert ko.mass_removed == pytest.approx(row.target_mass, rel=1e-4, abs=1e-6)
            assert rc.mass_removed == pytest.approx(row.control_mass, rel=1e-4, abs=1e-6)
            assert json.loads(rc.edit)[0]["targets"] == json.loads(row.control_keys)
            checked += 1
        assert checked >= 3
    text = (out / "report.md").read_text()
    matrix = text.split("## Outcome matrix")[1].split("## Knockout by scope")[0]
    assert f"{a} / python" in matrix and f"{b} / rust" in matrix
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
