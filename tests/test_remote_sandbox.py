"""The in-trace module runs with every import but torch and math blocked (NDIF's sandbox).

``remote="local"`` does not enforce NDIF's import whitelist, so this test loads
``plip_nn/kernels.py`` into a namespace whose ``__import__`` refuses everything except
``torch`` and ``math`` and whose builtins lack ``open``/``exec``/``eval``/``compile``, then runs
its functions -- including a full traced pass and a generation pass on a tiny model.
"""

import ast
import builtins
import types
from pathlib import Path

import pytest
import torch
from archs import tiny_handle

import plip_nn

KERNELS = Path(plip_nn.__file__).parent / "kernels.py"
ALLOWED = {"torch", "math"}
FORBIDDEN_BUILTINS = ("open", "exec", "eval", "compile", "input", "breakpoint", "help", "exit")


def _sandboxed_kernels() -> types.ModuleType:
    real_import = builtins.__import__

    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name.split(".")[0] not in ALLOWED:
            raise ImportError(f"sandbox: import of {name!r} is blocked")
        return real_import(name, globals, locals, fromlist, level)

    safe = {k: v for k, v in vars(builtins).items() if k not in FORBIDDEN_BUILTINS}
    safe["__import__"] = guarded
    module = types.ModuleType("sandboxed_kernels")
    module.__dict__["__builtins__"] = safe
    code = compile(KERNELS.read_text(), str(KERNELS), "exec")
    exec(code, module.__dict__)
    return module


def test_kernels_imports_only_torch_and_math():
    tree = ast.parse(KERNELS.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0] or ".")
    assert names <= ALLOWED, names


def test_sandbox_blocks_other_imports():
    k = _sandboxed_kernels()
    with pytest.raises(ImportError, match="blocked"):
        exec("import json", k.__dict__)


def test_kernels_run_in_sandbox():
    k = _sandboxed_kernels()
    scores = torch.randn(1, 2, 5, 5).masked_fill(
        torch.ones(5, 5, dtype=torch.bool).triu(1), -3.4e38
    )
    probs = torch.softmax(scores, -1)
    out = k.knockout_scores(scores, [0, None, [4], [1, 2], 0, 0.0])
    assert torch.softmax(out, -1)[0, :, 4, [1, 2]].abs().max() == 0
    group = [0, None, [4], [1], 1, 2.0]
    out = k.scale_probs(probs, group)
    st = k.verify_groups(
        scores[[0], :, [4], :], out[[0], :, [4], :], [group], [0], [4], -1e38, 1e-5, 1e-38
    )
    assert st[0, k.ST_ERROR_RATIO] <= 1
    out = k.set_value_probs(probs, scores, [0, [1], [3], [0], 2, 0.3])
    assert out[0, 1, 3, 0].item() == pytest.approx(0.3)


def test_traced_and_generation_pass_in_sandbox():
    k = _sandboxed_kernels()
    handle = tiny_handle("qwen2")
    sites = [s.plain() for s in handle.sites]
    ids = torch.tensor([list(range(3, 13))])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    group = [0, None, [9], [1, 2], 0, 0.0]
    plan = {1: {"edits": [group], "verify": [group], "reads": [[0, [9], [1, 2]]]}}
    with torch.inference_mode():
        out, _lp = k.traced_pass(handle.nn, inputs, sites, plan, None, True, False)
        assert out["stats/1"][0, k.ST_LEVEL_AFTER].item() == 0.0  # achieved level, knockout
        assert out["stats/1"][0, k.ST_ERROR_RATIO].item() <= 1.0
        assert out["reads/1"][0, k.RD_LEVEL].item() == 0.0
        rows = [
            {
                "edits": [[[0, 1], None, [1, 2], 1, 2.0]],
                "sources": [8],
                "policy": "continuation",
                "markers": [],
            }
        ]
        seqs, stats = k.generation_pass(
            handle.nn,
            inputs,
            sites,
            "model.embed_tokens",
            rows,
            3,
            {"do_sample": False, "pad_token_id": 0},
        )
    assert seqs.shape == (1, 13)
    assert len(stats) == 3 * 2  # 3 steps x 2 layers


def test_generation_walk_in_sandbox():
    """The step loop of ``intervene`` under a user's generate (``walk_steps``) with only torch
    and math importable: every step edited and verified (continuation)."""
    k = _sandboxed_kernels()
    handle = tiny_handle("qwen2")
    sites = [s.plain() for s in handle.sites]
    ids = torch.tensor([list(range(3, 13))])
    rows = [{"edits": [[[0, 1], None, [1, 2], 0, 0.0]], "sources": [8],
             "policy": "continuation", "markers": []}]  # fmt: skip
    schedule: dict = {}
    stats: list = []
    with torch.inference_mode(), handle.nn.generate(
        {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
        max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0,
    ) as tracer:  # fmt: skip
        walk = k.walk_steps(handle.nn, sites, "model.embed_tokens", rows, [0, 1],
                            tracer.iter[:3], 10, "softmax", True, schedule, stats)  # fmt: skip
        for _step in walk:
            pass
    assert schedule == {0: [[8, 9]], 1: [[0]], 2: [[0]]}
    assert len(stats) == 3 * 2  # 3 steps x 2 layers
    for t in stats:
        assert (t[:, k.GEN_STATS + k.ST_LEVEL_AFTER] == 0).all()
        assert (t[:, k.GEN_STATS + k.ST_ERROR_RATIO] <= 1).all()
