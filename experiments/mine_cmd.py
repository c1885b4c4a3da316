"""``plip-nn corpus mine PATH... --language python|rust --out FILE.json``: mine a corpus.

Exit codes: 0 when a corpus was written, 2 on bad input (a missing path, no source file of the
language, a bad flag value, an unreadable ``--exclude-names`` file), one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import cast

from plip_nn.corpus.mine import MineConfig, MineError, mine, write_mined
from plip_nn.corpus.model import Language

__all__ = ["add_mine_parser", "cli_mine"]


def add_mine_parser(csub: argparse._SubParsersAction) -> None:
    """Register ``corpus mine`` and its flags."""
    m = csub.add_parser("mine", help="mine (function, test that calls it) pairs from source trees")
    m.add_argument("paths", nargs="+", metavar="PATH", help="source trees or files (read only)")
    m.add_argument("--language", required=True, help="python or rust")
    m.add_argument("--out", required=True, help="the corpus JSON to write")
    m.add_argument("--max-tokens", type=int, default=512, help="token budget per sample")
    m.add_argument("--min-params", type=int, default=1, help="fewest parameters (self counts)")
    m.add_argument("--max-params", type=int, default=6, help="most parameters")
    m.add_argument("--exclude-names", default=None, help="file of function names to leave out")
    m.add_argument(
        "--exclude-files", default=None, help="file of ROOT_NAME/relative/path lines to skip"
    )


def _lines(path: str | None, flag: str) -> frozenset[str]:
    if path is None:
        return frozenset()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MineError(f"{flag} {path}: cannot read it ({exc}); give a UTF-8 text file") from None
    return frozenset(
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")
    )


def cli_mine(args: argparse.Namespace) -> int:
    """Mine, write ``--out``, print the summary; 2 with one line on bad input."""
    try:
        cfg = MineConfig(
            paths=tuple(Path(p) for p in args.paths),
            language=cast(Language, args.language),  # MineConfig checks it
            max_tokens=args.max_tokens,
            min_params=args.min_params,
            max_params=args.max_params,
            exclude_names=_lines(args.exclude_names, "--exclude-names"),
            exclude_files=_lines(args.exclude_files, "--exclude-files"),
        )
        t0 = time.perf_counter()
        result = mine(cfg)
    except MineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_mined(result, cfg, Path(args.out))
    seconds = time.perf_counter() - t0
    for line in result.summary.lines():
        print(line)
    print(f"wrote {len(result.samples)} {cfg.language} pairs to {args.out} ({seconds:.1f} s)")
    return 0
