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
    for section in ("P1", "P1b", "P3", "P4", "P5", "P6", "P7", "P8", "P9"):
        assert data[section], section
        for model, part in data[section].items():
            assert part["ratios"], (section, model)
            for key, value in part["ratios"].items():
                assert math.isfinite(value) and value > 0, (section, model, key, value)
    assert data["P3"]["larger"]["tokens_identical"] is True
    assert data["meta"]["allocator_env"]["MALLOC_MMAP_THRESHOLD_"]
    text = results.read_text()
    for heading in ("## Machine", "## P1", "## P1b", "## P3 / P4", "## P5", "## P6", "## P7",
                    "## P8", "## P9", "## Targets"):  # fmt: skip
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


def test_every_benchmark_module_imports() -> None:
    """A moved helper or a renamed engine function breaks here, not months later."""
    import importlib
    import pkgutil

    import benchmarks

    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))
    assert {"run", "gpu", "gen_batching", "profile_run", "sandbox"} <= set(names)
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        assert module.__doc__, name


def test_gpu_script_tiny_on_cpu(tmp_path: Path) -> None:
    """``benchmarks/gpu.py --tiny --device cpu``: every section of the GPU run on toy configs
    of the roadmap's families, so the prepared GPU command cannot rot."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--tiny", "--device", "cpu", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    data = json.loads((tmp_path / "gpu_tiny.json").read_text())
    assert data["errors"] == []
    from benchmarks import gpu

    assert set(data["models"]) == set(gpu.ROADMAP)
    for name, entry in data["models"].items():
        for case in entry["forward"]["cases"].values():
            for key, value in case["ratios"].items():
                assert math.isfinite(value) and value > 0, (name, key, value)
        for batch in entry["generation"]["batches"].values():
            assert batch["unedited_equals_hf"] is True, name  # plip without edits = HF generate
            assert all(v > 0 for v in batch["tokens_per_s"].values())
    study = data["study"]
    assert study["wall_s"] > 0 and study["generations"] > 0 and study["records"] > 0
    assert study["attention"]["policy"] == "auto"
    assert data["projection"]["four_models_s"] > 0
    text = (tmp_path / "GPU.md").read_text()
    for heading in ("## Forward", "## Generation", "## The whole study"):
        assert heading in text
    assert "--tiny" in text


def test_roadmap_configs_build_the_families_they_name() -> None:
    """The transcribed public configs give HF configs of the right family and size."""
    from transformers import AutoConfig

    from benchmarks import gpu

    params = {"Qwen2.5-Coder-7B": 7.6e9, "StarCoder2-7B": 7.2e9, "CodeGemma-7B": 8.5e9}
    for name, fields in gpu.ROADMAP.items():
        fields = dict(fields)
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        h, n = config.hidden_size, config.num_hidden_layers
        head = getattr(config, "head_dim", None) or h // config.num_attention_heads
        attn = h * head * (config.num_attention_heads * 2 + config.num_key_value_heads * 2)
        mlp = (3 if config.model_type != "starcoder2" else 2) * h * config.intermediate_size
        tied = getattr(config, "tie_word_embeddings", True)
        total = n * (attn + mlp) + config.vocab_size * h * (1 if tied else 2)
        assert abs(total - params[name]) / params[name] < 0.05, (name, total)


def test_intervene_in_generate_benchmark_measures_and_renders() -> None:
    """P9 on a tiny model: every variant's tokens are checked against plip_nn.generate inside
    ``measure_generate``, ratios are finite and positive, and the section renders them."""
    from archs import tiny_handle

    from benchmarks import intervene_overhead, run

    bm = models.BenchModel(key="tiny", description="tiny qwen2", handle=tiny_handle("qwen2"))
    res = intervene_overhead.measure_generate(bm, prompt_len=12, n_new=3, repeats=1)
    assert set(res["ratios"]) == {
        "markers_1_intervene",
        "markers_1_intervene_unverified",
        "continuation_1_intervene",
        "continuation_1_intervene_unverified",
        "continuation_1_bare_nnsight_edit",
    }
    assert all(math.isfinite(v) and v > 0 for v in res["ratios"].values())
    text = "\n".join(run.render_p9({"tiny": res}))
    assert "## P9" in text and text.count("| tiny |") == 5
