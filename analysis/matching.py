"""Is each control matched at every edited layer? The per-(language, scope, layer) table.

``control_match.parquet`` holds one row per (sample, rows, targets, layer, draw) with the
removed-mass ratio of the drawn keys against the knockout's targets. For a knockout scope
(rows/targets/layers) the edited layers are: the sample's chosen layer (``L``, read from the
knockout's records), every layer of the table (``all``), or the window's layers. The table gives,
per edited layer, the share of (prompt, draw) pairs with ``0.9 <= mass_ratio <= 1.1``; a scope
with any edited layer below :data:`MIN_MATCHED` is **control unmatched**.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from plip_nn.scope import CHOSEN, EVERY, Scope, window_layers

__all__ = ["MIN_MATCHED", "RATIO_BAND", "matching_table", "scope_matched"]

RATIO_BAND = (0.9, 1.1)
MIN_MATCHED = 0.80
_COLUMNS = ["model", "language", "scope", "layer", "pairs", "matched share",
            "median mass ratio"]  # fmt: skip


def _chosen_layers(recs: pd.DataFrame | None, model: str, language: str, scope: str) -> dict:
    """sample -> the layer its ``L`` knockout edited (from the records' ``layer`` column)."""
    if recs is None or "layer" not in recs:
        return {}
    sub = recs[(recs["model"] == model) & (recs["language"] == language)
               & (recs["condition"] == f"knockout@{scope}") & (recs["layer"] >= 0)]  # fmt: skip
    return dict(zip(sub["sample_id"].astype(str), sub["layer"].astype(int), strict=True))


def _edited(ctrl: pd.DataFrame, scope: Scope, chosen: dict) -> pd.DataFrame:
    if scope.layers == EVERY:
        return ctrl
    if scope.layers == CHOSEN:
        if not chosen:
            return ctrl.iloc[0:0]
        want = ctrl["sample_id"].astype(str).map(chosen)
        return ctrl[ctrl["layer"] == want]
    return ctrl[ctrl["layer"].isin(window_layers(scope.layers))]


def matching_table(
    control: pd.DataFrame | None,
    records: pd.DataFrame | None,
    scopes: Iterable[tuple[str, str, str]],
) -> pd.DataFrame:
    """Rows (model, language, scope, layer, pairs, matched share, median mass ratio) for every
    (model, language, knockout scope) in ``scopes`` whose rows/targets the table holds."""
    if control is None or not len(control) or "mass_ratio" not in control:
        return pd.DataFrame(columns=_COLUMNS)
    lo, hi = RATIO_BAND
    out = []
    for model, language, label in scopes:
        s = Scope.parse(label)
        ctrl = control[(control["model"] == model) & (control["language"] == language)
                       & (control["rows"] == s.rows) & (control["targets"] == s.targets)]  # fmt: skip
        if not len(ctrl):
            continue
        sub = _edited(ctrl, s, _chosen_layers(records, model, language, label))
        for layer, grp in sub.groupby("layer"):
            ratio = grp["mass_ratio"].astype(float)
            out.append({"model": model, "language": language, "scope": label,
                        "layer": int(layer), "pairs": len(grp),
                        "matched share": float(((ratio >= lo) & (ratio <= hi)).mean()),
                        "median mass ratio": float(ratio.median())})  # fmt: skip
    return pd.DataFrame(out, columns=_COLUMNS)


def scope_matched(table: pd.DataFrame, model: str, language: str, scope: str) -> tuple[float, str]:
    """(smallest matched share over the scope's edited layers, words); NaN and "" when the
    table has no row for the scope (an old run, or no control_match.parquet)."""
    sub = table[(table["model"] == model) & (table["language"] == language)
                & (table["scope"] == scope)]  # fmt: skip
    if not len(sub):
        return math.nan, ""
    worst = sub.loc[sub["matched share"].idxmin()]
    low = sub[sub["matched share"] < MIN_MATCHED]
    words = ", ".join(
        f"layer {int(layer)}: {100 * share:.0f}% of {int(n)} (prompt, draw) pairs within 0.9-1.1"
        for layer, share, n in zip(low["layer"], low["matched share"], low["pairs"], strict=True)
    )
    return float(worst["matched share"]), words
