"""Source files under the mined roots: a sorted walk that follows folder links once, and reads.

Nothing is imported or run: files are read as text. A folder reached twice (a symlink loop, or
two links to one folder) is walked once; a file reached through several links is read once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SourceFile", "read_source", "source_files"]

_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", "target", ".tox", ".venv"}


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    """One file found under a root.

    Attributes:
        path: The file as found (under ``root``; links not resolved, so provenance names it).
        root: The mined root it was found under.
        rel: ``path`` relative to ``root``, POSIX spelling.
    """

    path: Path
    root: Path
    rel: str


def source_files(root: Path, suffix: str) -> Iterator[SourceFile]:
    """Files named ``*<suffix>`` under ``root`` in sorted path order, each real file once.

    Folder links are followed, but a folder whose (device, inode) was already walked is not
    entered again, so a symlink loop ends. Folders that cannot be listed are skipped.
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    if root.is_file():
        if root.name.endswith(suffix):
            yield SourceFile(path=root, root=root.parent, rel=root.name)
        return
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            continue
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                continue
            if is_dir and entry.name not in _SKIP_DIRS:
                subdirs.append(Path(entry.path))
            elif not is_dir and entry.name.endswith(suffix):
                # A dangling link is yielded too: reading it fails and it is counted unreadable.
                try:
                    fst = os.stat(entry.path)
                    fkey = (fst.st_dev, fst.st_ino)
                except OSError:
                    fkey = (-1, len(seen_files))
                if fkey in seen_files:
                    continue
                seen_files.add(fkey)
                path = Path(entry.path)
                yield SourceFile(path=path, root=root, rel=path.relative_to(root).as_posix())
        stack.extend(reversed(subdirs))  # pop() takes them in sorted order: depth-first, sorted


def read_source(path: Path) -> tuple[str | None, str | None]:
    """(the file's UTF-8 text, None), or (None, why): ``unreadable`` or ``not_utf8``."""
    try:
        data = path.read_bytes()
    except OSError:
        return None, "unreadable"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "not_utf8"
