"""The triangle notebook runs headlessly on a small synthetic run directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from synthetic_runs import make_run_dir

from analysis.scopes import with_scope
from analysis.triangle import classify_all

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "notebooks" / "triangle.ipynb"


def test_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbclient
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail(
            f"no python3 kernelspec; run `{sys.executable} -m ipykernel install --sys-prefix`"
        )
    run = make_run_dir(tmp_path / "run", n=12)
    gens_path = run / "generations.parquet"
    gens = pd.read_parquet(gens_path)
    gens["arity"] = gens["sample_id"].str.extract(r"(\d+)$")[0].astype(int) % 2 + 1  # 1 or 2
    gens.to_parquet(gens_path)
    monkeypatch.setenv("PLIP_RUN_DIR", str(run))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env={**os.environ})
    images = [
        out for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if "image/png" in out.get("data", {})
    ]  # fmt: skip
    assert len(images) == 5  # layer scan, KL by scope, dose-response, outcome matrix, scopes
    [table] = [o for o in nb.cells[-3]["outputs"] if o["output_type"] == "execute_result"]
    recs = pd.read_parquet(run / "records.parquet")
    gens = pd.read_parquet(run / "generations.parquet")
    noise = pd.read_parquet(run / "noise_floor.parquet")
    text = table["data"]["text/plain"]
    for outcome in classify_all(recs, gens, noise):
        for k in outcome.knockouts:
            assert k.scope in text and outcome.cells[k.scope][:12] in text
    _check_question(nb, run)


def _check_question(nb, run: Path) -> None:
    """The worked question (the last cell): preservation change and Δlog p per language, scope
    and arity equal a plain pandas recomputation, on the measure the notebook's rule picks:
    dlogp_gold where the generation prompts' records carry it, else dlogp_top1."""
    [cell] = [
        c for c in nb.cells if c.cell_type == "code" and "question = pd.DataFrame" in c.source
    ]
    [out] = [o for o in cell["outputs"] if o["output_type"] == "execute_result"]
    text = out["data"]["text/plain"]
    gens = with_scope(pd.read_parquet(run / "generations.parquet"))
    recs = with_scope(pd.read_parquet(run / "records.parquet"))
    on_prompts = recs[recs["kind"] == "generation"]
    gold = "dlogp_gold" in on_prompts and on_prompts["dlogp_gold"].notna().any()
    measure = "dlogp_gold" if gold else "dlogp_top1"
    assert f"mean {measure}" in text and "preservation change [pp]" in text
    base = gens[gens["condition"] == "baseline"].set_index(["language", "sample_id"])["preserved"]
    ko = gens[gens["arm"] == "knockout"]
    lines = text.splitlines()[1:]
    assert len(lines) == ko.groupby(["language", "scope", "arity"]).ngroups
    for (lang, scope, arity), sub in ko.groupby(["language", "scope", "arity"]):
        s = sub.set_index("sample_id")["preserved"].astype(float)
        pp = 100 * float((s - base.loc[lang].loc[s.index].astype(float)).mean())
        r = recs[(recs["condition"] == sub["condition"].iloc[0]) & (recs["language"] == lang)]
        dl = float(r[r["sample_id"].isin(s.index)][measure].mean())
        want = f"{lang} {scope} {arity} {len(s)} {round(pp, 1)}"
        [row] = [" ".join(ln.split()[1:6]) for ln in lines
                 if ln.split()[1:4] == [lang, scope, str(arity)]]  # fmt: skip
        assert row == want, (row, want)
        assert any(ln.split()[1:4] == [lang, scope, str(arity)] and f"{round(dl, 4)}" in ln
                   for ln in lines)  # fmt: skip
