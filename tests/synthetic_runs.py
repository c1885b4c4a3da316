"""Synthetic run directories and tables (test-only; the library has no fake-data code).

Condition names follow :mod:`plip_nn.scope` (``arm@rows/targets/layers[#draw]``); the scope
columns are left for :func:`analysis.scopes.with_scope` to parse, as for a table written by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def ic(scope: str = DEFAULT, draw: int = 0) -> str:
    """The inert (deciding) control of ``scope``, draw ``draw``."""
    return f"inert_control@{scope}#{draw}"


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
    if arm == "inert_control":
        return "inert", np.nan, layer
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
    dlogp: Mapping[str, Sequence[float]] | None = None,
    p_top1: float = 0.6,
) -> pd.DataFrame:
    """records.parquet rows: per condition a KL per sample; attention follows the edit (or
    ``achieved`` where given).

    ``dlogp`` (condition -> call-site Δlog p per sample) adds the columns of the call-site
    readout (docs/RECORDS.md): ``readout`` ("call" on kind=test, "after_marker" on
    kind=generation), ``dlogp_gold``, ``logp_gold_*``, ``rank_gold_*``, ``logppl_*``,
    ``target_rel_dev`` (inert controls) and ``p_top1_baseline`` (= ``p_top1``). Without it
    the table is an old run's.
    """
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
            if dlogp is not None:
                dl = 0.0 if cond == "baseline" else float(dlogp.get(cond, [0.0] * n)[i])
                base_lp = float(-0.5 - 0.1 * i / n)
                rows[-1].update({
                    "readout": {"test": "call", "generation": "after_marker"}.get(kind, ""),
                    "call_at": 40 if kind == "test" else -1,
                    "gold_token": 123 if kind == "test" else -1,
                    "logp_gold_baseline": base_lp, "logp_gold_condition": base_lp + dl,
                    "dlogp_gold": dl, "rank_gold_baseline": 0,
                    "rank_gold_condition": 0 if dl > -0.7 else 1,
                    "logppl_baseline": float(np.log(ppl)),
                    "logppl_condition": float(np.log(ppl + float(value))),
                    "target_rel_dev": 0.004 if op == "inert" else np.nan,
                    "p_top1_baseline": p_top1,
                })  # fmt: skip
    return pd.DataFrame(rows)


def noise_table(floor: float, n: int = 10, model: str = "m") -> pd.DataFrame:
    """noise_floor.parquet rows whose largest KL is ``floor``."""
    kl = np.linspace(0, floor, n)
    return pd.DataFrame({"model": model, "sample_id": [f"s{i}" for i in range(n)],
                         "language": "python", "kind": "generation", "kl": kl, "kl_raw": kl,
                         "top1_same": True, "batch_sizes": "8,11"})  # fmt: skip


def with_sampled(
    greedy: pd.DataFrame,
    rates: Mapping[str, float],
    k: int,
    rng: np.random.Generator,
    seed: int = 0,
) -> pd.DataFrame:
    """``greedy`` (one row per prompt and condition) plus k sampled decodings of each, preserved
    with probability ``rates[condition]`` shifted by a per-prompt offset (±0.15)."""
    greedy = greedy.assign(decoding="greedy", sample_index=0, gen_seed=seed)
    offset = {s: float(rng.uniform(-0.15, 0.15)) for s in greedy["sample_id"].unique()}
    parts = [greedy]
    for j in range(k):
        s = greedy.assign(decoding="sampled", sample_index=j, gen_seed=1000 * seed + j)
        q = np.clip([rates[c] + offset[i] for c, i in zip(s["condition"], s["sample_id"],
                                                            strict=True)], 0, 1)  # fmt: skip
        s["preserved"] = rng.random(len(s)) < q
        s["calls_function"] = s["preserved"] | (rng.random(len(s)) < 0.3)
        parts.append(s)
    return pd.concat(parts, ignore_index=True)


STEER = ("scale_0.5", "scale_2", "scale_3", "scale_4", "scale_6", "scale_calibrated",
         "scale_calibrated_x2", "set_value_calibrated")  # fmt: skip
DECIDING_STEER = ("scale_2", "scale_calibrated", "set_value_calibrated")


def make_run_dir(
    path: Path,
    *,
    seed: int = 0,
    n: int = 30,
    models: Sequence[str] = ("tiny-a",),
    n_layers: int = 4,
    strong_knockout: bool = True,
    new_columns: bool = True,
    draws: int = 3,
    unmatched_layer: int | None = None,
    disagree_scope: str | None = None,
    steering_scopes: Sequence[str] = (DEFAULT, ALL),
    sampled: int = 0,
) -> Path:
    """A complete synthetic run dir: records, scan, generations, controls, floor, metadata.

    ``new_columns`` (default) writes a run of the current design: records read at the call on
    kind=test (``dlogp_gold`` ...) and after the marker on kind=generation, inert controls
    (``draws`` single-pass draws, 2 in generation) next to the renormalising ones, steering in
    ``steering_scopes`` (PLIP has none). False writes an old run (no call readout, no inert
    control, steering in the default scope only). ``unmatched_layer``: the marker_span /
    identifiers controls miss the mass there (ratio 0.5). ``disagree_scope``: its inert draw 1
    moves the call site like the knockout, so the draws disagree. ``sampled`` k > 0 adds k
    sampled decodings per prompt and condition (``decoding`` "sampled", ``sample_index``
    0..k-1, ``gen_seed``) beside the greedy rows (``decoding`` "greedy", ``sample_index`` 0):
    each preserved with the condition's rate, shifted per prompt.
    """
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    recs, scans, gens, noise = [], [], [], []
    scopes = (DEFAULT, ALL, PLIP)
    gen_draws = 2  # generation controls: draws 0..1 (--gen-draws)
    steer_in = tuple(steering_scopes) if new_columns else (DEFAULT,)
    for model in models:
        for lang, level in (("python", 0.09), ("rust", 0.025)):
            ko_shift = 0.4 if strong_knockout else 0.0
            kl: dict[str, Any] = {"baseline": np.zeros(n)}
            dl: dict[str, Any] = {}
            for s in scopes:
                kl[ko(s)] = rng.gamma(2.0, 0.05, n) + ko_shift
                dl[ko(s)] = rng.normal(-0.9 if strong_knockout else -0.02, 0.2, n)
                for d in range(draws if new_columns else 2):
                    kl[rc(s, d)] = rng.gamma(2.0, 0.05, n)
                    dl[rc(s, d)] = rng.normal(0.1, 0.2, n)
                    if new_columns:
                        kl[ic(s, d)] = rng.gamma(2.0, 0.05, n)
                        same = s == disagree_scope and d == 1
                        dl[ic(s, d)] = (
                            dl[ko(s)] + rng.normal(0, 0.01, n)
                            if same
                            else (dl[ko(s)] + rng.normal(0.9 if strong_knockout else 0.0, 0.05, n))
                        )
            for s in steer_in:
                for arm in STEER if s == DEFAULT else DECIDING_STEER:
                    kl[steer(arm, s)] = rng.gamma(2.0, 0.03, n)
                    dl[steer(arm, s)] = rng.normal(0.3, 0.2, n)
            kinds = (("generation", 0.999 if lang == "rust" else 0.7), ("test", 0.6))
            for kind, p_top1 in kinds if new_columns else (("generation", 0.6),):
                recs.append(records_table(
                    kl, model=model, language=lang, attn_baseline=level, seed=seed, kind=kind,
                    dlogp=dl if new_columns else None, p_top1=p_top1,
                ))  # fmt: skip
            for j in range(n):
                for kind, scale in (("test", 1.0), ("baseline", 0.5)):
                    for layer in range(n_layers):
                        lvl = float(np.clip(rng.normal(scale * level * (1 + layer) / 2, level / 5),
                                            0, 1))  # fmt: skip
                        for rows, targets in (("marker", "plip"), ("marker_span", "identifiers")):
                            if kind == "baseline" and not new_columns:
                                continue
                            if rows == "marker" and not new_columns:
                                continue
                            scans.append({
                                "model": model, "sample_id": f"s{j}" if kind == "test"
                                else f"b{j}", "language": lang, "kind": kind, "rows": rows,
                                "targets": targets, "layer": layer,
                                "attn_level": lvl * (1.5 if rows == "marker" else 1.0),
                                "attn_mass": 3 * lvl, "n_targets": 3, "n_rows": 1,
                                "source": 30 if lang == "python" else 60,
                                "n_keys": 31 if lang == "python" else 61,
                            })  # fmt: skip
            p = {"baseline": 0.6}
            for s in scopes:
                p[ko(s)] = 0.15 if strong_knockout else 0.6
                for d in range(gen_draws):
                    p[rc(s, d)] = 0.6
                    if new_columns:
                        p[ic(s, d)] = 0.6
            doses = {"scale_0.5": 0.5, "scale_2": 0.7, "scale_3": 0.75, "scale_4": 0.8,
                     "scale_6": 0.85, "scale_calibrated": 0.85, "scale_calibrated_x2": 0.86,
                     "set_value_calibrated": 0.9}  # fmt: skip
            for s in steer_in:
                p.update({steer(a, s): q for a, q in doses.items()
                          if s == DEFAULT or a in DECIDING_STEER})  # fmt: skip
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
            if new_columns:  # calls_function beside preserved: arity fails on some calls
                g["calls_function"] = g["preserved"] | (rng.random(len(g)) < 0.3)
            if sampled:
                g = with_sampled(g, p, sampled, rng, seed)
            gens.append(g)
        noise.append(noise_table(1e-9, model=model))
    pd.concat(recs).reset_index(drop=True).to_parquet(path / "records.parquet")
    control = []
    for model in models:
        for lang in ("python", "rust"):
            for j in range(n):
                for rows, targets in (("marker_span", "identifiers"), ("marker", "plip")):
                    for layer in range(n_layers if new_columns else 1):
                        for d in range(draws if new_columns else 1):
                            target = float(rng.uniform(0.05, 0.6))
                            if not new_columns:
                                ratio = float(rng.choice([1.0, 0.95, 1.08, 0.5]))
                            elif layer == unmatched_layer and rows == "marker_span":
                                ratio = 0.5
                            else:
                                ratio = float(
                                    rng.choice(
                                        [1.0, 0.95, 1.08, 1.02, 0.5], p=[0.3, 0.25, 0.2, 0.2, 0.05]
                                    )
                                )
                            control.append({
                                "model": model, "sample_id": f"s{j}", "language": lang,
                                "kind": "generation", "rows": rows, "targets": targets,
                                "layer": layer if new_columns else 2, "draw": d,
                                "n_targets": 3, "n_keys": 3, "pool_size": 12,
                                "target_mass": target, "control_mass": target * ratio,
                                "mass_ratio": ratio, "within_tolerance": abs(ratio - 1) <= 0.1,
                                "count_matched": True, "tolerance": 0.1,
                                "token0_share": float(rng.uniform(0.2, 0.7)),
                                "targets_include_token0": bool(j % 3),
                                "target_keys": "[0, 1, 2]", "control_keys": "[3, 4, 5]",
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
