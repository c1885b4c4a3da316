"""Issue 28's verdicts on hand-built record sets: matched and inert controls, draws that must
agree, steering paired by scope, the reach gate in nats, TOST rows, H1 with Holm, H2's hinge."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired
from synthetic_runs import (
    ALL,
    DEFAULT,
    PLIP,
    generations_table,
    ic,
    ko,
    make_run_dir,
    rc,
    records_table,
    steer,
)

from analysis import dose
from analysis.callsite import DLOGP_MARGIN, paired_bca
from analysis.equivalence import paired_difference, tost_paired_proportions
from analysis.findings import false_markers_louder, findings
from analysis.hypothesis import bootstrap_mean_diff
from analysis.languages import observe, real_vs_false
from analysis.matching import matching_table
from analysis.reach import MIN_CHANGED, REACH_NATS, reach
from analysis.report import analyze, report_findings
from analysis.triangle import classify

N = 30


def _calls(dl: dict[str, np.ndarray], language: str = "rust", seed: int = 0) -> pd.DataFrame:
    """Call-site records (kind=test) with the given Δlog p per condition."""
    kl = {c: np.full(N, 0.2) for c in dl} | {"baseline": np.zeros(N)}
    return records_table(kl, kind="test", dlogp=dl, language=language, seed=seed)


def _strong(scope: str = DEFAULT, draws: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dl = {ko(scope): rng.normal(-1.0, 0.2, N)}
    for d in range(draws):
        dl[ic(scope, d)] = rng.normal(-0.05, 0.05, N)
        dl[rc(scope, d)] = rng.normal(0.2, 0.1, N)
    return dl


def _control(scope_rows: str, scope_targets: str, ratios: dict[int, float], draws: int = 3,
             language: str = "rust") -> pd.DataFrame:  # fmt: skip
    """control_match rows: every sample and draw at each layer with the given mass ratio."""
    return pd.DataFrame([
        {"model": "m", "language": language, "sample_id": f"s{i}", "rows": scope_rows,
         "targets": scope_targets, "layer": layer, "draw": d, "mass_ratio": r}
        for i in range(N) for layer, r in ratios.items() for d in range(draws)
    ])  # fmt: skip


def test_an_unmatched_layer_reads_control_unmatched_and_never_decides() -> None:
    dl = _strong(DEFAULT) | _strong(ALL, seed=1)
    recs = _calls(dl)
    # Layer 3 misses the mass: only the all-layer scope edits it (the chosen layer is 2).
    ratios = {0: 1.0, 1: 0.95, 2: 1.05, 3: 0.5}
    ctrl = _control("marker_span", "identifiers", ratios)
    ctrl.loc[(ctrl["layer"] == 3) & (ctrl["sample_id"].isin(["s0", "s1", "s2"])), "mass_ratio"] = (
        1.0
    )
    out = classify(recs, None, control_match=ctrl)
    assert out.knockout(DEFAULT).effect == "predicted"
    k = out.knockout(ALL)
    assert k.effect == "unmatched" and out.cells[ALL] == "control unmatched"
    # Its effect against baseline is given in words instead, with the layer's share.
    assert "against baseline the knockout changed the name's call-site log p" in k.words
    assert "layer 3: 10% of 90 (prompt, draw) pairs" in k.words
    assert k.matched == pytest.approx(0.1)
    [sentence] = [f for f in findings([out]) if f"({ALL})" in f]
    assert '"control unmatched"' in sentence and "in the predicted direction" not in sentence
    # The table, by hand: share of (prompt, draw) pairs within 0.9-1.1 per edited layer.
    t = matching_table(ctrl, recs, [("m", "rust", DEFAULT), ("m", "rust", ALL)])
    assert list(t.loc[t["scope"] == DEFAULT, "layer"]) == [2]
    shares = dict(zip(t.loc[t["scope"] == ALL, "layer"], t.loc[t["scope"] == ALL, "matched share"],
                      strict=True))  # fmt: skip
    assert shares == {0: 1.0, 1: 1.0, 2: 1.0, 3: pytest.approx(9 / 90)}
    # Just at 80% the scope is matched; just below it is not.
    for n_ok, effect in ((24, "predicted"), (23, "unmatched")):
        c = _control("marker_span", "identifiers", {0: 1.0, 1: 1.0, 2: 1.0, 3: 0.5})
        c.loc[(c["layer"] == 3) & c["sample_id"].isin([f"s{i}" for i in range(n_ok)]),
              "mass_ratio"] = 1.1  # the band's edge counts as matched  # fmt: skip
        assert classify(recs, None, control_match=c).knockout(ALL).effect == effect


def test_the_inert_control_decides_and_draws_must_agree() -> None:
    dl = _strong(DEFAULT)
    out = classify(_calls(dl), None)
    k = out.knockout(DEFAULT)
    assert [d.control for d in k.draws] == ["inert_control"] * 3
    assert [d.control for d in k.compared] == ["random_control"] * 3
    assert k.effect == "predicted" and k.measure == "dlogp"
    # The deciding CI is scipy's paired BCa bootstrap at 1 - alpha/m, recomputed here.
    d0 = k.draws[0]
    diff = dl[ko()] - dl[ic()]
    ref = stats.bootstrap((diff,), np.mean, n_resamples=2000, method="BCa",
                          confidence_level=1 - 0.05 / out.family_size,
                          random_state=np.random.default_rng(0))  # fmt: skip
    assert d0.call.ci_adj == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)
    assert d0.call.effect == pytest.approx(diff.mean())
    # Draw 1 of the inert control moves the name like the knockout: the draws disagree.
    dl[ic(draw=1)] = dl[ko()] + np.random.default_rng(9).normal(0, 0.01, N)
    out = classify(_calls(dl), None)
    k = out.knockout(DEFAULT)
    assert [d.effect for d in k.draws] == ["predicted", "none", "predicted"]
    assert k.effect == "disagree" and out.cells[DEFAULT] == "draws disagree"
    assert k.words.startswith(
        "draws disagree (draw 0: in the predicted direction, draw 1: no effect"
    )


def test_a_scope_without_steering_reads_steering_not_run() -> None:
    dl = _strong(DEFAULT) | _strong(PLIP, seed=2)
    rng = np.random.default_rng(4)
    for arm in ("scale_2", "scale_calibrated"):
        dl[steer(arm)] = rng.normal(0.4, 0.1, N)
    recs = _calls(dl)
    sv = recs["condition"].str.startswith("scale_")
    recs.loc[sv, "attn_achieved"] = 3 * recs.loc[sv, "attn_baseline"]
    out = classify(recs, None)
    assert set(out.steering_by_scope) == {DEFAULT}
    assert out.cells[DEFAULT] == "causal and malleable"
    assert out.cells[PLIP] == "in the predicted direction (knockout); steering not run"
    assert "one-way" not in " ".join(out.cells.values())
    [sentence] = [f for f in findings([out]) if f"({PLIP})" in f]
    assert "[steering not run]" in sentence


@pytest.mark.parametrize("delta, reached", [(1e-6, True), (-1e-6, False)])
def test_reach_threshold_just_inside_and_just_outside(delta: float, reached: bool) -> None:
    dl = np.full(N, -(REACH_NATS + delta))
    same = pd.Series(True, index=range(N))  # no generation changed
    r = reach(np.full(N, 1e-3), same, 1e-12, np.ones(N, bool), dl)
    assert r.basis == "call-site" and r.reached is reached
    assert r.median_abs_dlogp == pytest.approx(REACH_NATS + delta)
    # The generation arm of the gate: exactly 10% changed reaches, one fewer does not.
    small = np.full(N, -0.01)
    for n_changed, expect in ((int(MIN_CHANGED * N), True), (int(MIN_CHANGED * N) - 1, False)):
        ident = pd.Series([False] * n_changed + [True] * (N - n_changed))
        assert reach(np.zeros(N), ident, 1e-12, None, small).reached is expect


@pytest.mark.parametrize("delta, effect", [(1e-4, "none"), (-1e-4, "unreached")])
def test_a_cell_below_the_gate_never_reads_no_effect(delta: float, effect: str) -> None:
    # Knockout and inert control move the name by the same tiny amount: equivalent to the
    # control, but "no effect" is only allowed when the knockout itself reaches the output.
    base = np.linspace(-1, 1, N) * 1e-3
    dl = {ko(): np.full(N, -(REACH_NATS + delta)) + base}
    dl |= {ic(draw=d): dl[ko()] + np.linspace(-1, 1, N)[::-1] * 1e-3 for d in range(2)}
    out = classify(_calls(dl), None)
    k = out.knockout(DEFAULT)
    assert k.effect == effect
    if effect == "unreached":
        assert out.cells[DEFAULT] == "does not reach the output"
        assert "epiphenomenal" not in out.cells[DEFAULT] and "no effect" not in k.words


def test_h2_fit_failed_is_logged_and_reported(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    g = _hinge_gens(seed=3)

    def broken(t: pd.DataFrame, cols: list[str]) -> None:
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(dose, "_gee", broken)
    with caplog.at_level(logging.WARNING, logger="analysis.dose"):
        r = dose.h2(g, model="m", language="rust")
    assert r is not None and r.status == "fit failed: trend GEE: LinAlgError: Singular matrix"
    assert r.verdict.startswith("fit failed: trend GEE") and math.isnan(r.slope_p)
    assert any(rec.levelno == logging.WARNING and "Singular matrix" in rec.getMessage()
               for rec in caplog.records)  # fmt: skip


def _hinge_gens(seed: int, n: int = 150, knot: float = 4.0) -> pd.DataFrame:
    """Rust generations whose preservation log-odds rise by 1.2 per doubling up to ``knot``,
    then stay flat (prompt effects shared across doses)."""
    rng = np.random.default_rng(seed)
    arms = {"baseline": 1.0, steer("scale_0.5"): 0.5, steer("scale_2"): 2.0,
            steer("scale_calibrated"): knot, steer("scale_calibrated_x2"): 2 * knot,
            steer("scale_16"): 4 * knot}  # fmt: skip
    u = rng.normal(0, 0.5, n)
    flags = {}
    for cond, dose_ in arms.items():
        x = min(math.log2(dose_), math.log2(knot))
        p = 1 / (1 + np.exp(-(-1.5 + 1.2 * x + u)))
        flags[cond] = list(rng.random(n) < p)
    g = generations_table(flags, language="rust")
    g.loc[g["condition"] == steer("scale_calibrated"), "factor"] = knot
    g.loc[g["condition"] == steer("scale_calibrated_x2"), "factor"] = 2 * knot
    return g


def test_the_plateau_hinge_fails_when_its_sign_or_slope_is_broken() -> None:
    """Rise up to the knot, flat beyond. Flipping the hinge's sign (max(0, knot - x)) or its
    slope combination (b1 - b2 beyond the knot) makes this test fail (verified by mutation)."""
    g = _hinge_gens(seed=11)
    r = dose.h2(g, model="m", language="rust")
    assert r is not None and r.knot == pytest.approx(4.0) and r.status == "estimated"
    # Independent reference: the hinge column built here by hand, fitted with statsmodels.
    t = g.assign(dose=g["factor"].where(g["condition"] != "baseline", 1.0).astype(float))
    t = t.assign(x=np.log2(t["dose"]), y=t["preserved"].astype(float))
    t["h"] = np.maximum(0.0, t["x"] - 2.0)
    fit = sm.GEE(t["y"], sm.add_constant(t[["x", "h"]]), groups=t["sample_id"],
                 family=sm.families.Binomial(), cov_struct=sm.cov_struct.Exchangeable()).fit()  # fmt: skip
    b1, b2 = float(fit.params["x"]), float(fit.params["h"])
    assert r.before[0] == pytest.approx(b1, rel=1e-6)
    assert r.after[0] == pytest.approx(b1 + b2, rel=1e-6, abs=1e-9)
    assert r.bend == pytest.approx(b2, rel=1e-6)
    # The shape itself: a significant rise up to the level, a bend down, flat beyond.
    assert r.before[0] > 0.5 and r.before[3] < 0.05
    assert r.bend < 0 and r.bend_p < 0.05
    assert r.after[1] < 0 < r.after[2]
    assert "plateaus beyond it" in r.verdict


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_run_dir(tmp_path_factory.mktemp("i28") / "r", seed=4, n=24, unmatched_layer=3)
    analyze(path)
    return path


def test_stats_csv_has_a_tost_row_for_every_equivalence_decision(run: Path) -> None:
    df = pd.read_csv(run / "stats.csv")
    eq = df[df["family"] == "equivalence"]
    tri = df[(df["family"] == "triangle") & df["note"].str.contains("deciding")]
    assert len(eq) == len(tri) > 0
    assert eq[["margin", "ci90_low", "ci90_high", "tost_p_low", "tost_p_high"]].notna().all().all()
    assert set(eq["margin"]) == {DLOGP_MARGIN}
    # One row recomputed: statsmodels' paired TOST on the raw call-site records.
    row = eq[(eq["language"] == "rust") & (eq["condition"] == ko())].iloc[0]
    draw = int(re.search(r"#(\d+)", row["note"]).group(1))
    recs = pd.read_parquet(run / "records.parquet")
    calls = recs[(recs["readout"] == "call") & (recs["language"] == "rust")]
    a = calls[calls["condition"] == ko()].set_index("sample_id")["dlogp_gold"]
    b = calls[calls["condition"] == ic(draw=draw)].set_index("sample_id")["dlogp_gold"][a.index]
    _, lo, hi = ttost_paired(a.to_numpy(), b.to_numpy(), -DLOGP_MARGIN, DLOGP_MARGIN)
    assert (row["tost_p_low"], row["tost_p_high"]) == pytest.approx((lo[1], hi[1]), rel=1e-9)


def test_tost_for_paired_proportions_by_hand() -> None:
    diff = paired_difference([True] * 90 + [False] * 10, [True] * 85 + [False] * 15)
    se = math.sqrt(((diff.b + diff.c) / 100 - diff.effect**2) / 100)
    lo, hi = tost_paired_proportions(diff, 0.1)
    assert lo == pytest.approx(stats.norm.sf((diff.effect + 0.1) / se))
    assert hi == pytest.approx(stats.norm.cdf((diff.effect - 0.1) / se))


def test_h1_holm_in_stats_csv_equals_statsmodels(run: Path) -> None:
    df = pd.read_csv(run / "stats.csv")
    h1 = df[(df["family"] == "h1") & df["counted"]]
    assert {"call-site Δlog p (bootstrap_mean_diff)", "log-PPL (bootstrap_mean_diff)",
            "preservation drop (bootstrap_mean_diff)",
            "calls_function drop (bootstrap_mean_diff)"} <= set(h1["test"])  # fmt: skip
    ref = multipletests(h1["pvalue"], alpha=0.05, method="holm")[1]
    np.testing.assert_allclose(h1["p_holm"], ref, rtol=1e-12)


def test_report_reads_unmatched_inert_check_and_readouts(run: Path) -> None:
    text = (run / "report.md").read_text()
    matrix = text.split("## Outcome matrix")[1].split("## Knockout by scope")[0]
    row = next(line for line in matrix.splitlines() if line.startswith(f"| {ALL} |"))
    assert row.count("control unmatched") == 2  # both languages
    assert f"| {PLIP} |" in matrix and "steering not run" in matrix
    assert any("control unmatched" in f for f in report_findings(run / "report.md"))
    inert = text.split("### The inert control's check")[1].split("## Does each edit")[0]
    assert "| rust | marker_span/identifiers/L |" in inert and "| yes |" in inert
    assert "**no**" not in inert
    assert "cannot move: next token is certain" in text
    knock = text.split("## Knockout by scope")[1].split("### Preservation")[0]
    rust_rows = [line for line in knock.splitlines() if "| rust |" in line]
    assert rust_rows and all("(cannot move: next token is certain)" in r for r in rust_rows)
    assert not any("(cannot move" in r for r in knock.splitlines() if "| python |" in r)
    cannot = text.split("## What this data cannot show")[1]
    assert "Controls unmatched at some edited layer" in cannot and "layer 3" in cannot
    assert "after_marker readout cannot move" in cannot
    assert "### Real vs false markers, every layer" in text


def test_old_run_degrades_with_a_note(tmp_path: Path) -> None:
    path = make_run_dir(tmp_path / "old", n=12, new_columns=False)
    analyze(path)
    text = (path / "report.md").read_text()
    assert "no call-site readout" in text and "no inert_control in this run" in text
    assert "_Records lack `readout`/`p_top1_baseline` (an old run)._" in text
    assert "_No inert_control rows with `target_rel_dev` (an old run)._" in text


def test_real_vs_false_markers_per_layer_in_the_edited_scope() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for lang in ("python", "rust"):
        for kind in ("test", "baseline"):
            for i in range(20):
                for layer in range(3):
                    louder = lang == "rust" and kind == "baseline" and layer == 1
                    for r, t, shift in (
                        ("marker", "plip", 0.5),
                        ("marker_span", "identifiers", 0.0),
                    ):
                        rows.append({"model": "m", "language": lang, "kind": kind, "rows": r,
                                     "targets": t, "layer": layer, "sample_id": f"{kind}{i}",
                                     "n_keys": 40 + i,
                                     "attn_level": rng.normal(0.05 + shift + 0.03 * louder, 0.005)})  # fmt: skip
    scan = pd.DataFrame(rows)
    res = real_vs_false(scan)
    assert len(res) == 2 * 3 * 2  # languages x layers x (raw, position-normalised)
    one = next(r for r in res if r.language == "rust" and r.layer == 1 and r.view == "level")
    sub = scan[
        (scan["language"] == "rust") & (scan["layer"] == 1) & (scan["rows"] == "marker_span")
    ]
    ref = stats.ttest_ind(sub.loc[sub["kind"] == "test", "attn_level"],
                          sub.loc[sub["kind"] == "baseline", "attn_level"], equal_var=False)  # fmt: skip
    assert one.test.statistic == pytest.approx(ref.statistic) and one.test.effect < 0
    assert false_markers_louder(res, "m") == "Rust at layer 1"
    norm = next(r for r in res if r.language == "rust" and r.layer == 1 and r.view != "level")
    ref = stats.ttest_ind(sub.loc[sub["kind"] == "test", "attn_level"] * sub.loc[sub["kind"] == "test", "n_keys"],
                          sub.loc[sub["kind"] == "baseline", "attn_level"] * sub.loc[sub["kind"] == "baseline", "n_keys"],
                          equal_var=False)  # fmt: skip
    assert norm.test.statistic == pytest.approx(ref.statistic)
    # The Python-vs-Rust row reads the edited scope, not the PLIP scope that sorts first.
    [raw, _] = observe(scan[scan["kind"] == "test"], {f"test{i}": 1 for i in range(20)})
    assert raw.scope == "marker_span → identifiers" and raw.python_mean < 0.2


def test_call_site_power_against_the_noncentral_t() -> None:
    rng = np.random.default_rng(2)
    dl = {ko(): rng.normal(-0.3, 0.3, N), ic(): rng.normal(-0.3, 0.3, N)}
    c = classify(_calls(dl), None).knockout(DEFAULT)
    d = dl[ko()] - dl[ic()]
    es, df = DLOGP_MARGIN / d.std(ddof=1), N - 1
    crit = stats.t.ppf(1 - 0.05 / 2, df)
    nc = es * math.sqrt(N)
    ref = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    assert c.call_power == pytest.approx(ref, rel=1e-6) and c.call_power < 0.5
    n80 = TTestPower().solve_power(effect_size=es, power=0.8, alpha=0.05)
    assert c.call_n80 == math.ceil(n80) and c.call_n80 > N


def test_new_rows_and_targets_are_read_and_worded() -> None:
    to_call, mentions = "to_call/identifiers/L", "marker_span/mentions/all"
    dl = _strong(to_call) | _strong(mentions, seed=5) | _strong(DEFAULT, seed=6)
    out = classify(_calls(dl), None)
    assert [k.scope for k in out.knockouts] == [DEFAULT, mentions, to_call]
    assert all(k.effect == "predicted" for k in out.knockouts)
    text = " ".join(findings([out]))
    assert "from every row from the marker to the call to every identifier token" in text
    assert "every identifier token and earlier mention of the name, at all layers" in text


def test_one_resample_set_gives_the_same_bca_intervals_at_every_level() -> None:
    d = np.random.default_rng(1).normal(0.1, 0.3, 60)
    levels = [0.95, 0.90, 1 - 0.05 / 7]
    got = paired_bca(d, levels)
    for lv in levels:
        ref = bootstrap_mean_diff(d, np.zeros(d.size), paired=True, n_resamples=2000, seed=0,
                                  confidence_level=lv)  # fmt: skip
        assert got[lv] == pytest.approx((ref.ci_low, ref.ci_high), rel=1e-12)
    assert paired_bca(np.full(5, -0.2), [0.9]) == {0.9: (-0.2, -0.2)}
