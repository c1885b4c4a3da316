"""The robustness table (analysis.robustness): one flipped seed reads "disagree" naming it;
full agreement reads "holds"."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.robustness import level_name, robustness_table, sentence

LEVELS = [("draw", 0), ("draw", 1), ("seed", 0), ("seed", 1), ("seed", 2),
          ("decoding", "greedy"), ("decoding", "sampled"), ("half", "A"), ("half", "B")]  # fmt: skip


def verdicts(flips: dict[tuple[str, str, object], str], findings: tuple[str, ...]) -> pd.DataFrame:
    """Every finding reads "no effect" at every level, except the (finding, dim, level) flipped."""
    rows = [
        {"finding": f, "dimension": d, "level": lv,
         "verdict": flips.get((f, d, lv), "no effect")}
        for f in findings for d, lv in LEVELS
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_one_flipped_seed_disagrees_and_is_named() -> None:
    long = verdicts({("F2", "seed", 2): "inconclusive"}, ("F1", "F2"))
    table = robustness_table(long).set_index("finding")
    assert table.loc["F1", "agree"] and table.loc["F1", "disagree_on"] == ""
    assert table.loc["F1", "sentence"] == "holds across draws, seeds, decoding and halves"
    assert not table.loc["F2", "agree"]
    assert table.loc["F2", "disagree_on"] == "seed 2"
    assert table.loc["F2", "sentence"] == "verdict differs with seed 2 (inconclusive vs no effect)"
    assert table.loc["F2", "seed 2"] == "inconclusive" and table.loc["F2", "seed 1"] == "no effect"
    assert table.loc["F2", "verdict"] == "no effect"
    assert list(table.columns[:3]) == ["draw 0", "draw 1", "seed 0"]


def test_several_disagreements_and_the_main_run_as_reference() -> None:
    flips = {("F1", "draw", 1): "opposite direction", ("F1", "decoding", "sampled"): "inconclusive"}
    table = robustness_table(verdicts(flips, ("F1",))).iloc[0]
    assert table["disagree_on"] == "draw 1; sampled decoding"
    assert table["sentence"] == (
        "verdict differs with draw 1 (opposite direction vs no effect) and "
        "sampled decoding (inconclusive vs no effect)"
    )
    # the main run (reference) read "inconclusive": now every other level disagrees with it
    ref = robustness_table(verdicts({}, ("F1",)), reference={"F1": "inconclusive"}).iloc[0]
    assert not ref["agree"] and ref["disagree_on"].count(";") == len(LEVELS) - 1


def test_only_the_dimensions_present_are_claimed() -> None:
    long = pd.DataFrame({"finding": ["F"] * 2, "dimension": ["seed", "seed"], "level": [0, 1],
                         "verdict": ["no effect"] * 2})  # fmt: skip
    assert robustness_table(long).iloc[0]["sentence"] == "holds across seeds"
    assert sentence("x", {("draw", "draw 0"): "x", ("half", "half A"): "x"}) == (
        "holds across draws and halves"
    )
    assert level_name("decoding", "greedy") == "greedy decoding"


def test_bad_tables_fail_with_the_fix() -> None:
    long = verdicts({}, ("F1",))
    with pytest.raises(ValueError, match="lacks columns"):
        robustness_table(long.drop(columns="level"))
    with pytest.raises(ValueError, match="allowed values"):
        robustness_table(long.assign(dimension="temperature"))
    with pytest.raises(ValueError, match="no verdict under seed 1"):
        robustness_table(long.assign(verdict=long["verdict"].where(
            ~((long["dimension"] == "seed") & (long["level"] == 1)), "")))  # fmt: skip
    twice = pd.concat([long, long.iloc[[0]].assign(verdict="inconclusive")])
    with pytest.raises(ValueError, match="two different verdicts under draw 0"):
        robustness_table(twice)
