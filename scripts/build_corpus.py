"""Build ``plip_nn/data/corpus/corpus.json`` from the hand-written sources, via the annotator.

Generation prompts are cut from the test samples with the annotator and tree-sitter:
Python keeps the function up to its first doctest ``>>> `` (the complete function is the
sample's ``source``); Rust keeps everything before the test item and appends ``#[test]\\nfn ``.

No sample may test a function name the embedded model trained on: ``build`` gathers its
training sources and fails with the offending names (``corpus_sources/trained_names.py``).

Usage: ``python scripts/build_corpus.py [-o OUT.json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from corpus_sources import (  # noqa: E402
    baselines,
    baselines_more,
    python_more_a,
    python_more_b,
    python_more_c,
    python_tests,
    rust_more_a,
    rust_more_b,
    rust_more_c,
    rust_more_d,
    rust_tests,
    trained_names,
)

from plip_nn.codesrc import rust_parser  # noqa: E402
from plip_nn.corpus import (  # noqa: E402
    DEFAULT_CORPUS_PATH,
    PY_GENERATION_SUFFIX,
    RUST_GENERATION_SUFFIX,
    Corpus,
    annotate_file,
    annotate_python,
    annotate_rust,
    check_corpus,
)

logger = logging.getLogger("build_corpus")

PYTHON_TESTS = (
    python_tests.SAMPLES + python_more_a.SAMPLES + python_more_b.SAMPLES + python_more_c.SAMPLES
)
RUST_TESTS = (
    rust_tests.SAMPLES
    + rust_more_a.SAMPLES
    + rust_more_b.SAMPLES
    + rust_more_c.SAMPLES
    + rust_more_d.SAMPLES
)
PYTHON_BASELINES = baselines.PYTHON + baselines_more.PYTHON
RUST_BASELINES = baselines.RUST + baselines_more.RUST


def python_prompt(sample_id: str, code: str) -> dict[str, str]:
    """Generation prompt: the code up to (and including) its first doctest marker ``>>>``."""
    ann = annotate_python(code, kind="test", sample_id=sample_id)
    prompt = code[: ann.marker_char_pos] + PY_GENERATION_SUFFIX
    if not code.startswith(prompt):
        raise ValueError(f"{sample_id}: the first doctest marker does not start an example")
    return {"id": "pyg_" + sample_id.removeprefix("py_"), "code": prompt, "source": code}


def rust_prompt(sample_id: str, code: str) -> dict[str, str]:
    """Generation prompt: the code before the tested item, then ``#[test]`` and its newline."""
    ann = annotate_rust(code, kind="test", sample_id=sample_id)
    data = code.encode("utf-8")
    marker_byte = len(code[: ann.marker_char_pos].encode("utf-8"))
    items = rust_parser().parse(data).root_node.children
    k = next(i for i, n in enumerate(items) if n.end_byte > marker_byte)
    while k > 0 and items[k - 1].type == "attribute_item":
        k -= 1
    head = data[: items[k].start_byte].decode("utf-8").rstrip()
    return {
        "id": "rsg_" + sample_id.removeprefix("rs_"),
        "code": head + "\n\n" + RUST_GENERATION_SUFFIX,
        "function": ann.function.name,
    }


def raw_corpus() -> dict[str, list[dict[str, str]]]:
    """The un-annotated input, in the ``corpus annotate`` input format."""
    return {
        "python_doctest": [{"id": i, "code": c} for i, c in PYTHON_TESTS],
        "rust_test": [{"id": i, "code": c} for i, c in RUST_TESTS],
        "python_baseline": [{"id": i, "code": c} for i, c in PYTHON_BASELINES],
        "rust_baseline": [{"id": i, "code": c} for i, c in RUST_BASELINES],
        "python_generation": [python_prompt(i, c) for i, c in PYTHON_TESTS],
        "rust_generation": [rust_prompt(i, c) for i, c in RUST_TESTS],
    }


def check_names(corpus: Corpus, names: trained_names.TrainedNames) -> None:
    """Fail (``SystemExit``) listing every sample whose function the model trained on."""
    tested = {s.id: s.function.name for s in corpus.samples if s.function is not None}
    bad = trained_names.offending(tested, names)
    if bad:
        raise SystemExit(
            f"{len(bad)} sample(s) use a function name the embedded model trained on; "
            "rename them:\n" + "\n".join(bad)
        )


def build(out: Path) -> int:
    """Annotate the raw corpus into ``out``, check it and its names; returns the sample count."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, built = Path(tmp) / "raw.json", Path(tmp) / "corpus.json"
        raw.write_text(json.dumps(raw_corpus(), ensure_ascii=False), encoding="utf-8")
        corpus, problems = annotate_file(raw, built)
        problems += check_corpus(built)
        if problems:
            raise SystemExit("\n".join(str(p) for p in problems))
        check_names(corpus, trained_names.load_trained_names())
        shutil.copyfile(built, out)  # written only when every check passed
    return len(corpus)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_CORPUS_PATH)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = build(args.out)
    logger.info("wrote %d samples to %s", n, args.out)


if __name__ == "__main__":
    main()
