"""The report's prospective power table: one block per deciding test, from :mod:`analysis.power`.

A deciding test is a knockout scope against the first draw of its deciding control, and each
deciding steering condition against baseline (:mod:`analysis.triangle`). For each, on the
endpoint(s) it has:

* **call-site Δlog p** (nats): the paired t power (detection of ``margin_nats`` at the family's
  Bonferroni α) and the paired TOST power at ±``margin_nats``, from the SD of the per-prompt
  differences (:func:`analysis.power.continuous_power_rows`);
* **preserved** (greedy, paired binary; a steering condition only where it has no call-site
  readout, so preservation decides it): the exact McNemar power to detect a ``margin`` change
  at the Bonferroni α and the exact TOST (Newcombe 90% CI) power at ±``margin``, from the
  observed discordance ψ and reference rate (:func:`analysis.power.binary_power_rows`);
* **per-prompt preservation rates** over sampled decodings (where the run has them): the
  paired t / TOST power at that k from the variance components
  (:func:`analysis.power.rate_rows`).

Each row has the margin, the observed discordance or SD, n, the power at n and the n that 80%
would need; :func:`power_flag` gives the words a Finding appends when its verdict's power is
below 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

import pandas as pd

from analysis.power import (
    LOW_POWER,
    PowerRow,
    binary_power_rows,
    continuous_power_rows,
    power_table,
    rate_rows,
)
from analysis.rates import prompt_rates
from analysis.verdicts import TriangleOutcome

__all__ = ["KEYS", "deciding_power", "power_flag", "power_flags", "power_frame", "power_stats_rows"]

KEYS = ("model", "language", "scope", "condition", "reference")
_DETECT = ("exact McNemar", "paired t (bootstrap CI)", "paired bootstrap on rates (t)")


def _sampled(gens: pd.DataFrame | None, model: str, language: str) -> pd.DataFrame | None:
    if gens is None or "decoding" not in gens or not (gens["decoding"] == "sampled").any():
        return None
    sub = gens[(gens["model"] == model) & (gens["language"] == language)]
    return sub if (sub["decoding"] == "sampled").any() else None


def _rate_block(
    sampled: pd.DataFrame | None, cond: str, ref: str, *, endpoint: str, margin: float,
    alpha: float,
) -> list[PowerRow]:  # fmt: skip
    """Power rows on per-prompt sampled rates of ``cond`` vs ``ref`` ([] without them)."""
    if sampled is None:
        return []
    rates = prompt_rates(sampled, decodings=("sampled",))
    rates = rates[rates["condition"].isin((cond, ref))]
    if set(rates["condition"]) != {cond, ref}:  # a scope without sampled decodings
        return []
    wide = rates.pivot(index="sample_id", columns="condition", values=["rate", "k"])
    wide = wide.dropna()
    k = int(wide["k"].min().min()) if len(wide) else 0
    if len(wide) < 2 or k < 2:
        return []
    try:
        return rate_rows(wide["rate"][ref], wide["rate"][cond], k, endpoint=endpoint,
                         margin=margin, alpha=alpha)  # fmt: skip
    except ValueError:  # no spread in the rates: power is not estimable
        return []


@lru_cache(maxsize=256)
def _binary_cached(n: int, psi: float, ref_rate: float, margin: float, alpha: float) -> tuple[PowerRow, ...]:  # fmt: skip
    return tuple(binary_power_rows(n, psi, ref_rate, endpoint="", margin=margin, alpha=alpha))


def _binary(n: int, psi: float, ref_rate: float, endpoint: str, margin: float, alpha: float) -> list[PowerRow]:  # fmt: skip
    """:func:`analysis.power.binary_power_rows` (exact sums: cached on the summary numbers)."""
    return [replace(r, endpoint=endpoint) for r in _binary_cached(n, psi, ref_rate, margin, alpha)]


def _blocks(o: TriangleOutcome, sampled: pd.DataFrame | None) -> Iterable[tuple[dict[str, str], list[PowerRow]]]:  # fmt: skip
    a_adj = o.alpha / max(o.family_size, 1)
    for k in o.knockouts:
        first = k.draws[0]
        cond, ref = f"knockout@{k.scope}", f"{first.control}@{k.scope}#{first.draw}"
        key = {"model": o.model, "language": o.language, "scope": k.scope, "condition": cond,
               "reference": ref}  # fmt: skip
        rows: list[PowerRow] = []
        c = first.call
        if c is not None and c.n >= 2 and c.sd > 0:
            rows += continuous_power_rows(c.n, c.sd, endpoint=f"call-site Δlog p: {cond} − {ref}",
                                          margin=o.margin_nats, alpha=a_adj)  # fmt: skip
        d = first.diff
        if d is not None and d.n >= 1:
            rows += _binary(
                d.n,
                d.discordance,
                d.ref_rate,
                f"preserved (greedy): {cond} vs {ref}",
                o.margin,
                a_adj,
            )
        rows += _rate_block(sampled, cond, ref, endpoint=f"preserved rate (sampled): {cond} vs {ref}",
                            margin=o.margin, alpha=a_adj)  # fmt: skip
        yield key, rows
    for scope, st in o.steering_by_scope.items():
        for t in st.tests:
            if t.role != "deciding":
                continue
            key = {"model": o.model, "language": o.language, "scope": scope,
                   "condition": t.condition, "reference": "baseline"}  # fmt: skip
            rows = []
            if t.call is not None and t.call.n >= 2 and t.call.sd > 0:
                rows += continuous_power_rows(t.call.n, t.call.sd,
                                              endpoint=f"call-site Δlog p: {t.condition} − baseline",
                                              margin=o.margin_nats, alpha=a_adj)  # fmt: skip
            if not rows and t.diff is not None and t.diff.n >= 1:  # preservation decides
                rows += _binary(
                    t.diff.n,
                    t.diff.discordance,
                    t.diff.ref_rate,
                    f"preserved (greedy): {t.condition} vs baseline",
                    o.margin,
                    a_adj,
                )
            yield key, rows


def power_frame(
    outcomes: Iterable[TriangleOutcome], generations: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The power table of every deciding test: :data:`KEYS`, then :data:`analysis.power.COLUMNS`
    and ``note``. ``generations`` (greedy and sampled rows) adds the per-prompt-rate rows."""
    parts = []
    for o in outcomes:
        sampled = _sampled(generations, o.model, o.language)
        for key, rows in _blocks(o, sampled):
            if rows:
                t = power_table(rows)
                for name in reversed(KEYS):
                    t.insert(0, name, key[name])
                parts.append(t)
    if not parts:
        return pd.DataFrame(columns=[*KEYS, *power_table([]).columns])
    return pd.concat(parts, ignore_index=True)


def power_stats_rows(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """``stats.csv`` rows of family ``power`` (shown, not counted): statistic = the power,
    effect = the observed ψ or SD, n, margin, n_for_80."""
    for r in frame.itertuples(index=False):
        yield {
            "family": "power", "model": r.model, "test": f"power: {r.test}",
            "language": r.language, "condition": r.condition, "scope": r.scope,
            "statistic": r.power, "pvalue": math.nan, "counted": False, "effect": r.observed,
            "ci_low": math.nan, "ci_high": math.nan, "n": r.n, "margin": r.margin,
            "power": r.power, "n_for_80": r.n_for_80,
            "note": f"{r.endpoint}; observed = {'ψ' if 'preserved (greedy)' in r.endpoint else 'SD'}"
            f" {r.observed:.3g}; {r.note}" + ("; power < 0.5" if r.flag_low_power else ""),
        }  # fmt: skip


def deciding_power(frame: pd.DataFrame, model: str, language: str, scope: str, *,
                   endpoint: str, effect: str) -> pd.Series | None:  # fmt: skip
    """The power row behind a knockout verdict: the deciding endpoint's ("dlogp" → call-site,
    else preserved) TOST row for "none", its detection row for "predicted"/"opposite", and the
    lower of the two for "inconclusive". None where the table has no such row, and for a
    verdict that no test decided ("control unmatched", "does not reach the output", "draws
    disagree"): power says nothing about those."""
    if not len(frame) or effect not in ("none", "predicted", "opposite", "inconclusive"):
        return None
    want = "call-site" if endpoint == "dlogp" else "preserved (greedy)"
    sub = frame[(frame["model"] == model) & (frame["language"] == language)
                & (frame["scope"] == scope) & frame["condition"].str.startswith("knockout@")
                & frame["endpoint"].str.startswith(want)]  # fmt: skip
    if not len(sub):
        return None
    detect = sub[sub["test"].isin(_DETECT)]
    tost = sub[~sub["test"].isin(_DETECT)]
    if effect == "none":
        pick = tost
    elif effect in ("predicted", "opposite"):
        pick = detect
    else:
        pick = sub
    pick = pick[pick["power"].notna()]
    if not len(pick):
        return None
    return pick.sort_values("power", kind="stable").iloc[0]


def power_flag(row: pd.Series | None) -> str:
    """ " (power 0.18 at ±10 pp; n for 80%: 165)" where the row's power is below 0.5, else ""."""
    if row is None or not row["power"] < LOW_POWER:
        return ""
    margin = (f"±{100 * row['margin']:.0f} pp" if str(row["endpoint"]).startswith("preserved")
              else f"±{row['margin']:g} nats")  # fmt: skip
    n80 = "over 100,000" if row["n_for_80"] < 0 else f"{row['n_for_80']:.0f}"
    return f" (power {row['power']:.2f} at {margin}; n for 80%: {n80})"


def power_flags(frame: pd.DataFrame, outcomes: Iterable[TriangleOutcome]) -> Mapping[tuple[str, str, str], str]:  # fmt: skip
    """(model, language, scope) -> :func:`power_flag` of each knockout verdict ("" if power ≥ 0.5)."""
    return {
        (o.model, o.language, k.scope): power_flag(deciding_power(
            frame, o.model, o.language, k.scope, endpoint=k.measure, effect=k.effect))
        for o in outcomes for k in o.knockouts
    }  # fmt: skip
