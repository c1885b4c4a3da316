"""Build ``plip_nn/data/corpus/real.json`` from the sources of ``fetch_real_sources.py``.

Mines each fetched package with ``plip-nn corpus mine``'s engine, keeping only code the embedded
model did not train on, checked here in code against its training recipe
(``scripts/embedded/data.py``): standard-library files of its training split (every file outside
``PY_SKIP_DIRS`` whose path hash does not put it in the 5% validation split) are skipped unread,
crates of its ``RUST_PACKAGES`` list are refused, and function names of its held-out prompts and
of the built-in corpus are excluded. Only packages whose licence (read from their metadata)
allows redistribution are kept. Prints the mining summary per source.

Usage: ``python scripts/build_real_corpus.py [--sources .sources] [-o OUT.json]``
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from embedded.data import PY_SKIP_DIRS, RUST_PACKAGES, eval_function_names, is_val  # noqa: E402
from fetch_real_sources import METADATA_PACKAGES, PYTHON_PACKAGES, RUST_CRATES  # noqa: E402

from plip_nn.atomic import atomic_write_text  # noqa: E402
from plip_nn.corpus import DEFAULT_CORPUS_PATH, check_corpus, load_corpus  # noqa: E402
from plip_nn.corpus.mine.core import MineConfig, MinedSample, corpus_json, mine  # noqa: E402
from plip_nn.corpus.mine.files import source_files  # noqa: E402

OUT = DEFAULT_CORPUS_PATH.parent / "real.json"
NAMES = ROOT / "scripts" / "real_exclude_names.txt"
STDLIB = ("libpython3.11-stdlib", "libpython3.11-testsuite", "python3-lib2to3", "idle-python3.11")
#: Licences that allow redistribution (matched as words in the metadata's spelling).
PERMISSIVE = re.compile(
    r"(?<![A-Za-z])(MIT|Expat|Apache|BSD|PSF|PYTHON SOFTWARE FOUNDATION|MPL|ISC|Unlicense|Zlib|BSL|CC0)",
    re.IGNORECASE,
)
COPYLEFT = re.compile(r"\b(L?GPL|AGPL|EUPL|CC-BY-SA)", re.IGNORECASE)


def trained_stdlib_file(rel: str) -> bool:
    """Whether the embedded model trained on this standard-library file (path under Lib/)."""
    if any(part in PY_SKIP_DIRS for part in Path(rel).parts):
        return False
    return not is_val(f"python/{rel}", 5)


def trained_crate(name: str) -> bool:
    return name.replace("_", "-") in {c.replace("_", "-") for c in RUST_PACKAGES}


def redistributable(licence: str | None) -> bool:
    return bool(licence and PERMISSIVE.search(licence) and not COPYLEFT.search(licence))


def excluded_names() -> list[str]:
    builtin = load_corpus(DEFAULT_CORPUS_PATH)
    names = {s.function.name for s in builtin.samples if s.function is not None}
    return sorted(names | eval_function_names())


def python_roots(sources: Path) -> list[Path]:
    roots = []
    for pkg in PYTHON_PACKAGES:
        base = sources / pkg / "usr" / "lib"
        for sub in ("python3.11", "python3/dist-packages"):
            if (base / sub).is_dir():
                roots.append(base / sub)
    return roots


def stdlib_training_files(roots: list[Path]) -> set[str]:
    out = set()
    for root in roots:
        if root.parts[-4] not in STDLIB:
            continue
        for f in source_files(root, ".py"):
            if trained_stdlib_file(f.rel):
                out.add(f"{root.name}/{f.rel}")
    return out


def _keep(samples: tuple[MinedSample, ...]) -> tuple[list[MinedSample], dict[str, int]]:
    kept: list[MinedSample] = []
    refused: dict[str, int] = {}
    for m in samples:
        pkg, lic = m.provenance["package"], m.provenance["licence"]
        if not redistributable(lic) or trained_crate(pkg):
            refused[f"{pkg} ({lic})"] = refused.get(f"{pkg} ({lic})", 0) + 1
        else:
            kept.append(m)
    return kept, refused


def build(sources: Path, out: Path) -> dict[str, Any]:
    if clash := [c for c in RUST_CRATES if trained_crate(c)]:
        raise SystemExit(f"crates {clash} are in the embedded model's training list")
    names = excluded_names()
    NAMES.write_text("# excluded from the real corpus: built-in corpus and held-out prompt names\n"
                     + "".join(n + "\n" for n in names))  # fmt: skip
    py_roots = python_roots(sources)
    rs_roots = [sources / f"librust-{c}-dev" for c in RUST_CRATES]
    data: dict[str, Any] = {"_format_version": "2.0"}
    report: dict[str, Any] = {}
    runs: tuple[tuple[Literal["python", "rust"], list[Path], set[str]], ...] = (
        ("python", py_roots, stdlib_training_files(py_roots)),
        ("rust", rs_roots, set()),
    )
    for language, roots, skip in runs:
        cfg = MineConfig(
            paths=tuple(roots),
            language=language,
            max_tokens=400,
            exclude_names=frozenset(names),
            exclude_files=frozenset(skip),
        )
        result = mine(cfg)
        kept, refused = _keep(result.samples)
        per_root = {str(Path(r).relative_to(sources)): s.to_json() for r, s in result.per_root}
        report[language] = {"total": result.summary.to_json(), "refused_licence": refused}
        part = corpus_json(kept, language, {"roots": per_root})
        data.update({k: v for k, v in part.items() if not k.startswith("_")})
        data[f"_mined_{language}"] = part["_mined"]
    data["_sources"] = sources_table(data)
    atomic_write_text(out, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    problems = check_corpus(out)
    if problems:
        raise SystemExit(f"{out}: {len(problems)} problem(s), first: {problems[0]}")
    return report


def sources_table(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for key in ("python_doctest", "rust_test"):
        for e in data.get(key, []):
            p = e["provenance"]
            row = rows.setdefault(
                (p["package"], p["version"]),
                {"package": p["package"], "version": p["version"], "licence": p["licence"],
                 "language": key.split("_")[0], "samples": 0},
            )  # fmt: skip
            row["samples"] += 1
    return sorted(rows.values(), key=lambda r: (r["language"], r["package"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, default=ROOT / ".sources")
    parser.add_argument("-o", "--out", type=Path, default=OUT)
    args = parser.parse_args()
    missing = [p for p in (*PYTHON_PACKAGES, *METADATA_PACKAGES) if not (args.sources / p).is_dir()]
    if missing:
        print(
            f"error: {missing} not under {args.sources}; run fetch_real_sources.py", file=sys.stderr
        )
        return 2
    report = build(args.sources, args.out)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
