"""The one atomic writer (plip_nn.atomic) and the writers built on it: run dirs, corpus, figures."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from synthetic_runs import make_run_dir

from analysis import figures
from analysis.report import analyze
from plip_nn.atomic import (
    TMP_MARK,
    atomic_write,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
)


class Boom(RuntimeError):
    pass


def _half_write(p: Path) -> None:
    p.write_text("half of the new con", encoding="utf-8")
    raise Boom("disk full")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if TMP_MARK in p.name)


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "table.json"
    target.write_text('{"old": true}\n', encoding="utf-8")
    with pytest.raises(Boom, match="disk full"):
        atomic_write(target, _half_write)
    assert target.read_text(encoding="utf-8") == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]


def test_a_failed_write_of_a_new_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(Boom):
        atomic_write(tmp_path / "new.txt", _half_write)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_rename_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(IsADirectoryError):
        atomic_write_text(target, "x")
    assert target.is_dir() and _leftovers(tmp_path) == []


def test_the_writer_sees_a_temporary_in_the_same_directory(tmp_path: Path) -> None:
    seen: list[Path] = []

    def write(p: Path) -> None:
        seen.append(p)
        assert not (tmp_path / "out.bin").exists()  # the target appears only at the rename
        p.write_bytes(b"\x00\x01")

    assert atomic_write(tmp_path / "out.bin", write) == tmp_path / "out.bin"
    assert seen[0].parent == tmp_path and TMP_MARK in seen[0].name
    assert seen[0].name.startswith(".out.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == []


def test_text_and_json_round_trip_and_parent_is_created(tmp_path: Path) -> None:
    text_path = atomic_write_text(tmp_path / "a" / "b" / "note.md", "µ → ✓\n")
    assert text_path.read_bytes() == "µ → ✓\n".encode()
    obj = {"z": [1, 2.5, None], "a": {"nested": "é"}, "path": Path("/x")}
    path = atomic_write_json(tmp_path / "c.json", obj)
    assert json.loads(path.read_text(encoding="utf-8")) == {**obj, "path": "/x"}
    # run-directory format: indent 2, sorted keys, trailing newline
    assert path.read_text(encoding="utf-8") == (
        json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    )
    assert path.read_text(encoding="utf-8").index('"a"') < path.read_text().index('"z"')


def test_parquet_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "sample_id": ["s0", "s1", "s2"],
            "kl": [0.0, 1.5e-9, np.nan],
            "layer": np.array([0, 3, -1], dtype=np.int64),
            "preserved": [True, False, True],
        },
        index=[7, 8, 9],  # the index is not written
    )
    back = pd.read_parquet(atomic_write_parquet(tmp_path / "t.parquet", df))
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True))


def test_importing_the_writer_loads_neither_torch_nor_pandas() -> None:
    code = (
        "import sys, plip_nn.atomic\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pandas', 'numpy')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_save_figure_writes_what_matplotlib_renders_and_closes_the_figure(
    tmp_path: Path,
) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [2, 0, 1])
    reference = io.BytesIO()
    fig.savefig(reference, dpi=90, format="png")
    path = figures.save_figure(fig, tmp_path / "figures" / "line.png", dpi=90)
    assert path.read_bytes() == reference.getvalue()
    assert not plt.fignum_exists(fig.number)
    assert _leftovers(path.parent) == []


def test_save_figure_that_fails_keeps_the_old_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "f.png"
    old.write_bytes(b"old png")
    fig, _ax = plt.subplots()

    def broken_savefig(p: Path, **_: object) -> None:
        Path(p).write_bytes(b"partial")
        raise Boom("renderer crashed")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(Boom):
        figures.save_figure(fig, old)
    assert old.read_bytes() == b"old png" and _leftovers(tmp_path) == []
    assert not plt.fignum_exists(fig.number)


def _reads_counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = pd.read_parquet

    def counting(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", counting)
    return reads


def test_figures_are_drawn_from_the_tables_passed_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run_dir(tmp_path / "run", seed=3, n=12)
    tables = {
        name: pd.read_parquet(run / f"{name}.parquet")
        for name in ("records", "layer_scan", "generations")
    }
    reads = _reads_counted(monkeypatch)
    out = tmp_path / "elsewhere"  # holds no table: figures cannot read one from disk
    written = figures.save_all(out, tables)
    assert reads == []
    assert {p.name for p in written} == {
        "layer_scan.png",
        "kl_by_scope.png",
        "kl_vs_removed_mass.png",
        "dose_response.png",
    }
    assert all(p.parent == out / "figures" and p.stat().st_size > 5_000 for p in written)
    # Only the tables passed in are drawn: without records, only the layer scan is.
    only_scan = figures.save_all(tmp_path / "scan_only", {"layer_scan": tables["layer_scan"]})
    assert [p.name for p in only_scan] == ["layer_scan.png"]


def test_analyze_reads_each_table_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run_dir(tmp_path / "run", seed=4, n=12)
    present = sorted(p.name for p in run.glob("*.parquet"))
    reads = _reads_counted(monkeypatch)
    analyze(run)
    assert sorted(reads) == present  # the figures reuse analyze's tables
    assert len(list((run / "figures").glob("*.png"))) == 6
