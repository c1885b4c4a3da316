"""``plip-nn corpus mine``: fixture trees written here (no network), the CLI, the shipped corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_marks import RUSTC, needs_rustc

from experiments import cli
from plip_nn.codesrc import has_error, rust_parser
from plip_nn.corpus import DEFAULT_CORPUS_PATH, check_corpus, load_corpus
from plip_nn.corpus.mine import MineConfig, mine
from plip_nn.corpus.mine.provenance import debian_licences

REAL = DEFAULT_CORPUS_PATH.parent / "real.json"

PY_MOD = '''"""A module."""


def area(width, height):
    """Area of a rectangle.

    >>> area(2, 3)
    6
    >>> area(0, 1)
    0
    """
    return width * height


def untested(x):
    """No example here."""
    return x


def setup_first(x):
    """The first example does not call it.

    >>> y = 2
    >>> setup_first(y)
    2
    """
    return x


class Stack:
    def push(self, item):
        """Push an item.

        >>> Stack().push(3)
        [3]
        """
        return [item]


def qualified(a, b):
    """Called through its module.

    >>> shapes.qualified(1, 2)
    3
    """
    return a + b
'''

RS_LIB = """pub fn double(x: i32) -> i32 {
    x * 2
}

pub fn untested(x: i32) -> i32 {
    x
}

pub struct Counter {
    n: u32,
}

impl Counter {
    pub fn bump(&mut self, by: u32) -> u32 {
        self.n += by;
        self.n
    }
}

#[test]
fn top_level_test() {
    assert_eq!(double(2), 4);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_counts() {
        let mut c = Counter { n: 0 };
        assert_eq!(c.bump(2), 2);
    }

    #[test]
    fn calls_nothing() {
        assert_eq!(1 + 1, 2);
    }
}
"""


def _tree(tmp: Path) -> tuple[Path, Path]:
    py = tmp / "pyproj"
    (py / "pkg").mkdir(parents=True)
    (py / "LICENSE").write_text("MIT License\n\nCopyright (c) someone\n")
    (py / "pkg" / "shapes.py").write_text(PY_MOD)
    (py / "pkg" / "latin1.py").write_bytes(
        b'def f(x):\n    """caf\xe9\n\n    >>> f(1)\n    1\n    """\n'
    )
    (py / "pkg" / "loop").symlink_to(py / "pkg")  # a symlink loop
    rs = tmp / "crate"
    (rs / "src").mkdir(parents=True)
    (rs / "Cargo.toml").write_text(
        '[package]\nname = "democrate"\nversion = "0.3.1"\nlicense = "MIT OR Apache-2.0"\n'
    )
    (rs / "src" / "lib.rs").write_text(RS_LIB)
    (rs / "src" / "cycle").symlink_to(rs / "src")
    return py, rs


def _tokens(text: str) -> int:
    return len(text.split())


def test_python_fixture_pairs_and_drops(tmp_path: Path) -> None:
    py, _ = _tree(tmp_path)
    r = mine(MineConfig(paths=(py,), language="python"), token_counter=_tokens)
    names = [m.test.function.name for m in r.samples]  # type: ignore[union-attr]
    assert names == ["area", "push", "qualified"]
    assert r.summary.files_read == 1 and r.summary.files_skipped["not_utf8"] == 1
    assert r.summary.candidates == 4
    assert dict(r.summary.dropped) == {"first_example_not_a_call": 1}
    area = r.samples[0].test
    # Cut after the first calling example and its output; docstring closed; body kept.
    assert area.code == (
        "def area(width, height):\n"
        '    """Area of a rectangle.\n\n'
        "    >>> area(2, 3)\n    6\n"
        '    """\n'
        "    return width * height\n"
    )
    assert area.marker_char_pos == area.code.index(">>>")
    assert [area.code[t : t + 6] for t in area.target_char_positions] == [
        "def ar", "area(w", "width,", "height",
    ]  # fmt: skip
    gen = r.samples[0].generation
    assert gen.code == area.code[: area.marker_char_pos] + ">>>"
    assert gen.target_char_positions == area.target_char_positions
    push = r.samples[1].test
    assert push.code.startswith("def push(self, item):")  # dedented out of its class
    assert push.function is not None and push.function.params == ("self", "item")
    assert "shapes.qualified(1, 2)" in r.samples[2].test.code


def test_rust_fixture_pairs_and_drops(tmp_path: Path) -> None:
    _, rs = _tree(tmp_path)
    r = mine(MineConfig(paths=(rs,), language="rust"), token_counter=_tokens)
    assert [m.test.function.name for m in r.samples] == ["double", "bump"]  # type: ignore[union-attr]
    assert r.summary.files_read == 1  # lib.rs once, though the cycle link reaches it again
    assert r.summary.candidates == 3 and dict(r.summary.dropped) == {"no_call": 1}
    double, bump = (m.test for m in r.samples)
    assert double.code == (
        "pub fn double(x: i32) -> i32 {\n    x * 2\n}\n\n"
        "#[test]\nfn top_level_test() {\n    assert_eq!(double(2), 4);\n}\n"
    )
    assert bump.code.startswith("impl Counter {\n    pub fn bump(&mut self, by: u32)")
    assert "#[test]\nfn bump_counts() {" in bump.code  # dedented out of `mod tests`
    assert "use super::*" not in bump.code and "mod tests" not in bump.code
    for m in r.samples:
        assert not has_error(rust_parser().parse(m.test.code.encode()).root_node)
        assert m.test.code[m.test.marker_char_pos :].startswith("#[test]")
        assert m.generation.code.endswith("}\n\n#[test]\n")
    assert [bump.code[t] for t in bump.target_char_positions] == ["f", "b", "s", "b"]


def test_rust_dedent_keeps_multiline_strings(tmp_path: Path) -> None:
    src = (
        "fn count(s: &str) -> usize {\n    s.lines().count()\n}\n\n"
        "#[cfg(test)]\nmod tests {\n    use super::*;\n\n"
        '    #[test]\n    fn counts() {\n        let s = "a\nb\n    c";\n'
        "        assert_eq!(count(s), 3);\n    }\n}\n"
    )
    (tmp_path / "lib.rs").write_text(src)
    r = mine(MineConfig(paths=(tmp_path,), language="rust"), token_counter=_tokens)
    (m,) = r.samples
    assert m.test.code.endswith(
        '#[test]\nfn counts() {\n    let s = "a\nb\n    c";\n    assert_eq!(count(s), 3);\n}\n'
    )


def test_provenance_on_every_sample(tmp_path: Path) -> None:
    py, rs = _tree(tmp_path)
    for root, lang, pkg, lic in ((py, "python", "pyproj", "MIT License"),
                                 (rs, "rust", "democrate", "MIT OR Apache-2.0")):  # fmt: skip
        r = mine(MineConfig(paths=(root,), language=lang), token_counter=_tokens)
        assert r.samples
        for m in r.samples:
            p = m.provenance
            assert p["package"] == pkg and p["licence"] == lic
            assert (root / p["file"]).is_file() and p["line"] >= 1
            src = (root / p["file"]).read_text().splitlines()[p["line"] - 1]
            assert m.test.function.name in src  # type: ignore[union-attr]
            import hashlib

            assert p["sha256"] == hashlib.sha256(m.test.code.encode()).hexdigest()
    assert r.samples[0].provenance["version"] == "0.3.1"


def test_mining_is_deterministic(tmp_path: Path) -> None:
    py, rs = _tree(tmp_path)
    for root, lang in ((py, "python"), (rs, "rust")):
        outs = []
        for k in range(2):
            out = tmp_path / f"{lang}{k}.json"
            assert (
                cli.main(["corpus", "mine", str(root), "--language", lang, "--out", str(out)]) == 0
            )
            outs.append(out.read_bytes())
        assert outs[0] == outs[1]
        assert check_corpus(out) == []
    outs = [(tmp_path / "rust0.json").read_bytes()]
    data = json.loads(outs[0])
    assert len(data["rust_test"]) == 2 and len(data["rust_generation"]) == 2


def test_filters(tmp_path: Path) -> None:
    py, _ = _tree(tmp_path)
    r = mine(
        MineConfig(paths=(py,), language="python", exclude_names=frozenset({"area"}),
                   max_params=1),
        token_counter=_tokens,
    )  # fmt: skip
    assert r.summary.dropped["excluded_name"] == 1
    assert r.summary.dropped["params"] == 2  # push(self, item), qualified(a, b)
    r = mine(MineConfig(paths=(py,), language="python", max_tokens=30))  # the real tokenizer
    assert r.summary.dropped["tokens"] == 3 and not r.samples
    r = mine(MineConfig(paths=(py, py), language="python"), token_counter=_tokens)
    assert r.summary.dropped["duplicate"] == 3  # the second root repeats the first
    assert len(r.samples) == 3
    code = 'def area(width, height):\n    """X.\n\n    >>> area(1, 2)\n    2\n    """\n'
    (py / "pkg" / "copy.py").write_text(code.replace("    ", "  ") + "\n")
    (py / "pkg" / "copy2.py").write_text(code)  # the same text up to whitespace
    r = mine(MineConfig(paths=(py,), language="python"), token_counter=_tokens)
    assert r.summary.dropped["duplicate"] == 1


def test_exclude_names_flag(tmp_path: Path, capsys) -> None:
    py, _ = _tree(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("# comment\narea\npush\n")
    out = tmp_path / "o.json"
    argv = ["corpus", "mine", str(py), "--language", "python", "--out", str(out)]
    assert cli.main([*argv, "--exclude-names", str(names)]) == 0
    data = json.loads(out.read_text())
    assert [e["function"]["name"] for e in data["python_doctest"]] == ["qualified"]
    printed = capsys.readouterr().out
    assert "files read: 1 (skipped: not_utf8 1)" in printed
    assert "candidates: 4" in printed and "kept: 1" in printed
    assert "dropped: excluded_name 2, first_example_not_a_call 1" in printed


@pytest.mark.parametrize(
    "argv",
    [
        ["/no/such/tree", "--language", "python"],
        ["{empty}", "--language", "python"],
        ["{py}", "--language", "cobol"],
        ["{py}", "--language", "python", "--max-tokens", "5000"],
        ["{py}", "--language", "python", "--min-params", "3", "--max-params", "2"],
        ["{py}", "--language", "python", "--exclude-names", "/no/such/file"],
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, argv: list[str], capsys) -> None:
    py, _ = _tree(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("no code")
    args = [a.format(py=py, empty=tmp_path / "empty") for a in argv]
    out = tmp_path / "o.json"
    assert cli.main(["corpus", "mine", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not out.exists()


def test_unreadable_file_is_skipped_and_counted(tmp_path: Path) -> None:
    py, _ = _tree(tmp_path)
    (py / "pkg" / "dangling.py").symlink_to(tmp_path / "missing.py")
    n_unreadable = 1
    if Path("/proc/self/mem").exists():  # stat works, reading at 0 fails (EIO), even as root
        (py / "pkg" / "eio.py").symlink_to("/proc/self/mem")
        n_unreadable = 2
    r = mine(MineConfig(paths=(py,), language="python"), token_counter=_tokens)
    assert r.summary.files_skipped["unreadable"] == n_unreadable
    assert r.summary.files_skipped["not_utf8"] == 1
    assert [m.test.function.name for m in r.samples] == ["area", "push", "qualified"]  # type: ignore[union-attr]


def test_debian_copyright_licences() -> None:
    dep5 = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: x\nLicense: BSD-3-clause\n\n"
        "Files: debian/*\nLicense: GPL-2+\n\n"
        "Files: pkg/vendored/*.py\n docs/x.py\nLicense: MIT\n"
    )
    assert debian_licences(dep5) == "BSD-3-clause"
    assert debian_licences(dep5, "usr/lib/python3/dist-packages/pkg/core.py") == "BSD-3-clause"
    assert debian_licences(dep5, "usr/lib/python3/dist-packages/pkg/vendored/a.py") == "MIT"
    free = "Upstream Author: G.\n\nLicense:\n\nPYTHON SOFTWARE FOUNDATION LICENSE VERSION 2\n"
    assert debian_licences(free) == "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2"
    assert debian_licences("no licence named here\n") is None


# -- the shipped real corpus --------------------------------------------------------------------


def _real() -> dict:
    return json.loads(REAL.read_text(encoding="utf-8"))


def test_real_corpus_checks_loads_by_name_and_has_200_per_language() -> None:
    assert check_corpus(REAL) == [] and check_corpus("real") == []
    corpus = load_corpus("real")
    assert corpus.path == REAL
    for lang in ("python", "rust"):
        tests = corpus.select(language=lang, kind="test")
        gens = corpus.select(language=lang, kind="generation")
        assert len(tests) >= 200 and len(gens) == len(tests)
    assert REAL.stat().st_size < 4_000_000


def test_real_corpus_every_sample_parses_and_has_provenance() -> None:
    import ast

    data = _real()
    for key in ("python_doctest", "python_generation", "rust_test", "rust_generation"):
        for e in data[key]:
            p = e["provenance"]
            assert p["package"] and p["version"] and p["file"] and p["line"] >= 1
            assert p["licence"] and len(p["sha256"]) == 64
    for e in data["python_doctest"]:
        ast.parse(e["code"])
    for e in data["rust_test"]:
        assert not has_error(rust_parser().parse(e["code"].encode()).root_node), e["id"]


def test_real_corpus_excludes_the_embedded_models_training_data() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from build_real_corpus import redistributable, trained_crate, trained_stdlib_file
    from embedded.data import eval_function_names

    data = _real()
    builtin = {s.function.name for s in load_corpus().samples if s.function is not None}
    banned = builtin | eval_function_names()
    for key in ("python_doctest", "rust_test"):
        for e in data[key]:
            p = e["provenance"]
            assert e["function"]["name"] not in banned, e["id"]
            assert redistributable(p["licence"]), (e["id"], p["licence"])
            if key == "rust_test":
                assert not trained_crate(p["package"]), e["id"]
            elif p["package"].startswith(("libpython3", "idle-python", "python3-lib2to3")):
                rel = p["file"].split("/python3.11/", 1)[1]
                assert not trained_stdlib_file(rel), e["id"]


def test_real_corpus_one_sample_goes_through_prepare_and_locate() -> None:
    """`--corpus real` resolves, and one sample per language and kind maps to token positions
    with every target before the marker (what the study's prepare step checks)."""
    from experiments.study import prepare
    from plip_nn.models import load_model

    corpus = load_corpus("real")
    handle = load_model(None, device="cpu")
    picked = [
        corpus.select(language=lang, kind=kind)[0]
        for lang in ("python", "rust")
        for kind in ("test", "generation")
    ]
    prepared = prepare(handle, picked)
    assert len(prepared) == 4
    for p in prepared:
        assert p.positions.targets and max(p.positions.targets) < p.positions.source


def rust_compile_share(entries: list[dict], rustc: str, work: Path) -> tuple[int, int, int]:
    """(compiled, passed, total): each sample alone, ``rustc --test --edition 2021``, then run."""
    compiled = passed = 0
    for i, e in enumerate(entries):
        src = work / f"s{i}.rs"
        src.write_text(e["code"])
        exe = work / f"s{i}"
        done = subprocess.run(
            [rustc, "--test", "--edition", "2021", "-A", "warnings", "-o", str(exe), str(src)],
            capture_output=True,
            timeout=120,
        )
        if done.returncode != 0:
            continue
        compiled += 1
        ran = subprocess.run([str(exe), "-q"], capture_output=True, timeout=60)
        passed += ran.returncode == 0
    return compiled, passed, len(entries)


@pytest.mark.slow
@needs_rustc
def test_real_rust_samples_compile_share(tmp_path: Path) -> None:
    """Share of shipped Rust samples that compile and pass alone with `rustc --test` (most need
    their crate's types and imports, which a compact sample drops; the share is reported)."""
    rustc = RUSTC  # the project's lookup (analysis.execution.rustc); needs_rustc guards it
    assert rustc is not None
    entries = _real()["rust_test"]
    compiled, passed, total = rust_compile_share(entries, rustc, tmp_path)
    print(f"rust samples: {compiled}/{total} compile, {passed}/{total} pass with rustc --test")
    assert 0 < passed <= compiled <= total


def test_annotator_fixes_found_by_mining() -> None:
    """Real docstrings the annotator used to reject: tab-indented examples (doctest counts
    columns after tab expansion) and prompts whose example sits deeper than the body."""
    from plip_nn.corpus import annotate_python

    tabbed = 'def first(seq):\n\t"""\n\tFirst item.\n\n\t>>> first([1, 2])\n\t1\n\t"""\n\treturn seq[0]\n'
    ann = annotate_python(tabbed, kind="test")
    assert ann.marker_char_pos == tabbed.index(">>>")
    fenced = (
        "def size(n: int) -> str:\n"
        '    """Format it.\n\n'
        "    Examples:\n"
        "        ```pycon\n"
        "        >>>"
    )
    source = fenced + ' size(3)\n        "3"\n        ```\n    """\n    return str(n)\n'
    gen = annotate_python(fenced, kind="generation", function="size", source=source)
    assert gen.marker_char_pos == len(fenced) - 3
    assert [fenced[t : t + 4] for t in gen.target_char_positions] == ["def ", "size", "n: i"]


def test_hand_checked_samples_are_in_the_shipped_corpus() -> None:
    """docs/CORPUS.md's hand-check table names 40 samples per language, all still shipped."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "CORPUS.md").read_text()
    ids = re.findall(r"^\| \d+ \| `((?:py|rs)_[^`]+)` \|", doc, flags=re.M)
    data = _real()
    shipped = {e["id"]: e for k in ("python_doctest", "rust_test") for e in data[k]}
    assert sum(i.startswith("py_") for i in ids) == 40
    assert sum(i.startswith("rs_") for i in ids) == 40
    assert len(set(ids)) == 80 and all(i in shipped for i in ids)
