"""The benchmark harness: ``python -m benchmarks.run --quick`` end to end (slow) and its pieces."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import generation, models, timing, tlens  # noqa: E402


@pytest.mark.slow
def test_quick_run_writes_finite_positive_ratios(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--out",
            str(tmp_path),
            "--results",
            str(results),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "results_quick.json").read_text())
    for section in ("P1", "P2", "P3", "P4", "P5", "P6"):
        assert data[section], section
        for model, part in data[section].items():
            assert part["ratios"], (section, model)
            for key, value in part["ratios"].items():
                assert math.isfinite(value) and value > 0, (section, model, key, value)
    assert data["P3"]["larger"]["tokens_identical"] is True
    assert data["meta"]["allocator_env"]["MALLOC_MMAP_THRESHOLD_"]
    text = results.read_text()
    for heading in ("## Machine", "## P1", "## P2", "## P3 / P4", "## P5", "## P6", "## Targets"):
        assert heading in text
    assert not list(tmp_path.glob(".*.tmp-*"))  # the atomic writes left no temporary file


def test_scale_hook_matches_the_mass_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 6, 6, generator=gen), dim=-1)
    targets = [0, 2]
    f = 3.0
    out = tlens.scale_hook([(1, 5, targets)], f)(probs, None)
    m = probs[1, :, 5, targets].sum(-1)
    expected = f * m / (1 - m + f * m)  # docs/CONTRACT.md's Scale formula, by hand
    assert torch.allclose(out[1, :, 5, targets].sum(-1), expected, atol=1e-6)
    assert torch.allclose(out[1, :, 5].sum(-1), torch.ones(3), atol=1e-6)
    untouched = torch.ones(2, 3, 6, dtype=torch.bool)
    untouched[1, :, 5] = False
    assert torch.equal(out[:, :, :, 0][untouched], probs[:, :, :, 0][untouched])


def test_knockout_hook_sets_only_the_edges_to_minus_inf() -> None:
    scores = torch.zeros(2, 2, 4, 4)
    out = tlens.knockout_hook(
        [(0, 3, [1, 2])],
    )(scores, None)
    assert torch.isinf(out[0, :, 3, [1, 2]]).all()
    assert torch.isinf(out).sum() == 4
    assert scores.abs().sum() == 0  # input not modified


def test_hf_recompute_loop_matches_hf_generate() -> None:
    hf = models.random_qwen2(
        models.QwenSpec(hidden=32, layers=2, heads=2, kv_heads=1, intermediate=64, vocab=97)
    )
    prompt = tuple(range(5, 17))
    assert generation.hf_recompute(hf, prompt, 6) == generation.hf_generate(hf, prompt, 6)


def test_time_variants_round_robin_and_counts() -> None:
    calls: list[str] = []
    times = timing.time_variants(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b"] * 4
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    with pytest.raises(ValueError, match="repeats=0"):
        timing.time_variants({"a": lambda: None}, repeats=0)


def test_qwen_spec_rejects_bad_heads() -> None:
    with pytest.raises(ValueError, match="heads=3"):
        models.QwenSpec(hidden=64, layers=1, heads=3, kv_heads=1, intermediate=8, vocab=10)


@pytest.mark.slow
def test_p6_peak_is_the_childs_own_not_the_parents() -> None:
    from benchmarks import memory

    ballast = torch.ones(100_000_000)  # the parent holds ~400 MB more than any child needs
    res = memory.p6(quick=True, batch=2, seq=32, repeats=1)
    parent_kib = ballast.numel() * 4 // 1024
    for mode, runs in res["runs"].items():
        [r] = runs
        assert r["peak_rss_kib"] >= r["rss_before_kib"], mode
        # ru_maxrss inherits the parent's RSS through fork+exec; VmHWM does not.
        assert r["peak_rss_kib"] < r["ru_maxrss_kib"], (mode, r, parent_kib)
    del ballast
