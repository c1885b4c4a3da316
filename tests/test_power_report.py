"""The report's power table, robustness table and sampled-rate verdicts (analysis.power_report,
analysis.robust_report) on synthetic runs, checked against direct computations."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import DEFAULT, ic, ko, make_run_dir

from analysis.callsite import call_rows
from analysis.findings import findings
from analysis.pairing import paired
from analysis.power import binary_power_rows, continuous_power_rows, paired_t_power, smallest_n
from analysis.power_report import power_flag, power_flags, power_frame
from analysis.rates import classify_rates, paired_rate_test
from analysis.report import analyze, report_findings
from analysis.robust_report import (
    NO_SAMPLED,
    greedy_only,
    half_filters,
    rate_verdicts,
    robustness_frame,
    study_groups,
)
from analysis.scopes import with_scope
from analysis.triangle import classify, classify_all
from analysis.verdicts import TriangleOutcome
from plip_nn.scope import function_half


def _tables(run: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    recs = with_scope(pd.read_parquet(run / "records.parquet"))
    gens = with_scope(pd.read_parquet(run / "generations.parquet"))
    return (recs, gens, pd.read_parquet(run / "noise_floor.parquet"),
            pd.read_parquet(run / "control_match.parquet"))  # fmt: skip


def _one_scope(o: TriangleOutcome) -> TriangleOutcome:
    """The outcome with its default knockout only and no steering (keeps the exact sums short)."""
    return dataclasses.replace(o, knockouts=(o.knockout(DEFAULT),), steering_by_scope={})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("pw") / "run", n=24)


def test_power_rows_equal_analysis_power_called_directly(run: Path) -> None:
    recs, gens, noise, control = _tables(run)
    o = classify(recs, gens, noise, language="python", control_match=control)
    frame = power_frame([_one_scope(o)])
    a_adj = o.alpha / o.family_size
    # the inputs, recomputed from the tables: SD of the paired Δlog p, discordance, ref rate
    p = paired(call_rows(recs[recs["language"] == "python"]), "dlogp_gold", ko(), ic())
    sd = float((p["cond"] - p["ref"]).std(ddof=1))
    g = paired(gens[gens["language"] == "python"], "preserved", ko(), ic())
    x, y = g["ref"].astype(bool), g["cond"].astype(bool)
    want = [
        *continuous_power_rows(len(p), sd, endpoint="", margin=o.margin_nats, alpha=a_adj),
        *binary_power_rows(len(g), float((x != y).mean()), float(x.mean()), endpoint="",
                           margin=o.margin, alpha=a_adj),
    ]  # fmt: skip
    assert list(frame["test"]) == [r.test for r in want]
    for (_, got), w in zip(frame.iterrows(), want, strict=True):
        assert got["n"] == w.n and got["n_for_80"] == w.n_for_80
        assert got["power"] == pytest.approx(w.power, rel=1e-9, abs=1e-15)
        assert got["observed"] == pytest.approx(w.observed, rel=1e-9)
        assert got["margin"] == w.margin and got["flag_low_power"] == (w.power < 0.5)
        assert got["reference"] == ic() and got["condition"] == ko()


def test_findings_flag_low_power_only_below_one_half(run: Path) -> None:
    recs, gens, noise, control = _tables(run)
    # a tiny call-site margin: the detection power at n = 24 falls far below 0.5
    low = classify(recs, gens, noise, language="rust", control_match=control, margin_nats=0.01)
    low = _one_scope(low)
    frame = power_frame([low])
    k = low.knockout(DEFAULT)
    assert k is not None and k.effect == "predicted"
    c = k.draws[0].call
    assert c is not None
    a_adj = low.alpha / low.family_size
    power = paired_t_power(c.n, c.sd, 0.01, a_adj)
    n80 = smallest_n(lambda m: paired_t_power(m, c.sd, 0.01, a_adj))
    assert power < 0.5
    flag = f" (power {power:.2f} at ±0.01 nats; n for 80%: {n80})"
    assert power_flags(frame, [low])[(low.model, "rust", DEFAULT)] == flag
    text = " ".join(findings([low], power=power_flags(frame, [low])))
    assert flag.strip() in text
    # a verdict no test decided ("control unmatched" ...) carries no power flag
    from dataclasses import replace

    for effect in ("unmatched", "unreached", "disagree"):
        kos = tuple(replace(x, effect=effect) for x in low.knockouts)
        assert power_flags(frame, [replace(low, knockouts=kos)])[(low.model, "rust", DEFAULT)] == ""
    # the default margin: power ≥ 0.5, no flag
    high = _one_scope(classify(recs, gens, noise, language="rust", control_match=control))
    hf = power_frame([high])
    assert power_flags(hf, [high])[(high.model, "rust", DEFAULT)] == ""
    assert "(power " not in " ".join(findings([high], power=power_flags(hf, [high])))
    row = hf[hf["test"] == "paired t (bootstrap CI)"].iloc[0].copy()
    row["power"], row["n_for_80"] = 0.18, 165
    row["endpoint"], row["margin"] = "preserved (greedy): x", 0.10
    assert power_flag(row) == " (power 0.18 at ±10 pp; n for 80%: 165)"


def _flipped_seeds(tmp: Path) -> tuple[Path, Path]:
    a = make_run_dir(tmp / "seed0", seed=0, n=24)
    b = make_run_dir(tmp / "seed1", seed=1, n=24, strong_knockout=False)  # the seed flips it
    return a, b


def test_robustness_reads_disagree_when_one_seed_flips(tmp_path: Path) -> None:
    a, b = _flipped_seeds(tmp_path)
    metas = [{"config": json.loads((d / "config.json").read_text())} for d in (a, b)]
    assert study_groups(metas) == [[0, 1]]  # config differs only in seed: one study
    other = json.loads((b / "config.json").read_text()) | {"n": 99}
    assert study_groups([metas[0], {"config": other}]) == [[0], [1]]
    outs = {}
    for name, d in (("0", a), ("1", b)):
        recs, gens, noise, control = _tables(d)
        outs[name] = classify_all(recs, gens, noise, control_match=control)
    table = robustness_frame(outs["0"], seeds=outs)
    row = table[table["finding"] == f"tiny-a / python / {DEFAULT}"].iloc[0]
    assert row["seed 0"] == "in the predicted direction" == row["verdict"]
    assert row["seed 1"] != "in the predicted direction"
    assert not row["agree"] and row["disagree_on"] == "seed 1"
    assert (
        row["sentence"]
        == f"verdict differs with seed 1 ({row['seed 1']} vs in the predicted direction)"
    )
    same = robustness_frame(outs["0"], seeds={"0": outs["0"]})
    assert same["agree"].all() and (same["sentence"] == "holds across draws and seeds").all()


def test_halves_restrict_to_each_halfs_samples(run: Path) -> None:
    man = json.loads((run / "manifest.json").read_text())
    filters = half_filters([{"manifest": man}])
    assert list(filters) == ["0 (layer 2)", "1 (layer 2)"]
    recs = _tables(run)[0]
    for h, keep in enumerate(filters.values()):
        kept = keep(recs)
        assert len(kept) and {function_half(s, man["seed"]) for s in kept["sample_id"]} == {h}
    assert sum(len(keep(recs)) for keep in filters.values()) == len(recs)


def test_sampled_rates_decide_the_generation_verdict(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "s", n=24, sampled=3)
    recs, gens, noise, control = _tables(run)
    assert set(gens["decoding"]) == {"greedy", "sampled"}
    greedy = greedy_only(gens)
    assert greedy is not None and set(greedy["decoding"]) == {"greedy"}
    o = classify(recs, greedy, noise, language="python", control_match=control)
    rv = rate_verdicts(gens, [o], n_resamples=999)[(o.model, "python", DEFAULT)]
    sub = gens[gens["language"] == "python"]
    cmp = paired_rate_test(sub, ko(), ic(), alpha=o.alpha / o.family_size, n_resamples=999)
    assert rv.draws[0][1] == cmp
    assert rv.draws[0][2] == classify_rates(cmp, margin=o.margin, predicted_sign=-1)[0]
    assert [d for d, _, _ in rv.draws] == [0, 1]
    assert rate_verdicts(greedy, [o]) == {}


def test_analyze_seeds_and_runs_without_sampled_columns(tmp_path: Path) -> None:
    a, b = _flipped_seeds(tmp_path)
    report = analyze([a, b], out=tmp_path / "both")
    text = report.read_text(encoding="utf-8")
    assert "## Prospective power of every deciding test" in text
    assert "## Robustness of each knockout verdict" in text and "seed 1" in text
    assert NO_SAMPLED in text
    found = report_findings(report)
    assert any(re.search(r"in Python no verdict is stated: the verdict differs with seed 1", s)
               for s in found)  # fmt: skip
    stats = pd.read_csv(tmp_path / "both" / "stats.csv")
    power = stats[stats["family"] == "power"]
    assert len(power) and not power["counted"].any()
    assert np.isfinite(power["power"]).all() and (power["n_for_80"] != 0).all()


def test_analyze_with_sampled_decodings(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "s", n=24, sampled=3)
    text = analyze(run).read_text(encoding="utf-8")
    assert NO_SAMPLED not in text
    assert "preservation verdict (sampled rates)" in text and "GEE" in text
    assert f"tiny-a / python / {DEFAULT} · preservation" in text
    assert "sampled decoding" in text and "TOST on rates (t)" in text


def test_analyze_where_only_some_conditions_have_sampled_decodings(tmp_path: Path) -> None:
    # the default study samples only baseline and the chosen-layer scopes: a knockout scope
    # without sampled rows gets no rate-power rows (and no error)
    run = make_run_dir(tmp_path / "s", n=24, sampled=3)
    path = run / "generations.parquet"
    gens = pd.read_parquet(path)
    keep = (gens["decoding"] == "greedy") | (gens["condition"] == "baseline")
    gens[keep].to_parquet(path)
    analyze(run)
    stats = pd.read_csv(run / "stats.csv")
    power = stats[stats["family"] == "power"]
    assert len(power) and not power["test"].str.contains("rates").any()


def test_a_finding_names_only_the_levels_that_disagree() -> None:
    # the call-site verdict holds and the preservation verdict flips with the decoding: the
    # Finding says which, in words that read ("no verdict is stated: the preservation ...")
    from types import SimpleNamespace

    from analysis.report import _agreement, finding_id

    o = SimpleNamespace(model="m", language="rust", knockouts=[SimpleNamespace(scope="s/L")])
    fid = finding_id("m", "rust", "s/L")

    def frame(main: tuple[bool, str], pres: tuple[bool, str]) -> pd.DataFrame:
        return pd.DataFrame({"finding": [fid, fid + " · preservation"],
                             "agree": [main[0], pres[0]], "sentence": [main[1], pres[1]]})  # fmt: skip

    held, flip = (True, "holds across draws and halves"), (False, "verdict differs with x (a vs b)")
    assert _agreement(frame(held, held), [o])[("m", "rust", "s/L")] == (
        True, "holds across draws and halves; preservation (greedy vs sampled decoding): "
        "holds across draws and halves")  # fmt: skip
    assert _agreement(frame(held, flip), [o])[("m", "rust", "s/L")] == (
        False, "preservation verdict differs with x (a vs b)")  # fmt: skip
    assert _agreement(frame(flip, flip), [o])[("m", "rust", "s/L")] == (
        False,
        "verdict differs with x (a vs b); the preservation verdict differs with x (a vs b)",
    )
    assert _agreement(frame(flip, held), [o])[("m", "rust", "s/L")] == (
        False, "verdict differs with x (a vs b)")  # fmt: skip
