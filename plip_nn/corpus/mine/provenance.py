"""Where a mined sample comes from: package, version and licence read from metadata, never guessed.

A source root is one PATH given to ``plip-nn corpus mine``. Its package is read, in this order, from
a Debian package unpacked with ``dpkg-deb -R`` (``DEBIAN/control``: Package, Version; the licence from
``usr/share/doc/<package>/copyright``), the nearest ``Cargo.toml`` above the file (``[package]``
name, version, license), a Python ``*.dist-info/METADATA`` or ``*.egg-info/PKG-INFO`` (Name,
Version, License), and a ``LICENSE``/``COPYING`` file at the root (its first non-empty line). What is
not found stays ``None``: the licence is never inferred from a package's name or its code.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib  # novermin
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["PackageInfo", "debian_licences", "debian_root", "package_of", "provenance"]

_LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENSE-MIT", "COPYING", "LICENCE")


@dataclass(frozen=True, kw_only=True)
class PackageInfo:
    """The package a file belongs to.

    Attributes:
        name: Package name (Debian package, crate, distribution; else the root folder's name).
        version: Its version, or None when no metadata gives one.
        licence: The licence as its metadata spells it, or None when none was found.
        licence_from: The file the licence was read from (relative to the root), or None.
        root: The folder the file paths are given relative to.
    """

    name: str
    version: str | None
    licence: str | None
    licence_from: str | None
    root: Path


def _fields(text: str) -> dict[str, str]:
    """RFC-822 style ``Key: value`` fields of the first paragraph (continuations dropped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        if line[0] not in " \t" and ":" in line:
            key, value = line.split(":", 1)
            out.setdefault(key.strip(), value.strip())
    return out


def _dep5(text: str) -> list[tuple[list[str], str]]:
    """(Files patterns, License short name) of a machine-readable copyright file's paragraphs."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        files: list[str] = []
        lic = None
        for line in para.splitlines():
            if line.startswith("Files:"):
                files = line.split(":", 1)[1].split()
            elif files and line[:1] in " \t" and lic is None:
                files += line.split()
            elif line.startswith("License:"):
                lic = line.split(":", 1)[1].strip()
        if files and lic:
            out.append((files, lic))
    return out


def debian_licences(text: str, file: str | None = None) -> str | None:
    """The licence a Debian ``copyright`` file gives ``file`` (or the package), or None.

    Machine-readable files (DEP-5): the ``License:`` of the last ``Files:`` paragraph whose
    pattern matches the file (a pattern is matched against every tail of the installed path,
    since Debian's patterns name upstream paths), else of the ``Files: *`` paragraph; without
    ``file``, the ``Files: *`` paragraph's. A free-form file (CPython's): the first licence title
    written in capitals, as written.
    """
    if text.startswith("Format:"):
        paras = _dep5(text)
        found = next((lic for files, lic in paras if "*" in files), None)
        if file is not None:
            parts = file.split("/")
            tails = ["/".join(parts[i:]) for i in range(len(parts))]
            for files, lic in paras:
                if any(fnmatch(t, pat) for pat in files if pat != "*" for t in tails):
                    found = lic
        return found
    for line in text.splitlines():
        title = line.strip()
        if title.isupper() and "LICENSE" in title and title[-1].isalnum():
            return title
    return None


def _copyright(root: Path, name: str) -> Path | None:
    """The package's copyright file; a doc folder that links to another package's (Debian does
    this within one source package) is followed into that package's unpacked tree next to it."""
    doc = root / "usr" / "share" / "doc" / name
    if (doc / "copyright").is_file():
        return doc / "copyright"
    if doc.is_symlink():
        target = Path(doc.readlink()).name
        sibling = root.parent / target / "usr" / "share" / "doc" / target / "copyright"
        if sibling.is_file():
            return sibling
    return None


def _cargo(path: Path) -> dict[str, Any] | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    pkg = data.get("package")
    return pkg if isinstance(pkg, dict) else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


@cache
def _debian(root: Path) -> PackageInfo | None:
    control = _read(root / "DEBIAN" / "control")
    if control is None:
        return None
    fields = _fields(control)
    name = fields.get("Package")
    if not name:
        return None
    copyright_path = _copyright(root, name)
    text = _read(copyright_path) if copyright_path is not None else None
    licence = debian_licences(text) if text is not None else None
    where = None
    if licence and copyright_path is not None:
        where = os.path.relpath(copyright_path, root)
    return PackageInfo(
        name=name,
        version=fields.get("Version"),
        licence=licence,
        licence_from=where,
        root=root,
    )


@cache
def _crate(cargo_toml: Path, root: Path) -> PackageInfo | None:
    pkg = _cargo(cargo_toml)
    if pkg is None or not isinstance(pkg.get("name"), str):
        return None
    lic = pkg.get("license")
    return PackageInfo(
        name=pkg["name"],
        version=pkg.get("version") if isinstance(pkg.get("version"), str) else None,
        licence=lic if isinstance(lic, str) else None,
        licence_from=str(cargo_toml.relative_to(root)) if isinstance(lic, str) else None,
        root=root,
    )


@cache
def _python_dist(root: Path) -> PackageInfo | None:
    metas = sorted(root.rglob("*.dist-info/METADATA")) + sorted(root.rglob("*.egg-info/PKG-INFO"))
    for meta in metas:
        fields = _fields(_read(meta) or "")
        if not fields.get("Name"):
            continue
        lic = fields.get("License-Expression") or fields.get("License")
        lic = lic if lic and lic.upper() != "UNKNOWN" else None
        return PackageInfo(
            name=fields["Name"],
            version=fields.get("Version"),
            licence=lic,
            licence_from=str(meta.relative_to(root)) if lic else None,
            root=root,
        )
    return None


@cache
def _folder(root: Path) -> PackageInfo:
    for name in _LICENSE_FILES:
        text = _read(root / name)
        if text is None:
            continue
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), None)
        if first:
            return PackageInfo(
                name=root.name, version=None, licence=first, licence_from=name, root=root
            )
    return PackageInfo(name=root.name, version=None, licence=None, licence_from=None, root=root)


def debian_root(root: Path) -> Path | None:
    """``root`` or the nearest folder above it holding ``DEBIAN/control`` (``dpkg-deb -R``)."""
    for folder in (root.resolve(), *root.resolve().parents):
        if (folder / "DEBIAN" / "control").is_file():
            return folder.resolve()
    return None


def package_of(file: Path, root: Path) -> PackageInfo:
    """The package of ``file`` (under ``root``), from the first metadata source that names one."""
    top = debian_root(root)
    deb = _debian(top) if top is not None else None
    crate = None
    for parent in file.parents:
        if parent == root.parent or not parent.is_relative_to(root):
            break
        if (parent / "Cargo.toml").is_file():
            crate = _crate(parent / "Cargo.toml", root)
            break
    if crate is not None:
        if deb is not None:  # a Debian crate package: the crate's own fields, the Debian version
            return PackageInfo(
                name=crate.name,
                version=deb.version,
                licence=crate.licence or deb.licence,
                licence_from=crate.licence_from if crate.licence else deb.licence_from,
                root=root,
            )
        return crate
    if deb is not None:
        return deb
    return _python_dist(root) or _folder(root)


def provenance(file: Path, root: Path, line: int, sha256: str) -> dict[str, Any]:
    """The ``provenance`` object of one sample."""
    pkg = package_of(file, root)
    top = debian_root(root)
    where = file.resolve().relative_to(top) if top is not None else file.relative_to(root)
    licence = pkg.licence
    if top is not None and pkg.licence_from and pkg.licence_from.endswith("copyright"):
        text = _read(top / pkg.licence_from)  # per-file licence of a Debian copyright file
        licence = debian_licences(text, where.as_posix()) if text is not None else None
    return {
        "package": pkg.name,
        "version": pkg.version,
        "file": where.as_posix(),
        "line": line,
        "licence": licence,
        "licence_from": pkg.licence_from,
        "sha256": sha256,
    }
