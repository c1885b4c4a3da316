"""The robustness table: each Finding's verdict under every control draw, seed, decoding and half.

Input is a long table, one row per (finding, dimension, level): ``finding`` (an id),
``dimension`` in {"draw", "seed", "decoding", "half"}, ``level`` (draw 0/1/…, seed 0/1/2,
decoding "greedy"/"sampled", half "A"/"B") and ``verdict`` (one of the study's verdict labels,
e.g. "no effect", "inconclusive").

The output has one row per finding: a column per (dimension, level) holding that verdict,
``verdict`` (the reference verdict), ``agree``, ``disagree_on`` (the levels whose verdict
differs from the reference) and ``sentence``, the words a Finding uses: it states its verdict
only where every level agrees ("holds across draws, seeds, decoding and halves"), and otherwise
says which levels disagree ("verdict differs with seed 2 (inconclusive vs no effect)").

The reference verdict is the main run's when ``reference`` gives it, else the most frequent
verdict (ties: the one seen first in the input).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pandas as pd

__all__ = ["DIMENSIONS", "level_name", "robustness_table", "sentence"]

DIMENSIONS = ("draw", "seed", "decoding", "half")
_PLURAL = {"draw": "draws", "seed": "seeds", "decoding": "decoding", "half": "halves"}
_COLUMNS = ("finding", "dimension", "level", "verdict")


def level_name(dimension: str, level: object) -> str:
    """How a level is named in words and as a column: "draw 1", "seed 2", "sampled decoding",
    "half B"."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {DIMENSIONS}; got {dimension!r}")
    if dimension == "decoding":
        return f"{level} decoding"
    return f"{dimension} {level}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def sentence(reference: str, verdicts: Mapping[tuple[str, str], str]) -> str:
    """The Finding's words for one finding.

    Args:
        reference: the verdict the Finding would state.
        verdicts: (dimension, level name) -> verdict, in display order.
    """
    differs = [(d, name, v) for (d, name), v in verdicts.items() if v != reference]
    if not differs:
        dims = [d for d in DIMENSIONS if any(k[0] == d for k in verdicts)]
        return "holds across " + _join([_PLURAL[d] for d in dims])
    return "verdict differs with " + _join(
        [f"{name} ({v} vs {reference})" for _, name, v in differs]
    )


def _validate(long: pd.DataFrame) -> pd.DataFrame:
    long = long.reset_index(drop=True)
    missing = sorted(set(_COLUMNS) - set(long.columns))
    if missing:
        raise ValueError(f"the verdict table lacks columns {missing}; it needs {list(_COLUMNS)}")
    bad = sorted(set(long["dimension"].astype(str)) - set(DIMENSIONS))
    if bad:
        raise ValueError(f"dimension holds {bad}; allowed values are {DIMENSIONS}")
    empty = long["verdict"].isna() | (long["verdict"].astype(str).str.strip() == "")
    if empty.any():
        row = long.loc[empty].iloc[0]
        raise ValueError(
            f"finding {row['finding']!r} has no verdict under {row['dimension']} {row['level']}; "
            "give every level a verdict (drop levels that were not run)"
        )
    keys = ["finding", "dimension", "level"]
    dup = long.astype({"level": str}).drop_duplicates([*keys, "verdict"]).duplicated(keys)
    if dup.any():
        row = long.loc[dup[dup].index[0]]
        raise ValueError(
            f"finding {row['finding']!r} has two different verdicts under "
            f"{row['dimension']} {row['level']}; keep one row per (finding, dimension, level)"
        )
    return long.drop_duplicates(keys)


def robustness_table(
    long: pd.DataFrame, *, reference: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per finding with its verdict under each level and whether they all agree.

    Args:
        long: columns finding, dimension, level, verdict (see the module docstring).
        reference: finding -> the main run's verdict; findings missing here use the most
            frequent verdict.

    Returns:
        Columns ``finding``, one per level name in the order dimensions then levels appear
        (e.g. "draw 0", "seed 2", "sampled decoding", "half A"; "" where a finding lacks that
        level), ``verdict``, ``agree`` (bool), ``disagree_on`` ("; "-joined level names) and
        ``sentence``.
    """
    long = _validate(long)
    order = sorted(
        dict.fromkeys(zip(long["dimension"], long["level"], strict=True)),
        key=lambda dl: DIMENSIONS.index(str(dl[0])),
    )  # stable: levels keep their input order within a dimension
    names = [level_name(str(d), lv) for d, lv in order]
    rows = []
    for finding, sub in long.groupby("finding", sort=False):
        got = {level_name(str(d), lv): (str(d), str(v))
               for d, lv, v in zip(sub["dimension"], sub["level"], sub["verdict"], strict=True)}  # fmt: skip
        counts = Counter(str(v) for v in sub["verdict"])
        ref = (reference or {}).get(str(finding))
        if ref is None:
            top = max(counts.values())
            ref = next(str(v) for v in sub["verdict"] if counts[str(v)] == top)
        verdicts = {(got[n][0], n): got[n][1] for n in names if n in got}
        differs = [n for (_, n), v in verdicts.items() if v != ref]
        row: dict[str, object] = {"finding": finding}
        row.update({n: got[n][1] if n in got else "" for n in names})
        row.update(verdict=ref, agree=not differs, disagree_on="; ".join(differs),
                   sentence=sentence(ref, verdicts))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows, columns=["finding", *names, "verdict", "agree", "disagree_on",
                                       "sentence"])  # fmt: skip
