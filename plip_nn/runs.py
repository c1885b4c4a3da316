"""Run directories: resolved config, manifest, per-chunk parts, atomic writes, resume.

A run directory holds ``config.json`` (the resolved config), ``manifest.json`` (versions, git
commit, model, seed, times, remote or not -- never a secret), one folder of *parts* per table
(``parts/<table>/<chunk>.parquet``) and the assembled tables (``<table>.parquet``).

Every file is written atomically by :mod:`plip_nn.atomic` (a temporary file in the same
directory, fsync-ed, then ``os.replace``-d into place). A run killed at any moment therefore
leaves only complete parts (plus stray temporaries, removed on resume). ``--resume`` skips
chunks whose part exists and assembles the table from the parts, so a resumed run has exactly
the rows of an uninterrupted one, each once. It refuses a different git commit or plip-nn
version (one table would mix rows of two codes) unless ``allow_code_change``;
``manifest.json``'s ``code_versions`` lists every session's code version and the parts it wrote.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plip_nn.atomic import TMP_MARK, atomic_write_json, atomic_write_parquet

if TYPE_CHECKING:  # pandas loads when a table is read or written: the CLI's --help stays quick
    import pandas as pd

__all__ = [
    "SECRET_ENV_VARS",
    "RunDir",
    "RunDirError",
    "code_version",
    "package_versions",
]

log = logging.getLogger(__name__)

SECRET_ENV_VARS = ("NDIF_API_KEY", "HF_TOKEN")


class RunDirError(ValueError):
    """The run directory cannot be used as asked (exists without resume, config differs, ...)."""


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def package_versions() -> dict[str, str]:
    """Versions of python and the libraries that determine the numbers."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "nnsight", "numpy", "pandas", "plip-nn"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def code_version() -> dict[str, str | None]:
    """The code that computes the rows: git commit (None outside a checkout) and version."""
    return {"git_commit": _git_commit(), "package_version": package_versions()["plip-nn"]}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _scrub(obj: Any) -> Any:
    """Drop any value equal to a secret from the environment (defence in depth)."""
    secrets = {v for k in SECRET_ENV_VARS if (v := os.environ.get(k))}
    if not secrets:
        return obj
    if isinstance(obj, Mapping):
        return {k: _scrub(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_scrub(v) for v in obj]
    if isinstance(obj, str) and any(s in obj for s in secrets):
        return "<redacted>"
    return obj


@dataclass
class RunDir:
    """An open run directory. Create it with :meth:`open`."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(
        cls,
        path: str | Path,
        config: Mapping[str, Any],
        *,
        resume: bool,
        manifest: Mapping[str, Any],
        allow_code_change: bool = False,
    ) -> RunDir:
        """Create ``path`` (or reopen it with ``resume``) and write config.json + manifest.json.

        Args:
            path: the run directory.
            config: the resolved config (JSON-serialisable); on resume it must equal the stored
                one except for the ``resume`` and ``out`` keys.
            resume: reuse an existing directory and keep its finished parts.
            manifest: extra manifest fields (model name/revision, seed, remote, ...).
            allow_code_change: resume even when the git commit or package version differs from
                the one that wrote the run so far. Every session's code version and the parts
                it wrote are kept in the manifest's ``code_versions`` either way.

        Raises:
            RunDirError: the directory exists and is not empty without ``resume``, or the stored
                config differs from ``config``, or it is not a directory, or (on resume) the
                code version differs and ``allow_code_change`` is False.
        """
        path = Path(path)
        config = _scrub(dict(config))
        cfg_file = path / "config.json"
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {path} exists and is not a directory; choose another path")
        if path.exists() and any(path.iterdir()):
            if not resume:
                raise RunDirError(
                    f"run directory {path} already exists and is not empty; pass --resume to "
                    "continue it or choose another --out"
                )
            if not cfg_file.exists():
                raise RunDirError(
                    f"cannot resume {path}: it has no config.json (not a plip-nn run directory)"
                )
            try:
                stored = json.loads(cfg_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise RunDirError(f"cannot resume {path}: config.json is corrupt ({exc})") from exc
            ignore = {"resume", "out", "allow_code_change"}
            diff = sorted(
                k
                for k in set(stored) | set(config)
                if k not in ignore and stored.get(k) != _jsonable(config.get(k))
            )
            if diff:
                shown = ", ".join(f"{k}: {stored.get(k)!r} -> {config.get(k)!r}" for k in diff[:4])
                raise RunDirError(
                    f"cannot resume {path}: the config differs from the stored one ({shown}); "
                    "rerun with the same flags or use a new --out"
                )
            if not allow_code_change:
                _check_same_code(path)
            for tmp in path.rglob(f"*{TMP_MARK}*"):
                tmp.unlink(missing_ok=True)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg_file, config)
        previous: dict[str, Any] = {}
        if resume and (path / "manifest.json").exists():
            try:
                previous = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                previous = {}
        code = code_version()
        session: dict[str, Any] = {**code, "started": _now(), "parts": {}}
        full = {
            **_scrub(dict(manifest)),
            "versions": package_versions(),
            "git_commit": code["git_commit"],
            "code_versions": [*previous.get("code_versions", []), session],
            "started": previous.get("started", _now()),
            "resumed": [*previous.get("resumed", []), _now()] if previous else [],
            "finished": None,
            "status": "running",
        }
        run = cls(path=path, manifest=full)
        run._write_manifest()
        return run

    def _write_manifest(self) -> None:
        atomic_write_json(self.path / "manifest.json", _scrub(self.manifest))

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self._write_manifest()

    def finish(self) -> None:
        self.manifest["finished"] = _now()
        self.manifest["status"] = "complete"
        self._write_manifest()

    # ---- parts -----------------------------------------------------------------------------

    def _parts_dir(self, table: str) -> Path:
        d = self.path / "parts" / table
        d.mkdir(parents=True, exist_ok=True)
        return d

    def has_part(self, table: str, key: str) -> bool:
        return (self._parts_dir(table) / f"{key}.parquet").exists()

    def write_part(self, table: str, key: str, df: pd.DataFrame) -> None:
        atomic_write_parquet(self._parts_dir(table) / f"{key}.parquet", df)
        # Provenance: which code version wrote this part (the current session's entry).
        session = self.manifest["code_versions"][-1]
        session["parts"].setdefault(table, []).append(key)
        self._write_manifest()

    def read_parts(self, table: str) -> pd.DataFrame:
        import pandas as pd

        frames = []
        for part in sorted(self._parts_dir(table).glob("*.parquet")):
            try:
                frames.append(pd.read_parquet(part))
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise RunDirError(
                    f"part {part} is unreadable ({type(exc).__name__}); delete that file and "
                    "rerun with --resume to recompute it"
                ) from exc
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    def assemble(self, table: str, order: Iterable[str], key_cols: list[str]) -> pd.DataFrame:
        """Concatenate the parts of ``table``, sort by ``order``, check keys, write it."""
        df = self.read_parts(table)
        if df.empty:
            return df
        dup = df.duplicated(subset=key_cols)
        if dup.any():
            raise RunDirError(
                f"{table}: {int(dup.sum())} duplicated rows in {self.path / 'parts' / table}; "
                "the run directory was modified by hand -- start a new run"
            )
        df = df.sort_values(list(order), kind="stable").reset_index(drop=True)
        atomic_write_parquet(self.path / f"{table}.parquet", df)
        return df

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, _scrub(obj))

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))


def _check_same_code(path: Path) -> None:
    """Refuse to resume ``path`` with a different git commit or package version."""
    try:
        previous = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return  # no manifest yet: nothing was recorded by other code
    before = {
        "git_commit": previous.get("git_commit"),
        "package_version": (previous.get("versions") or {}).get("plip-nn"),
    }
    now = code_version()
    diff = [k for k in before if before[k] != now[k]]
    if diff:
        shown = ", ".join(f"{k} {before[k]} (run) vs {now[k]} (now)" for k in diff)
        raise RunDirError(
            f"cannot resume {path}: it was written by different code ({shown}); rerun with the "
            "code that started it, use a new --out, or pass --allow-code-change to mix them "
            "(each part's code version is then recorded in manifest.json)"
        )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
