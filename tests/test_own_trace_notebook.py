"""The own-trace example notebook (knockout + logit lens via plip_nn.intervene, in one pass and
kept on while the model samples) runs headlessly."""

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
    summary = _result(nb, 'summary = {"kl"')
    assert summary["kl"] > 0  # the knockout changes the marker row's prediction
    assert summary["levels_after"] and all(v == 0.0 for v in summary["levels_after"])
    lens_table = "".join(o.get("text", "") for o in nb.cells[2]["outputs"])
    assert "baseline" in lens_table and "knockout" in lens_table
    # The generation section: the knockout kept on at every sampled step, a lens per step.
    gen = _result(nb, "gen_summary = {")
    assert gen["steps_edited"] == list(range(16))
    assert gen["max_level_after"] == 0.0
    [gen_cell] = [c for c in nb.cells if "gen_summary = {" in c.source]
    gen_table = "".join(o.get("text", "") for o in gen_cell["outputs"])
    assert gen_table.count("\n") == 1 + 16  # header + one row per step


def _result(nb, marker: str) -> dict:
    """The ``execute_result`` of the one code cell whose source contains ``marker``."""
    [cell] = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    [result] = [o for o in cell["outputs"] if o["output_type"] == "execute_result"]
    return ast.literal_eval(result["data"]["text/plain"])
