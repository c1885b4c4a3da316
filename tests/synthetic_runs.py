"""Synthetic run directories and tables (test-only; the library has no fake-data code).

Condition names follow :mod:`plip_nn.scope` (``arm@rows/targets/layers[#draw]``); the scope
columns are left for :func:`analysis.scopes.with_scope` to parse, as for a table written by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from plip_nn.scope import parse_condition

DEFAULT = "marker_span/identifiers/L"
ALL = "marker_span/identifiers/all"
PLIP = "marker/plip/L"
KO, RC = f"knockout@{DEFAULT}", f"random_control@{DEFAULT}#0"
CAL_FACTOR = 4.56
SET_VALUE = 0.09


def ko(scope: str = DEFAULT) -> str:
    return f"knockout@{scope}"


def rc(scope: str = DEFAULT, draw: int = 0) -> str:
    return f"random_control@{scope}#{draw}"


def steer(arm: str, scope: str = DEFAULT) -> str:
    return f"{arm}@{scope}"


def op_factor(cond: str) -> tuple[str, float, int]:
    """(op, factor, layer) of a condition name, as the experiments would record them."""
    parsed = parse_condition(cond)
    layer = 2
    if parsed.scope is not None:
        layer = -1 if parsed.scope.layers == "all" else 2
    arm = parsed.arm
    if arm == "baseline":
        return "none", np.nan, layer
    if arm in ("knockout", "random_control"):
        return "knockout", np.nan, layer
    if arm == "set_value_calibrated":
        return "set_value", SET_VALUE, layer
    if arm == "scale_calibrated":
        return "scale", CAL_FACTOR, layer
    if arm == "scale_calibrated_x2":
        return "scale", 2 * CAL_FACTOR, layer
    return "scale", float(arm.removeprefix("scale_")), layer


def generations_table(
    preserved: Mapping[str, Sequence[bool]],
    *,
    model: str = "m",
    language: str = "rust",
    same_tokens: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per (sample, condition) with the given ``preserved`` flags (sample i = index i).

    Tokens differ from baseline's for every condition but those in ``same_tokens``.
    """
    rows = []
    for k, (cond, flags) in enumerate(preserved.items()):
        op, factor, layer = op_factor(cond)
        for i, flag in enumerate(flags):
            same = cond == "baseline" or cond in same_tokens
            rows.append(
                {
                    "experiment": "triangle",
                    "condition": cond,
                    "op": op,
                    "factor": factor,
                    "model": model,
                    "sample_id": f"s{i}",
                    "language": language,
                    "kind": "generation",
                    "layer": layer,
                    "seed": 0,
                    "prompt": "p",
                    "text": "t",
                    "tokens": [7, i] if same else [8 + k, i],
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
    kind: str = "generation",
    achieved: Mapping[str, Sequence[float]] | None = None,
) -> pd.DataFrame:
    """records.parquet rows: per condition a KL per sample; attention follows the edit (or
    ``achieved`` where given)."""
    rng = np.random.default_rng(seed)
    rows = []
    n = len(next(iter(kl.values())))
    base_level = np.clip(rng.normal(attn_baseline, attn_baseline / 4, n), 1e-4, 0.5)
    for cond, values in kl.items():
        op, factor, layer = op_factor(cond)
        for i, value in enumerate(values):
            b = float(base_level[i])
            if achieved is not None and cond in achieved:
                got = float(achieved[cond][i])
            elif op == "knockout":
                got = 0.0
            elif op == "scale":
                m = 3 * b  # three target edges
                got = b * factor / (1 - m + factor * m)
            elif op == "set_value":
                got = float(factor)
            else:
                got = b
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
                    "kind": kind,
                    "layer": layer,
                    "n_edges": 0 if op == "none" else 3,
                    "attn_baseline": b,
                    "attn_achieved": got,
                    "mass_baseline": 3 * b,
                    "mass_achieved": 3 * got,
                    "mass_removed": 3 * (b - got) if op == "knockout" else np.nan,
                    "kl": float(value),
                    "top1_same": bool(value < 0.05),
                    "dlogp_top1": -float(value),
                    "ppl_baseline": ppl,
                    "ppl_condition": ppl + float(value),
                    "edit": "[]",
                    "seed": 0,
                }
            )
    return pd.DataFrame(rows)


def noise_table(floor: float, n: int = 10, model: str = "m") -> pd.DataFrame:
    """noise_floor.parquet rows whose largest KL is ``floor``."""
    kl = np.linspace(0, floor, n)
    return pd.DataFrame({"model": model, "sample_id": [f"s{i}" for i in range(n)],
                         "language": "python", "kind": "generation", "kl": kl, "kl_raw": kl,
                         "top1_same": True, "batch_sizes": "8,11"})  # fmt: skip


STEER = ("scale_0.5", "scale_2", "scale_3", "scale_4", "scale_6", "scale_calibrated",
         "scale_calibrated_x2", "set_value_calibrated")  # fmt: skip


def make_run_dir(
    path: Path,
    *,
    seed: int = 0,
    n: int = 30,
    models: Sequence[str] = ("tiny-a",),
    n_layers: int = 4,
    strong_knockout: bool = True,
) -> Path:
    """A complete synthetic run dir: records, scan, generations, controls, floor, metadata."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    recs, scans, gens, noise = [], [], [], []
    scopes = (DEFAULT, ALL, PLIP)
    for model in models:
        for lang, level in (("python", 0.09), ("rust", 0.025)):
            ko_shift = 0.4 if strong_knockout else 0.0
            kl: dict[str, np.ndarray] = {"baseline": np.zeros(n)}
            for s in scopes:
                kl[ko(s)] = rng.gamma(2.0, 0.05, n) + ko_shift
                kl[rc(s)] = rng.gamma(2.0, 0.05, n)
                kl[rc(s, 1)] = rng.gamma(2.0, 0.05, n)
            for arm in STEER:
                kl[steer(arm)] = rng.gamma(2.0, 0.03, n)
            recs.append(records_table(kl, model=model, language=lang, attn_baseline=level,
                                      seed=seed))  # fmt: skip
            for s in range(n):
                for layer in range(n_layers):
                    lvl = float(np.clip(rng.normal(level * (1 + layer) / 2, level / 5), 0, 1))
                    scans.append({
                        "model": model, "sample_id": f"s{s}", "language": lang, "kind": "test",
                        "rows": "marker_span", "targets": "identifiers", "layer": layer,
                        "attn_level": lvl, "attn_mass": 3 * lvl, "n_targets": 3, "n_rows": 1,
                        "source": 30 if lang == "python" else 60,
                        "n_keys": 31 if lang == "python" else 61,
                    })  # fmt: skip
            p = {"baseline": 0.6}
            for s in scopes:
                p[ko(s)] = 0.15 if strong_knockout else 0.6
                p[rc(s)] = 0.6
                p[rc(s, 1)] = 0.6
            doses = {"scale_0.5": 0.5, "scale_2": 0.7, "scale_3": 0.75, "scale_4": 0.8,
                     "scale_6": 0.85, "scale_calibrated": 0.85, "scale_calibrated_x2": 0.86,
                     "set_value_calibrated": 0.9}  # fmt: skip
            p.update({steer(a): q for a, q in doses.items()})
            base = rng.random(n) < p["baseline"]
            flags = {
                c: base if c == "baseline"
                else (base & (rng.random(n) < q / 0.6)) | (~base & (rng.random(n) < max(q - 0.5, 0) * 2))
                for c, q in p.items()
            }  # fmt: skip
            g = generations_table({c: list(v) for c, v in flags.items()}, model=model,
                                  language=lang)  # fmt: skip
            g["executes"] = pd.array(
                np.where(g["preserved"], rng.random(len(g)) < 0.8, False), dtype="boolean"
            )
            gens.append(g)
        noise.append(noise_table(1e-9, model=model))
    pd.concat(recs).reset_index(drop=True).to_parquet(path / "records.parquet")
    control = []
    for model in models:
        for lang in ("python", "rust"):
            for s in range(n):
                for rows, targets in (("marker_span", "identifiers"), ("marker", "plip")):
                    target = float(rng.uniform(0.05, 0.6))
                    ratio = float(rng.choice([1.0, 0.95, 1.08, 0.5]))
                    control.append({
                        "model": model, "sample_id": f"s{s}", "language": lang,
                        "kind": "generation", "rows": rows, "targets": targets, "layer": 2,
                        "draw": 0, "n_targets": 3, "n_keys": 3, "pool_size": 12,
                        "target_mass": target, "control_mass": target * ratio,
                        "mass_ratio": ratio, "within_tolerance": abs(ratio - 1) <= 0.1,
                        "count_matched": True, "tolerance": 0.1,
                        "token0_share": float(rng.uniform(0.2, 0.7)),
                        "targets_include_token0": bool(s % 3), "target_keys": "[0, 1, 2]",
                        "control_keys": "[3, 4, 5]",
                    })  # fmt: skip
    pd.DataFrame(control).to_parquet(path / "control_match.parquet")
    pd.DataFrame(scans).to_parquet(path / "layer_scan.parquet")
    pd.concat(gens).reset_index(drop=True).to_parquet(path / "generations.parquet")
    pd.concat(noise).reset_index(drop=True).to_parquet(path / "noise_floor.parquet")
    (path / "calibration.json").write_text(json.dumps({
        "model": models[0], "layer": 2, "rows": "marker_span", "targets": "identifiers",
        "python_level": 0.09, "rust_level": 0.025, "python_mass": 0.27, "rust_mass": 0.075,
        "n_python": n, "n_rust": n, "scale_factor": CAL_FACTOR, "set_value": SET_VALUE,
    }))  # fmt: skip
    (path / "config.json").write_text(json.dumps({"model": list(models), "seed": seed, "n": n,
                                                  "alpha": 0.05, "margin": 0.10}))  # fmt: skip
    (path / "manifest.json").write_text(json.dumps({
        "versions": {"python": "3.11.9", "torch": "2.13.0", "transformers": "5.0.1",
                     "nnsight": "0.8.1"},
        "git_commit": "abc", "model": models[0], "seed": seed, "layer": 2,
        "layer_by_half": {"0": 2, "1": 2}, "layer_choice": "cross-fitted scan peak",
        "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:10:00+00:00",
        "remote": "none",
    }))  # fmt: skip
    return path
