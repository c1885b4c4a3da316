"""The one way rows of two conditions are paired (by sample, and by layer where it matters).

Both the report (``analysis.report``) and the decision (``analysis.triangle``) pair through
:func:`paired`, so a table that would pair differently in one of them cannot exist: a condition
with two rows for the same key is an error naming the sample, never silently deduplicated.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["DuplicateRowError", "paired"]


class DuplicateRowError(ValueError):
    """A condition holds more than one row for the same pairing key."""


def paired(
    df: pd.DataFrame,
    column: str,
    cond: str,
    ref: str,
    keys: Sequence[str] = ("sample_id",),
) -> pd.DataFrame:
    """Rows of ``cond`` and ``ref`` joined on ``keys``: columns ``ref`` and ``cond``.

    Only keys present in both conditions with a non-missing ``column`` in both are kept
    (an inner join); the index is ``keys``.

    Raises:
        DuplicateRowError: ``cond`` or ``ref`` has several rows for one key (names the sample).
        ValueError: ``df`` lacks ``column``, ``condition`` or a key column.
    """
    keys = list(keys)
    missing = sorted({column, "condition", *keys} - set(df.columns))
    if missing:
        raise ValueError(f"pairing {cond!r} with {ref!r} needs columns {missing}")
    parts = []
    for name, label in ((ref, "ref"), (cond, "cond")):
        sub = df[df["condition"] == name]
        dup = sub.duplicated(keys, keep=False)
        if dup.any():
            first = sub.loc[dup, keys].iloc[0]
            where = ", ".join(f"{k}={first[k]!r}" for k in keys)
            raise DuplicateRowError(
                f"condition {name!r} has {int(dup.sum())} rows sharing a key, e.g. {where}: "
                f"sample {first['sample_id']!r} appears more than once; keep one row per "
                "sample (a resumed run that duplicated rows should be re-assembled)"
            )
        parts.append(sub.set_index(keys)[column].rename(label))
    return pd.concat(parts, axis=1, join="inner").dropna()
