"""The training script's command line: the flags of :class:`~embedded.config.TrainConfig`, derived
by :func:`experiments.flags.config_flags` (the helper ``plip-nn`` uses), plus the training mix
(``--copy-fraction``, ``--wrap-fraction``) and the runs that train nothing (``--card-only``,
``--export-checkpoint``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from embedded.config import TrainConfig, copy_mix
from experiments.flags import config_flags

__all__ = ["build_parser", "config_from_args", "main", "parse_config"]

_NO_FLAG = ("mix",)  # set by --copy-fraction / --wrap-fraction


def build_parser() -> argparse.ArgumentParser:
    """Every ``TrainConfig`` field as a flag, then the mix and the runs that train nothing."""
    import embedded

    parser = argparse.ArgumentParser(
        prog="train_embedded_model.py", description=str(embedded.__doc__).split("\n\n")[0]
    )
    config_flags(parser, TrainConfig, exclude=_NO_FLAG)
    mix = parser.add_argument_group("training mix (sets the config's mix)")
    mix.add_argument(
        "--copy-fraction", type=float, default=None,
        help="train on this fraction of copy curriculum (random names), the rest real code",
    )  # fmt: skip
    mix.add_argument(
        "--wrap-fraction", type=float, default=0.0,
        help="with --copy-fraction: this fraction of real functions followed by a calling test",
    )  # fmt: skip
    runs = parser.add_argument_group("runs that train nothing")
    runs.add_argument(
        "--export-checkpoint", action="store_true",
        help="no training: save --checkpoint-dir's last.pt (a stopped run, same flags) to --out",
    )  # fmt: skip
    runs.add_argument(
        "--card-only", action="store_true",
        help="no training: rewrite MODEL_CARD.md from --out's training_metrics.json",
    )  # fmt: skip
    runs.add_argument(
        "--study-run", type=Path, default=None,
        help="with --card-only: a `plip-nn triangle` run directory of this model for the card",
    )  # fmt: skip
    runs.add_argument(
        "--study-seconds", type=float, default=None, help="with --study-run: its wall time"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config of parsed flags (``--copy-fraction`` sets the mix)."""
    values: dict[str, Any] = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in _NO_FLAG
    }
    if args.copy_fraction is not None:
        values["mix"] = copy_mix(args.copy_fraction, args.wrap_fraction)
    return TrainConfig(**values)


def parse_config(argv: Sequence[str]) -> TrainConfig:
    """The config a command line trains (or exports) with; runs nothing."""
    return config_from_args(build_parser().parse_args(list(argv)))


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the command line: train (the default), export a checkpoint, or rewrite the card."""
    from embedded.card import rewrite_card
    from embedded.train import export_checkpoint, train_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.card_only:
        return rewrite_card(args.out, args.study_run, args.study_seconds)
    cfg = config_from_args(args)
    if args.export_checkpoint:
        return export_checkpoint(cfg)
    return train_model(cfg)
