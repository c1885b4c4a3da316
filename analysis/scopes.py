"""Scope columns of the record tables, read from the condition names (plip_nn.scope).

Experiments write ``arm``, ``scope``, ``rows``, ``targets``, ``layers`` and ``draw`` next to
``condition``; :func:`with_scope` fills them from the names where a table lacks them (tables
written by hand, in tests or notebooks), so every analysis step groups by the same columns.
"""

from __future__ import annotations

import pandas as pd

from plip_nn.scope import BASELINE, Scope, parse_condition

__all__ = ["SCOPE_COLUMNS", "scope_order", "with_scope"]

SCOPE_COLUMNS = ("arm", "scope", "rows", "targets", "layers", "draw")


def with_scope(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the scope columns, parsed from ``condition`` where missing.

    Raises:
        plip_nn.scope.ScopeError: a condition name that does not follow the format.
    """
    if all(c in df.columns for c in SCOPE_COLUMNS) or "condition" not in df.columns:
        return df
    out = df.copy()
    parsed = {name: parse_condition(str(name)) for name in out["condition"].unique()}
    labels = {n: "" if p.scope is None else p.scope.label for n, p in parsed.items()}
    out["arm"] = out["condition"].map(lambda n: parsed[n].arm)
    out["scope"] = out["condition"].map(labels)
    for col in ("rows", "targets", "layers"):
        out[col] = out["condition"].map(
            lambda n, col=col: "" if parsed[n].scope is None else getattr(parsed[n].scope, col)
        )
    out["draw"] = out["condition"].map(lambda n: -1 if parsed[n].draw is None else parsed[n].draw)
    return out


def scope_order(labels: list[str]) -> list[str]:
    """Scope labels in reading order: default rows first, chosen layer, all, windows, PLIP last."""

    def key(label: str) -> tuple[int, int, str]:
        s = Scope.parse(label)
        rows = {"marker_span": 0, "to_call": 1, "continuation": 2, "marker": 3}.get(s.rows, 4)
        tgt = {"identifiers": 0, "mentions": 1, "plip": 2}.get(s.targets, 3)
        lay = 0 if s.layers == "L" else 1 if s.layers == "all" else 2
        return (2 if s.is_plip else 0, (rows * 4 + tgt) * 3 + lay, s.layers)

    return sorted(dict.fromkeys(x for x in labels if x and x != BASELINE), key=key)
