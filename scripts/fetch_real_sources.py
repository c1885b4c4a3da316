"""Fetch the sources of the shipped real corpus: Debian packages, unpacked, versions locked.

``apt-get download`` (run as root after one ``apt-get update``) fetches each package of
:data:`PACKAGES` into ``DEST/debs``; ``dpkg-deb -R`` unpacks it into ``DEST/<package>`` with its
control file (``DEBIAN/control``: name and version, read by ``plip-nn corpus mine``). The names and
versions are written to ``scripts/real_sources.lock`` (committed); the downloads are not.

Python: the CPython 3.11 standard library, its test suite, lib2to3 and IDLE (the miner keeps
only files outside the embedded model's training split, see ``scripts/build_real_corpus.py``),
and pure-Python ``python3-*`` libraries whose docstrings carry doctests. Rust: ``librust-*-dev``
crates with ``#[test]`` functions, none of them in the embedded model's training list
(``scripts/embedded/data.py`` ``RUST_PACKAGES``; checked here before anything is fetched).

Usage: ``python scripts/fetch_real_sources.py [--dest DIR]`` (default ``.sources/``, gitignored).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from embedded.data import RUST_PACKAGES  # noqa: E402

LOCK = ROOT / "scripts" / "real_sources.lock"
PYTHON_PACKAGES = (
    "libpython3.11-stdlib", "libpython3.11-testsuite", "python3-lib2to3", "idle-python3.11",
    "python3-more-itertools", "python3-toolz", "python3-networkx", "python3-boltons",
    "python3-natsort", "python3-funcy", "python3-humanize", "python3-pyparsing",
    "python3-dateutil", "python3-sortedcontainers", "python3-mpmath", "python3-tabulate",
    "python3-roman", "python3-intervaltree", "python3-bitarray", "python3-pint",
    "python3-jaraco.text", "python3-jaraco.functools", "python3-jaraco.itertools",
    "python3-jaraco.collections", "python3-tempora", "python3-babel", "python3-webcolors",
    "python3-validators", "python3-inflect", "python3-semver", "python3-textdistance",
    "python3-num2words", "python3-isodate", "python3-pyrsistent", "python3-bidict",
    "python3-pendulum",
)  # fmt: skip
RUST_CRATES = (
    "num-complex", "ordered-float", "nom", "bit-vec", "fixedbitset", "unicase", "md5", "crc",
    "adler", "unicode-bidi", "idna", "siphasher", "bytecount", "vec-map", "shlex", "unindent",
    "similar", "globset", "termcolor", "half", "num-iter", "euclid", "yaml-rust", "rgb",
    "ansi-term", "semver-parser", "radix-trie", "nibble-vec", "base32", "byte-unit", "humansize",
    "approx", "lru", "data-encoding", "uuid", "sha1", "unicode-xid", "arrayref",
)  # fmt: skip
#: Fetched for their copyright files only: the stdlib packages' doc folders link to them.
METADATA_PACKAGES = ("libpython3.11-minimal", "python3.11")
PACKAGES = PYTHON_PACKAGES + METADATA_PACKAGES + tuple(f"librust-{c}-dev" for c in RUST_CRATES)


def check_not_trained() -> None:
    """Refuse crates the embedded model trained on (its list in scripts/embedded/data.py)."""
    trained = {c.replace("_", "-") for c in RUST_PACKAGES}
    clash = sorted(c for c in RUST_CRATES if c.replace("_", "-") in trained)
    if clash:
        raise SystemExit(f"crates {clash} are in the embedded model's training list; drop them")


def _control(deb: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True)
    fields = {}
    for line in out.stdout.splitlines():
        if ":" in line and not line.startswith(" "):
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


def fetch(dest: Path) -> list[tuple[str, str]]:
    """Download and unpack every package into ``dest``; returns (package, version) pairs."""
    check_not_trained()
    debs = dest / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    locked = []
    for pkg in PACKAGES:
        have = sorted(debs.glob(f"{pkg}_*.deb"))
        if not have:
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True)
            have = sorted(debs.glob(f"{pkg}_*.deb"))
        control = _control(have[-1])
        tree = dest / pkg
        if not tree.exists():
            subprocess.run(["dpkg-deb", "-R", str(have[-1]), str(tree)], check=True)
        locked.append((control["Package"], control["Version"]))
    return locked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".sources")
    args = parser.parse_args()
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        print("error: apt-get and dpkg-deb are needed (a Debian system)", file=sys.stderr)
        return 2
    locked = fetch(args.dest)
    LOCK.write_text(
        "# Debian packages of the real corpus (scripts/fetch_real_sources.py): name version\n"
        + "".join(f"{name} {version}\n" for name, version in locked)
    )
    print(f"{len(locked)} packages in {args.dest}; versions in {LOCK}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
