"""The own-trace example notebook (knockout + logit lens via plip_nn.intervene) runs headlessly."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "own_trace.ipynb"


def test_own_trace_notebook_executes(tmp_path: Path) -> None:
    import nbclient
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail(
            f"no python3 kernelspec; run `{sys.executable} -m ipykernel install --sys-prefix`"
        )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env={**os.environ})
    [result] = [o for o in nb.cells[-1]["outputs"] if o["output_type"] == "execute_result"]
    summary = ast.literal_eval(result["data"]["text/plain"])
    assert summary["kl"] > 0  # the knockout changes the marker row's prediction
    assert summary["levels_after"] and all(v == 0.0 for v in summary["levels_after"])
    lens_table = "".join(o.get("text", "") for o in nb.cells[2]["outputs"])
    assert "baseline" in lens_table and "knockout" in lens_table
