"""Observe: marker->function attention at every layer, Python vs Rust, tests vs false markers.

One forward pass per sample reads every layer (``layer_scan.parquet``), in the study's default
scope (``--rows``/``--targets``) and in the PLIP-rs scope (the marker's first token to the
tokens at the target characters), so the report can show both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.records import SCAN_KEYS, SCAN_ORDER, scan_rows
from experiments.study import CommonConfig, ConfigError, Prepared, Study, open_study, run_chunks
from plip_nn.edits import Condition, Probe
from plip_nn.scope import PLIP_ROWS, PLIP_TARGETS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Config", "choose_layer", "main", "run_scan", "scan_scopes"]


@dataclass(frozen=True, kw_only=True)
class Config(CommonConfig):
    """Scan config: the common flags plus which corpus kinds to scan.

    Attributes:
        kinds: corpus kinds to scan: test, baseline and/or generation.
    """

    kinds: tuple[str, ...] = ("test", "baseline")

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [k for k in self.kinds if k not in ("test", "baseline", "generation")]
        if bad or not self.kinds:
            raise ConfigError(f"--kinds {self.kinds!r}: use test, baseline and/or generation")
        object.__setattr__(self, "kinds", tuple(self.kinds))


def scan_scopes(cfg: CommonConfig) -> list[tuple[str, str]]:
    """The (rows, targets) read by the scan: the default scope first, then PLIP-rs's."""
    return list(dict.fromkeys([(cfg.rows, cfg.targets), (PLIP_ROWS, PLIP_TARGETS)]))


def run_scan(study: Study, kinds: tuple[str, ...] = ("test", "baseline")) -> pd.DataFrame:
    """Scan ``kinds`` samples at every layer; returns (and writes) ``layer_scan``."""
    import pandas as pd

    # torch loads when the experiment runs, not with the CLI
    from plip_nn.trace import Item
    from plip_nn.trace import run as run_items

    n_layers = study.handle.n_layers
    units = [p for kind in kinds for p in study.select(kind)]
    scopes = scan_scopes(study.cfg)

    def work(chunk: list[Prepared]) -> pd.DataFrame:
        items = [
            Item(
                key=f"{p.id}|{rows}|{targets}",
                sample_id=p.id,
                input_ids=p.input_ids,
                condition=Condition(name="baseline"),
                probe=Probe(
                    layers=tuple(range(n_layers)),
                    sources=p.positions.rows(rows),
                    targets=p.positions.target_set(targets),
                ),
            )
            for p in chunk
            for rows, targets in scopes
        ]
        results = run_items(
            study.handle, items, batch_size=study.cfg.batch_size, remote=study.cfg.remote
        )
        by_key = {res.key: res for res in results}
        rows = [
            row
            for p in chunk
            for r, t in scopes
            for row in scan_rows(
                model=study.model_name, prepared=p, result=by_key[f"{p.id}|{r}|{t}"],
                rows=r, targets=t,
            )
        ]  # fmt: skip
        return pd.DataFrame(rows)

    run_chunks(study, "layer_scan", units, lambda p: p.id, work, desc="scan")
    return study.run.assemble("layer_scan", SCAN_ORDER, SCAN_KEYS)


def choose_layer(
    scan: pd.DataFrame, rows: str | None = None, targets: str | None = None,
    sample_ids: Sequence[str] | None = None,
) -> int:  # fmt: skip
    """The layer where mean Python test-marker -> function attention is highest.

    This is the "observe" step's choice of where to intervene (the seed picked the peak
    layer the same way), in the scope ``rows``/``targets`` (default: the scan's first scope)
    and over ``sample_ids`` (default: all). Falls back to all test samples when there is no
    Python.

    Every layer can be chosen, the last included: the readouts are at the call (the edited
    rows run up to its prediction row) and after the marker (Python's marker row is the
    prediction row), so an edit of the last layer reaches the output there.
    """
    tests = scan[scan["kind"] == "test"]
    if "rows" in tests and len(tests):
        rows = rows if rows is not None else str(tests["rows"].iloc[0])
        targets = targets if targets is not None else str(tests["targets"].iloc[0])
        tests = tests[(tests["rows"] == rows) & (tests["targets"] == targets)]
    if sample_ids is not None:
        tests = tests[tests["sample_id"].isin(set(sample_ids))]
    py = tests[tests["language"] == "python"]
    use = py if not py.empty else tests
    if use.empty:
        raise ConfigError("cannot choose a layer: the scan has no test samples; pass --layer")
    means = use.groupby("layer")["attn_level"].mean()
    return int(means.idxmax())


def main(cfg: Config) -> Path:
    """Run the layer scan and return the run directory."""
    study = open_study(cfg, "scan", cfg.kinds, cfg.to_dict())
    scan = run_scan(study, cfg.kinds)
    study.run.update_manifest(peak_layer=choose_layer(scan) if "test" in cfg.kinds else None)
    study.run.finish()
    return study.run.path
