"""analyze(run_dir) on synthetic run dirs: stats.csv, report.md, figures that are real PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic_runs import KO, ic, make_run_dir

from analysis.report import STATS_COLUMNS, analyze, cli_analyze, report_findings


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_run_dir(
        tmp_path_factory.mktemp("run") / "r", seed=1, n=30, models=("tiny-a", "tiny-b")
    )
    analyze(path)
    return path


def test_outputs_exist_and_figures_are_real_pngs(run_dir: Path) -> None:
    assert (run_dir / "report.md").stat().st_size > 2000
    names = {p.name for p in (run_dir / "figures").glob("*.png")}
    assert names == {
        "layer_scan.png",
        "knockout_by_scope.png",
        "kl_by_scope.png",
        "dose_response.png",
        "outcome_matrix.png",
        "kl_vs_removed_mass.png",
    }
    for png in (run_dir / "figures").glob("*.png"):
        assert png.stat().st_size > 5_000, png
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
        assert float(np.std(img[..., :3])) > 0.01, f"{png} is (nearly) constant"
    assert not list(run_dir.glob(".*")) and not list(
        (run_dir / "figures").glob(".*")
    )  # no temp files


def test_stats_csv_schema_and_values(run_dir: Path) -> None:
    df = pd.read_csv(run_dir / "stats.csv")
    assert list(df.columns) == STATS_COLUMNS
    assert set(df["family"]) == {
        "observe", "markers", "knockout_kl", "callsite", "preservation", "manipulation",
        "triangle", "compared", "equivalence", "h1", "h2", "power",
    }  # fmt: skip
    # Independent recomputation of one Wilcoxon row from the raw records: the secondary KL
    # after the marker, knockout vs the inert (deciding) control's draw 0.
    recs = pd.read_parquet(run_dir / "records.parquet")
    sub = recs[(recs["model"] == "tiny-b") & (recs["language"] == "rust")
               & (recs["readout"] == "after_marker")]  # fmt: skip
    ko = sub[sub["condition"] == KO].set_index("sample_id")["kl"]
    rc = sub[sub["condition"] == ic()].set_index("sample_id")["kl"].loc[ko.index]
    row = df[(df["family"] == "knockout_kl") & (df["model"] == "tiny-b") & (df["language"] == "rust")
             & (df["condition"] == KO) & (df["test"] == "wilcoxon_signed_rank")].iloc[0]  # fmt: skip
    assert row["pvalue"] == pytest.approx(stats.wilcoxon(ko, rc).pvalue, rel=1e-9)
    # Corrections are within (model, language, family), over the counted rows only.
    fam = df[(df["family"] == "preservation") & (df["model"] == "tiny-a")
             & (df["language"] == "python") & df["counted"]]  # fmt: skip
    gens = pd.read_parquet(run_dir / "generations.parquet")
    n_cond = gens.loc[gens["model"] == "tiny-a", "condition"].nunique() - 1
    assert len(fam) == n_cond and (fam["family_size"] == n_cond).all()
    np.testing.assert_allclose(fam["p_bonferroni"], np.minimum(1, fam["pvalue"] * len(fam)))
    assert (fam["p_holm"] <= fam["p_bonferroni"] + 1e-12).all()
    # Observe: Welch python vs rust equals scipy on the scan at the chosen layer (2), in the
    # edited scope (marker_span -> identifiers), not the PLIP scope that sorts first.
    scan = pd.read_parquet(run_dir / "layer_scan.parquet")
    at = scan[(scan["layer"] == 2) & (scan["model"] == "tiny-a") & (scan["kind"] == "test")
              & (scan["rows"] == "marker_span")]  # fmt: skip
    ref = stats.ttest_ind(at.loc[at["language"] == "python", "attn_level"],
                          at.loc[at["language"] == "rust", "attn_level"], equal_var=False)  # fmt: skip
    obs = df[(df["family"] == "observe") & (df["model"] == "tiny-a")
             & (df["test"] == "welch_t (level)")].iloc[0]  # fmt: skip
    assert obs["statistic"] == pytest.approx(ref.statistic)
    norm = at.assign(v=at["attn_level"] * at["n_keys"])
    ref = stats.ttest_ind(norm.loc[norm["language"] == "python", "v"],
                          norm.loc[norm["language"] == "rust", "v"], equal_var=False)  # fmt: skip
    obs = df[(df["family"] == "observe") & (df["model"] == "tiny-a")
             & df["test"].str.contains("position-normalised")].iloc[0]  # fmt: skip
    assert obs["statistic"] == pytest.approx(ref.statistic)


def test_report_sections(run_dir: Path) -> None:
    text = (run_dir / "report.md").read_text()
    assert text.index("## Findings") < text.index("## Design") < text.index("## Outcome matrix")
    for needle in ("## Knockout by scope", "## Does each edit reach the output?",
                   "## Steering by scope", "## H1:", "## H2:", "## Observe",
                   "## What this data cannot show", "## Tests and corrections", "Bonferroni",
                   "Holm", "![outcome_matrix](figures/outcome_matrix.png)", "tiny-a / python",
                   "tiny-b / rust", "causal and malleable", "**Layer, held out.**",
                   "only the *first* generated test is scored", "KL noise floor"):  # fmt: skip
        assert needle in text, needle
    findings = report_findings(run_dir / "report.md")
    assert 3 <= len(findings) <= 2 * 8  # two models: up to 8 sentences each
    assert all("[tiny-" in f for f in findings)


def test_null_run_is_not_called_causal(tmp_path: Path) -> None:
    path = make_run_dir(tmp_path / "null", seed=2, n=30, strong_knockout=False)
    analyze(path)
    text = (path / "report.md").read_text()
    verdicts = text.split("## Outcome matrix")[1].split("- Steering")[0]
    assert "| scope |" in verdicts
    assert "causal and malleable" not in verdicts and "causal one-way" not in verdicts


def test_partial_run_only_layer_scan(tmp_path: Path) -> None:
    src = make_run_dir(tmp_path / "full", n=12)
    part = tmp_path / "scan_only"
    part.mkdir()
    (part / "layer_scan.parquet").write_bytes((src / "layer_scan.parquet").read_bytes())
    analyze(part)
    assert [p.name for p in (part / "figures").glob("*.png")] == ["layer_scan.png"]
    assert "not classified" in (part / "report.md").read_text()


def test_bad_run_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        analyze(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no non-empty records\.parquet"):
        analyze(tmp_path / "empty")
    assert cli_analyze(tmp_path / "empty") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "empty") in err


def test_cli_success(tmp_path: Path) -> None:
    path = make_run_dir(tmp_path / "ok", n=12)
    assert cli_analyze(str(path)) == 0
    assert (path / "stats.csv").exists()


def test_analysis_never_imports_a_model_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys, analysis, analysis.report, analysis.figures, analysis.preservation\n"
        "stack = ('torch', 'transformers', 'nnsight')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in stack]\n"
        "engine = sorted(m for m in sys.modules if m.split('.')[0] == 'plip_nn')\n"
        "assert not bad, bad\n"
        "assert engine == ['plip_nn', 'plip_nn.atomic', 'plip_nn.codesrc', 'plip_nn.scope'], engine"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_triangle_rows_carry_the_p_the_decision_used(run_dir: Path) -> None:
    from analysis.triangle import classify_all

    df = pd.read_csv(run_dir / "stats.csv")
    tri = df[df["family"] == "triangle"]
    recs = pd.read_parquet(run_dir / "records.parquet")
    gens = pd.read_parquet(run_dir / "generations.parquet")
    checked = 0
    ctrl = pd.read_parquet(run_dir / "control_match.parquet")
    for o in classify_all(recs, gens, control_match=ctrl):
        for k in o.knockouts:
            for d in k.draws:
                row = tri[(tri["model"] == o.model) & (tri["language"] == o.language)
                          & (tri["condition"] == f"knockout@{k.scope}")
                          & tri["note"].str.contains(f"control draw {d.draw}:")]  # fmt: skip
                assert len(row) == 1
                # The call-site endpoint decides by its CI at 1 - alpha/m: the row carries it.
                assert d.measure == "dlogp" and np.isnan(d.p_adjusted)
                assert row["ci_low"].iloc[0] == pytest.approx(d.call.ci95[0], rel=1e-12)
                assert (
                    f"deciding {100 * (1 - o.alpha / o.family_size):.3g}% CI" in row["note"].iloc[0]
                )
                checked += 1
        for st in o.steering_by_scope.values():
            for t in st.tests:
                if t.role == "deciding":
                    row = tri[(tri["model"] == o.model) & (tri["language"] == o.language)
                              & (tri["condition"] == t.condition)]  # fmt: skip
                    assert row["effect"].iloc[0] == pytest.approx(t.call.effect, rel=1e-12)
                    checked += 1
    assert checked >= 2 * 2 * 3 * 2  # 2 models x 2 languages x 3 scopes x 2 draws


def test_report_is_readable(run_dir: Path) -> None:
    text = (run_dir / "report.md").read_text()
    matrix = text.split("## Outcome matrix")[1].split("## Knockout by scope")[0]
    assert "None" not in matrix and "False" not in matrix and "True" not in matrix
    for needle in ("| torch | 2.13.0 |", "| transformers | 5.0.1 |", "| nnsight | 0.8.1 |",
                   "| started | 2026-01-01", "90% CI", "power (margin)", "Δ over draws",
                   "marker_span/identifiers/L", "marker/plip/L"):  # fmt: skip
        assert needle in text, needle


def test_report_pairing_rejects_a_duplicate_row(tmp_path: Path) -> None:
    path = make_run_dir(tmp_path / "dup", n=12)
    gens = pd.read_parquet(path / "generations.parquet")
    pd.concat([gens, gens.iloc[[3]]]).to_parquet(path / "generations.parquet")
    with pytest.raises(ValueError, match=r"sample 's3' appears more than once"):
        analyze(path)
    assert not (path / "report.md").exists()


def test_several_runs_one_report(tmp_path: Path) -> None:
    a = make_run_dir(tmp_path / "a", seed=1, n=20, models=("tiny-a",))
    b = make_run_dir(tmp_path / "b", seed=2, n=20, models=("tiny-b",))
    out = tmp_path / "both"
    assert cli_analyze([str(a), str(b)], out=str(out)) == 0
    text = (out / "report.md").read_text()
    matrix = text.split("## Outcome matrix")[1].split("## Knockout by scope")[0]
    assert "| scope | tiny-a / python | tiny-a / rust | tiny-b / python | tiny-b / rust |" in matrix
    df = pd.read_csv(out / "stats.csv")
    assert set(df["model"]) == {"tiny-a", "tiny-b"}
    assert (out / "figures" / "outcome_matrix.png").exists()
    assert not (a / "report.md").exists()
    with pytest.raises(ValueError, match="pass --out"):
        analyze([a, b])
    with pytest.raises(ValueError, match="model 'tiny-a' is in both"):
        analyze([a, a], out=tmp_path / "x")


def test_report_states_the_control_mass_match(run_dir: Path) -> None:
    text = (run_dir / "report.md").read_text()
    section = text.split("## The random controls")[1].split("## Figures")[0]
    ctl = pd.read_parquet(run_dir / "control_match.parquet")
    g = ctl[(ctl["model"] == "tiny-a") & (ctl["language"] == "rust") & (ctl["rows"] == "marker")]
    within = f"{100 * g['within_tolerance'].mean():.0f}%"
    median = f"{g['mass_ratio'].median():.3g}"
    assert f"| tiny-a | rust | marker → plip | {len(g)} | {median} | {within} |" in section
    assert "attention sink" in section


def test_source_table_counts_samples_and_baseline_preservation_per_source() -> None:
    import pandas as pd

    from analysis.report_tables import source_table

    rec = pd.DataFrame({
        "model": "m", "language": ["python"] * 5 + ["rust"] * 2,
        "corpus_source": ["hand-written", "hand-written", "mined", "mined", "mined",
                          "hand-written", "hand-written"],
        "kind": ["test", "generation", "test", "generation", "generation", "test", "test"],
        "condition": "baseline",
    })  # fmt: skip
    rec = pd.concat([rec, rec.assign(condition="knockout@x")])  # other conditions don't count
    gens = pd.DataFrame({
        "model": "m", "language": "python",
        "corpus_source": ["hand-written", "mined", "mined", "mined", "mined"],
        "condition": ["baseline"] * 4 + ["knockout@x"],
        "decoding": ["greedy", "greedy", "greedy", "sampled", "greedy"],
        "preserved": [True, True, False, False, False],
        "calls_function": [True, True, True, False, False],
    })  # fmt: skip
    out = source_table(rec, gens).set_index(["language", "corpus_source"])
    assert out.loc[("python", "hand-written"), ["tests", "prompts"]].tolist() == [1, 1]
    assert out.loc[("python", "mined"), ["tests", "prompts", "n_generated"]].tolist() == [1, 2, 2]
    assert out.loc[("python", "mined"), "baseline preserved %"] == "50.0"  # greedy baseline only
    assert out.loc[("python", "mined"), "baseline calls %"] == "100.0"
    assert out.loc[("rust", "hand-written"), ["tests", "prompts", "n_generated"]].tolist() == [
        2,
        0,
        0,
    ]
    old = source_table(rec.drop(columns="corpus_source"), None)  # a run before the column
    assert set(old["corpus_source"]) == {"not recorded"}


def test_a_mined_sample_keeps_its_provenance_and_reads_as_mined(tmp_path) -> None:
    import json

    from plip_nn.corpus import load_corpus
    from plip_nn.corpus.io import DEFAULT_CORPUS_PATH

    data = json.loads(DEFAULT_CORPUS_PATH.read_text(encoding="utf-8"))
    entry = dict(data["python_doctest"][0], provenance={"package": "p", "file": "f.py", "line": 3})
    data["python_doctest"][0] = entry
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    corpus = load_corpus(path)
    mined = next(s for s in corpus.select() if s.id == entry["id"])
    assert mined.source == "mined" and mined.to_json()["provenance"]["line"] == 3
    others = [s for s in corpus.select() if s.id != entry["id"]]
    assert {s.source for s in others} == {"hand-written"}
    assert all("provenance" not in s.to_json() for s in others)
