"""Robustness of each knockout verdict: control draws, study seeds, decoding and halves.

* **draws**: each deciding-control draw's verdict (:class:`analysis.verdicts.DrawResult`; a
  scope gated as "control unmatched" or "does not reach the output" keeps that label on every
  draw).
* **halves**: the layer is chosen on one seeded half of the functions and used on the other
  (``calibration.json``/``manifest.json`` ``layer_by_half``, :func:`plip_nn.scope.function_half`),
  so each record carries its half's layer; the verdict is recomputed on each half's samples
  alone ("half 0 (layer 2)").
* **seeds**: run directories whose ``config.json`` differs only in ``seed`` (and in where or how
  the run was executed: :data:`SEED_FREE`) are seeds of one study (:func:`study_groups`); the
  first one given is the main run, the others are re-classified as they are.
* **decoding**: where the run has sampled decodings (``generations.parquet`` ``decoding`` =
  "sampled"), the generation verdict on per-prompt rates (:func:`analysis.rates.paired_rate_test`
  against each generation control draw, :func:`analysis.rates.classify_rates`) next to the
  greedy McNemar verdict, as a second finding "<scope> · preservation".

:func:`analysis.robustness.robustness_table` turns the long table into one row per finding.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.rates import RateComparison, classify_rates, paired_rate_test
from analysis.robustness import robustness_table
from analysis.verdicts import EFFECT_WORDS, KnockoutOutcome, TriangleOutcome
from plip_nn.scope import function_half

__all__ = [
    "NO_SAMPLED",
    "SEED_FREE",
    "RateVerdict",
    "finding_id",
    "greedy_only",
    "half_filters",
    "has_sampled",
    "rate_verdicts",
    "robustness_frame",
    "robustness_long",
    "study_groups",
]

SEED_FREE = ("seed", "out", "resume", "device", "device_map", "remote", "log_level", "quiet")
"""config.json keys that may differ between seeds of one study."""
NO_SAMPLED = "no sampled decodings in this run"


def has_sampled(gens: pd.DataFrame | None) -> bool:
    """Whether a generations table holds sampled decodings."""
    return gens is not None and "decoding" in gens and bool((gens["decoding"] == "sampled").any())


def greedy_only(gens: pd.DataFrame | None) -> pd.DataFrame | None:
    """The greedy rows (one per prompt and condition; every row of a run without ``decoding``)."""
    if gens is None or "decoding" not in gens:
        return gens
    return gens[gens["decoding"].fillna("greedy") == "greedy"].reset_index(drop=True)


def study_groups(metas: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Indices of the run directories grouped by study: equal ``config.json`` up to
    :data:`SEED_FREE`. A run without config.json is a study of its own. Order is kept."""
    keys: dict[str, list[int]] = {}
    out: list[list[int]] = []
    for i, meta in enumerate(metas):
        cfg = meta.get("config")
        if not isinstance(cfg, dict):
            out.append([i])
            continue
        key = json.dumps({k: v for k, v in cfg.items() if k not in SEED_FREE}, sort_keys=True,
                         default=str)  # fmt: skip
        if key not in keys:
            keys[key] = []
            out.append(keys[key])
        keys[key].append(i)
    return out


def finding_id(model: str, language: str, scope: str) -> str:
    return f"{model} / {language} / {scope}"


@dataclass(frozen=True, kw_only=True)
class RateVerdict:
    """The generation verdict of one knockout on per-prompt sampled rates, over the generation
    control draws: ``effect`` (one label, or "disagree"), ``words`` and each draw's test."""

    effect: str
    words: str
    draws: tuple[tuple[int, RateComparison, str], ...]


def rate_verdicts(
    gens: pd.DataFrame | None, outcomes: Sequence[TriangleOutcome], *, n_resamples: int = 9999
) -> dict[tuple[str, str, str], RateVerdict]:
    """(model, language, scope) -> the sampled-rate verdict of each knockout ({} without
    sampled decodings). Each generation draw of the deciding control is tested at the family's
    Bonferroni α (the greedy McNemar stays the compared row)."""
    if not has_sampled(gens):
        return {}
    assert gens is not None
    out = {}
    for o in outcomes:
        sub = gens[(gens["model"] == o.model) & (gens["language"] == o.language)]
        sampled = set(sub.loc[sub["decoding"] == "sampled", "condition"])
        a_adj = o.alpha / max(o.family_size, 1)
        for k in o.knockouts:
            ko, arm = f"knockout@{k.scope}", k.draws[0].control
            ctrls = sorted((c for c in sampled if c.startswith(f"{arm}@{k.scope}#")),
                           key=lambda c: int(c.rsplit("#", 1)[1]))  # fmt: skip
            if ko not in sampled or not ctrls:
                continue
            got = []
            for c in ctrls:
                try:
                    cmp = paired_rate_test(sub, ko, c, alpha=a_adj, n_resamples=n_resamples)
                except ValueError:
                    continue
                eff, words = classify_rates(cmp, margin=o.margin, predicted_sign=-1)
                got.append((int(c.rsplit("#", 1)[1]), cmp, str(eff)))
            if not got:
                continue
            effs = {e for _, _, e in got}
            eff1 = effs.pop() if len(effs) == 1 else "disagree"
            words = classify_rates(got[0][1], margin=o.margin, predicted_sign=-1)[1]
            out[(o.model, o.language, k.scope)] = RateVerdict(effect=eff1, words=words,
                                                              draws=tuple(got))  # fmt: skip
    return out


def half_filters(metas: Sequence[Mapping[str, Any]]) -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:  # fmt: skip
    """Level name -> a filter keeping one half's rows, e.g. "0 (layer 2)" (the layer that half's
    samples were edited at). {} when no manifest names ``layer_by_half``."""
    seeds: dict[str, int] = {}
    by_half: dict[str, dict[str, Any]] = {}
    for meta in metas:
        man = meta.get("manifest") or {}
        if man.get("layer_by_half") and man.get("model"):
            seeds[str(man["model"])] = int(man.get("seed", 0))
            by_half[str(man["model"])] = man["layer_by_half"]
    if not seeds:
        return {}
    out: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {}
    for h in (0, 1):
        layers = sorted({str(b.get(str(h), "?")) for b in by_half.values()})
        name = f"{h} (layer {'/'.join(layers)})"

        def keep(df: pd.DataFrame, h: int = h) -> pd.DataFrame:
            mask = [m in seeds and function_half(str(s), seeds[m]) == h
                    for m, s in zip(df["model"].astype(str), df["sample_id"], strict=True)]  # fmt: skip
            return df[mask].reset_index(drop=True)

        out[name] = keep
    return out


def _verdict(k: KnockoutOutcome | None) -> str | None:
    return None if k is None else EFFECT_WORDS[k.effect]


def robustness_long(
    outcomes: Sequence[TriangleOutcome],
    *,
    halves: Mapping[str, Sequence[TriangleOutcome]] | None = None,
    seeds: Mapping[str, Sequence[TriangleOutcome]] | None = None,
    rates: Mapping[tuple[str, str, str], RateVerdict] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The long table (finding, dimension, level, verdict) and each finding's reference verdict.

    ``halves`` / ``seeds``: level name -> the outcomes re-classified there (a level where a
    knockout was not estimable is left out). ``rates``: :func:`rate_verdicts`.
    """
    rows: list[dict[str, str]] = []
    ref: dict[str, str] = {}
    for o in outcomes:
        for k in o.knockouts:
            fid = finding_id(o.model, o.language, k.scope)
            ref[fid] = EFFECT_WORDS[k.effect]
            gated = k.effect in ("unmatched", "unreached")
            for x in k.draws:
                rows.append({"finding": fid, "dimension": "draw", "level": str(x.draw),
                             "verdict": EFFECT_WORDS[k.effect if gated else x.effect]})  # fmt: skip
            for dim, alt in (("seed", seeds or {}), ("half", halves or {})):
                for level, outs in alt.items():
                    other = next((a for a in outs if (a.model, a.language) == (o.model, o.language)), None)  # fmt: skip
                    v = _verdict(other.knockout(k.scope) if other is not None else None)
                    if v is not None:
                        rows.append(
                            {"finding": fid, "dimension": dim, "level": level, "verdict": v}
                        )
            rv = (rates or {}).get((o.model, o.language, k.scope))
            if rv is not None and k.gen_effect is not None:
                pid = fid + " · preservation"
                ref[pid] = EFFECT_WORDS.get(rv.effect, rv.effect)
                rows.append({"finding": pid, "dimension": "decoding", "level": "greedy",
                             "verdict": EFFECT_WORDS[k.gen_effect]})  # fmt: skip
                rows.append({"finding": pid, "dimension": "decoding", "level": "sampled",
                             "verdict": ref[pid]})  # fmt: skip
                for d, _, e in rv.draws:
                    rows.append({"finding": pid, "dimension": "draw", "level": str(d),
                                 "verdict": EFFECT_WORDS[e]})  # fmt: skip
    return pd.DataFrame(rows, columns=["finding", "dimension", "level", "verdict"]), ref


def robustness_frame(
    outcomes: Sequence[TriangleOutcome],
    **kw: Any,
) -> pd.DataFrame:
    """:func:`analysis.robustness.robustness_table` of :func:`robustness_long` (empty frame
    without any knockout)."""
    long, ref = robustness_long(outcomes, **kw)
    if not len(long):
        return pd.DataFrame(columns=["finding", "verdict", "agree", "disagree_on", "sentence"])
    return robustness_table(long, reference=ref)
