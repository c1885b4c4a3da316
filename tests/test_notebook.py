"""The triangle notebook runs headlessly on a small synthetic run directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from synthetic_runs import make_run_dir

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
    [table] = [o for o in nb.cells[-1]["outputs"] if o["output_type"] == "execute_result"]
    recs = pd.read_parquet(run / "records.parquet")
    gens = pd.read_parquet(run / "generations.parquet")
    noise = pd.read_parquet(run / "noise_floor.parquet")
    text = table["data"]["text/plain"]
    for outcome in classify_all(recs, gens, noise):
        for k in outcome.knockouts:
            assert k.scope in text and outcome.cells[k.scope][:12] in text
