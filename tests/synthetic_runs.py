"""Synthetic run directories and tables (test-only; the library has no fake-data code)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

CONDITIONS = {
    "baseline": ("none", np.nan, 2),
    "knockout": ("knockout", np.nan, 2),
    "knockout_all_layers": ("knockout", np.nan, -1),
    "random_control": ("knockout", np.nan, 2),
    "scale_2": ("scale", 2.0, 2),
    "set_value_calibrated": ("set_value", 0.09, 2),
    "scale_6": ("scale", 6.0, 2),
}
DOSE = {"scale_0.5": 0.5, "scale_1": 1.0, "scale_3": 3.0, "scale_4": 4.0}


def generations_table(
    preserved: Mapping[str, Sequence[bool]], *, model: str = "m", language: str = "rust"
) -> pd.DataFrame:
    """One row per (sample, condition) with the given ``preserved`` flags (sample i = index i)."""
    rows = []
    for cond, flags in preserved.items():
        op, factor, layer = CONDITIONS[cond]
        for i, flag in enumerate(flags):
            rows.append(
                {
                    "experiment": "triangle",
                    "condition": cond,
                    "op": op,
                    "factor": factor,
                    "model": model,
                    "sample_id": f"s{i}",
                    "language": language,
                    "layer": layer,
                    "seed": 0,
                    "prompt": "p",
                    "text": "t",
                    "n_new_tokens": 10,
                    "stop_reason": "eos",
                    "attn_achieved": np.nan if cond == "baseline" else 0.05,
                    "function_name": "f",
                    "arity": 1,
                    "calls_function": bool(flag),
                    "arity_ok": bool(flag),
                    "valid": True,
                    "preserved": bool(flag),
                    "executes": pd.NA,
                }
            )
    out = pd.DataFrame(rows)
    out["executes"] = out["executes"].astype("boolean")
    return out


def records_table(
    kl: Mapping[str, Sequence[float]],
    *,
    model: str = "m",
    language: str = "rust",
    attn_baseline: float = 0.03,
    seed: int = 0,
) -> pd.DataFrame:
    """records.parquet rows: per condition a KL per sample; attention follows the edit."""
    rng = np.random.default_rng(seed)
    rows = []
    n = len(next(iter(kl.values())))
    base_level = np.clip(rng.normal(attn_baseline, attn_baseline / 4, n), 1e-4, 0.5)
    for cond, values in kl.items():
        op, factor, layer = CONDITIONS.get(cond, ("scale", DOSE.get(cond, np.nan), 2))
        for i, value in enumerate(values):
            b = float(base_level[i])
            if op == "knockout":
                achieved = 0.0
            elif op == "scale":
                m = 3 * b  # three target edges
                achieved = b * factor / (1 - m + factor * m)
            elif op == "set_value":
                achieved = float(factor)
            else:
                achieved = b
            ppl = 5.0 + rng.random()
            rows.append(
                {
                    "experiment": "triangle",
                    "condition": cond,
                    "op": op,
                    "factor": factor,
                    "model": model,
                    "sample_id": f"s{i}",
                    "language": language,
                    "kind": "test",
                    "layer": layer,
                    "n_edges": 0 if op == "none" else 3,
                    "attn_baseline": b,
                    "attn_achieved": achieved,
                    "mass_baseline": 3 * b,
                    "mass_achieved": 3 * achieved,
                    "mass_removed": 3 * (b - achieved) if op == "knockout" else np.nan,
                    "kl": float(value),
                    "top1_same": bool(value < 0.05),
                    "ppl_baseline": ppl,
                    "ppl_condition": ppl + float(value),
                    "edit": "[]",
                    "seed": 0,
                }
            )
    return pd.DataFrame(rows)


def make_run_dir(
    path: Path,
    *,
    seed: int = 0,
    n: int = 30,
    models: Sequence[str] = ("tiny-a",),
    n_layers: int = 4,
    strong_knockout: bool = True,
) -> Path:
    """A complete synthetic run dir: records, layer scan, generations, calibration, config, manifest."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    recs, scans, gens = [], [], []
    for model in models:
        for lang, level in (("python", 0.09), ("rust", 0.025)):
            ko_shift = 0.4 if strong_knockout else 0.0
            kl = {
                "baseline": np.zeros(n),
                "knockout": rng.gamma(2.0, 0.05, n) + ko_shift,
                "knockout_all_layers": rng.gamma(2.0, 0.1, n) + 2 * ko_shift,
                "random_control": rng.gamma(2.0, 0.05, n),
                "scale_2": rng.gamma(2.0, 0.03, n),
                "set_value_calibrated": rng.gamma(2.0, 0.04, n),
                "scale_6": rng.gamma(2.0, 0.08, n),
                **{c: rng.gamma(2.0, 0.02 * f, n) for c, f in DOSE.items()},
            }
            recs.append(
                records_table(kl, model=model, language=lang, attn_baseline=level, seed=seed)
            )
            for s in range(n):
                for layer in range(n_layers):
                    lvl = float(np.clip(rng.normal(level * (1 + layer) / 2, level / 5), 0, 1))
                    scans.append(
                        {
                            "model": model,
                            "sample_id": f"s{s}",
                            "language": lang,
                            "kind": "test",
                            "layer": layer,
                            "attn_level": lvl,
                            "attn_mass": 3 * lvl,
                            "n_targets": 3,
                        }
                    )
            p = {
                "baseline": 0.6,
                "knockout": 0.15 if strong_knockout else 0.6,
                "knockout_all_layers": 0.1,
                "random_control": 0.6,
                "scale_2": 0.75,
                "set_value_calibrated": 0.9,
                "scale_6": 0.5,
            }
            base = rng.random(n) < p["baseline"]
            flags = {
                c: np.where(rng.random(n) < 0.8, base, rng.random(n) < q)
                if c != "baseline"
                else base
                for c, q in p.items()
            }
            flags = (
                {
                    c: (base & (rng.random(n) < q / 0.6))
                    | (~base & (rng.random(n) < max(q - 0.5, 0) * 2))
                    if c != "baseline"
                    else base
                    for c, q in p.items()
                }
                if strong_knockout
                else flags
            )
            g = generations_table(
                {c: list(v) for c, v in flags.items()}, model=model, language=lang
            )
            g["executes"] = pd.array(
                np.where(g["preserved"], rng.random(len(g)) < 0.8, False), dtype="boolean"
            )
            gens.append(g)
    pd.concat(recs).reset_index(drop=True).to_parquet(path / "records.parquet")
    control = []
    for model in models:
        for lang in ("python", "rust"):
            for s in range(n):
                target = float(rng.uniform(0.05, 0.6))
                ratio = float(rng.choice([1.0, 0.95, 1.08, 0.5]))
                control.append({
                    "model": model, "sample_id": f"s{s}", "language": lang, "kind": "test",
                    "layer": 2, "n_edges": 3, "target_mass": target,
                    "control_mass": target * ratio, "mass_ratio": ratio,
                    "within_tolerance": abs(ratio - 1) <= 0.1, "tolerance": 0.1,
                    "token0_share": float(rng.uniform(0.2, 0.7)),
                    "targets_include_token0": bool(s % 3), "targets": "[0, 1, 2]",
                    "control_keys": "[3, 4, 5]",
                })  # fmt: skip
    pd.DataFrame(control).to_parquet(path / "control_match.parquet")
    pd.DataFrame(scans).to_parquet(path / "layer_scan.parquet")
    pd.concat(gens).reset_index(drop=True).to_parquet(path / "generations.parquet")
    (path / "calibration.json").write_text(
        json.dumps(
            {
                "model": models[0],
                "layer": 2,
                "python_level": 0.09,
                "rust_level": 0.025,
                "python_mass": 0.27,
                "rust_mass": 0.075,
                "n_python": n,
                "n_rust": n,
                "scale_factor": 4.56,
                "set_value": 0.09,
            }
        )
    )
    (path / "config.json").write_text(json.dumps({"model": list(models), "seed": seed, "n": n}))
    (path / "manifest.json").write_text(
        json.dumps(
            {
                "versions": {
                    "python": "3.11.9",
                    "torch": "2.13.0",
                    "transformers": "5.0.1",
                    "nnsight": "0.8.1",
                },
                "git_commit": "abc",
                "model": models[0],
                "seed": seed,
                "started": "2026-01-01T00:00:00+00:00",
                "finished": "2026-01-01T00:10:00+00:00",
                "remote": "none",
            }
        )
    )
    return path
