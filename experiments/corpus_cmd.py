"""``plip-nn corpus check|annotate|convert``: the corpus commands (the CLI owns stdout/stderr).

Exit codes (docs/CONTRACT.md, "CLI exit codes"): 0 when everything is fine, 2 when the input is
bad; every problem goes to stderr on its own line, naming the file and the sample.
"""

from __future__ import annotations

import sys
from pathlib import Path

from plip_nn.corpus import (
    LISTS,
    CorpusError,
    annotate_file,
    check_corpus,
    convert_file,
    load_corpus,
)

__all__ = ["cli_annotate", "cli_check", "cli_convert"]


def _fail(exc: CorpusError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def cli_check(path: str | Path) -> int:
    """``plip-nn corpus check FILE``: print problems to stderr; 0 if none, else 2."""
    problems = check_corpus(path)
    if problems:
        for pr in problems:
            print(pr, file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    corpus = load_corpus(path)
    counts = {k: len(corpus.select(*v)) for k, v in LISTS.items()}
    print(f"{path}: OK, {len(corpus)} samples {counts}")
    return 0


def cli_annotate(in_path: str | Path, out_path: str | Path) -> int:
    """``plip-nn corpus annotate IN -o OUT``: writes what annotates; 2 if any sample failed."""
    try:
        corpus, problems = annotate_file(in_path, out_path)
    except CorpusError as exc:
        return _fail(exc)
    for pr in problems:
        print(pr, file=sys.stderr)
    print(f"wrote {len(corpus)} annotated samples to {out_path}")
    if problems:
        print(f"{in_path}: {len(problems)} sample(s) not annotated", file=sys.stderr)
        return 2
    return 0


def cli_convert(in_path: str | Path, out_path: str | Path) -> int:
    """``plip-nn corpus convert IN -o OUT``: 0 on success, 2 with one error line."""
    try:
        corpus = convert_file(in_path, out_path)
    except CorpusError as exc:
        return _fail(exc)
    print(f"wrote {len(corpus)} samples to {out_path}")
    return 0
