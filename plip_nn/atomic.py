"""Atomic file writes: the one writer behind run directories, corpus files, reports and figures.

A file is written to a temporary file in the same directory (named ``.<name>.tmp-<pid>-<n>``),
flushed to disk with ``fsync`` and then renamed over the target with ``os.replace``, which is
atomic on POSIX. A reader therefore sees the old file or the new one, never half of one; a
write that fails leaves the old file as it was and removes its temporary file. A process killed
mid-write can leave a temporary file behind: its name contains :data:`TMP_MARK`, so a caller
that resumes (``RunDir.open(resume=True)``) can find and delete it.

Importing this module loads neither torch nor pandas, so :mod:`analysis` uses it too.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TMP_MARK",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
]

TMP_MARK = ".tmp-"
_serial = itertools.count()  # distinct temporary names for writes from several threads


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file, which replaces ``path``.

    The parent directory is created if missing. On any exception (in ``write`` or after it) the
    temporary file is removed, ``path`` is left as it was and the exception propagates.

    Args:
        path: the file to write.
        write: called with the temporary path; it must create and fill that file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{next(_serial)}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, UTF-8."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as run-directory JSON (indent 2, sorted keys, ``str`` for other types)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    """Write ``df`` to ``path`` as parquet without its index, atomically."""
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))
