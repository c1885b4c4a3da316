"""Corpus formats, PLIP-rs compatibility, checks and our corpus.

Where PLIP-rs's convention differs from ours (docs/CONTRACT.md):

* Python doctests and Python baselines: identical (marker and every target match exactly).
* Rust tests: the marker (``#[test]``) matches; PLIP-rs's targets are ``fn``, the name and the
  char right after the name (``(`` or ``<``), not each parameter name. We check that ``fn`` and
  the name agree and that our parameter targets are the parameter names.
* Rust baselines: the marker matches; PLIP-rs also targets ``struct`` items and omits
  parameters; our ``fn`` and name targets are a subset of theirs. Their marker (char 0) precedes
  the targets, so ``check`` reports them as causally masked.
"""

from __future__ import annotations

import doctest
import json
import subprocess
import types
from pathlib import Path

import pytest
from archs import tiny_tokenizer
from sandbox_marks import PLIP_RS, RUSTC, needs_plip_rs, needs_rustc

from experiments.corpus_cmd import cli_annotate, cli_check, cli_convert
from plip_nn.corpus import (
    DEFAULT_CORPUS_PATH,
    LISTS,
    Corpus,
    CorpusError,
    annotate_file,
    annotate_python,
    annotate_rust,
    check_corpus,
    convert_file,
    load_corpus,
)
from plip_nn.positions import locate

UNIVERSAL = PLIP_RS / "attention_samples_universal.json"
GENERATION = PLIP_RS / "generation_prompts_n50.json"
needs_plip = needs_plip_rs


def _universal() -> dict:
    return json.loads(UNIVERSAL.read_text())


@needs_plip
@pytest.mark.parametrize("key", ["python_doctest", "python_baseline"])
def test_python_annotation_equals_plip_rs(key: str) -> None:
    for s in _universal()[key]:
        ann = annotate_python(s["code"], kind=LISTS[key][1], sample_id=s["id"])
        assert ann.marker_char_pos == s["marker_char_pos"], s["id"]
        assert list(ann.target_char_positions) == s["target_char_positions"], s["id"]


@needs_plip
def test_rust_tests_marker_equals_plip_rs_and_targets_follow_our_convention() -> None:
    for s in _universal()["rust_test"]:
        ann = annotate_rust(s["code"], kind="test", sample_id=s["id"])
        code = s["code"]
        assert ann.marker_char_pos == s["marker_char_pos"], s["id"]
        assert list(ann.target_char_positions[:2]) == s["target_char_positions"][:2], s["id"]
        # PLIP-rs's third target is the char after the name: '(' or '<'.
        assert code[s["target_char_positions"][2]] in "(<"
        for pos, name in zip(ann.target_char_positions[2:], ann.function.params, strict=True):
            assert code[pos : pos + len(name)] == name


@needs_plip
def test_rust_baselines_marker_equals_plip_rs() -> None:
    for s in _universal()["rust_baseline"]:
        ann = annotate_rust(s["code"], kind="baseline", sample_id=s["id"])
        assert ann.marker_char_pos == s["marker_char_pos"] == 0
        assert set(ann.target_char_positions[:2]) <= set(s["target_char_positions"]), s["id"]


@needs_plip
def test_load_universal_and_check_flags_masked_baselines() -> None:
    corpus = load_corpus(UNIVERSAL)
    assert len(corpus) == 30 and all(s.function is None for s in corpus.samples)
    assert len(corpus.select(language="rust", kind="test")) == 10
    problems = check_corpus(UNIVERSAL)
    assert {p.sample_id for p in problems} == {s["id"] for s in _universal()["rust_baseline"]}
    assert all(p.code == "masked" for p in problems)


@needs_plip
def test_check_flags_every_plip_rs_generation_prompt(capsys: pytest.CaptureFixture) -> None:
    ids = [p["id"] for p in json.loads(GENERATION.read_text())["prompts"]]
    problems = check_corpus(GENERATION)
    assert [p.sample_id for p in problems] == ids and len(ids) == 50
    assert all(p.code == "masked" for p in problems)
    assert cli_check(GENERATION) == 2
    err = capsys.readouterr().err
    assert "arith_01_add" in err and "generation_prompts_n50.json" in err
    corpus = load_corpus(GENERATION)
    first = corpus.by_id("arith_01_add")
    # Hand-checked: '/// Adds two integers\n///\n/// #[test]' -> '#' at 30; 'fn add(a: i32, b: ...'
    assert first.marker_char_pos == 30
    assert first.code[first.target_char_positions[0] :].startswith("fn add(a: i32, b: i32)")
    assert first.function is not None and first.function.params == ("a", "b")


@needs_plip
def test_convert_files(tmp_path: Path) -> None:
    out = tmp_path / "u.json"
    assert cli_convert(UNIVERSAL, out) == 0
    converted = load_corpus(out)
    orig = load_corpus(UNIVERSAL)
    assert [s.target_char_positions for s in converted.samples] == [
        s.target_char_positions for s in orig.samples
    ]
    assert converted.by_id("rust_simple_add").function.name == "add"
    assert converted.by_id("py_simple_add").function.params == ("a", "b")
    gen = convert_file(GENERATION, tmp_path / "g.json")
    assert len(gen.select(language="rust", kind="generation")) == 50


def _write(tmp_path: Path, data: object, name: str = "c.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


GOOD = {
    "id": "ok1",
    "code": "def f(x):\n    # >>> f(1)\n    return x\n",
    "marker_char_pos": 16,
    "marker_pattern": ">>>",
    "target_char_positions": [0, 4, 6],
}


def test_check_malformed_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = _write(tmp_path, '{"_format_version": "2.0", "python_doctest": [')
    [problem] = check_corpus(p)
    assert problem.code == "malformed_json" and str(p) in str(problem)
    assert cli_check(p) == 2
    assert "malformed JSON at line 1" in capsys.readouterr().err
    with pytest.raises(CorpusError, match="malformed JSON"):
        load_corpus(p)


def test_check_missing_fields_out_of_range_duplicates(tmp_path: Path) -> None:
    missing = {k: v for k, v in GOOD.items() if k != "marker_char_pos"} | {"id": "m1"}
    out_of_range = GOOD | {"id": "r1", "target_char_positions": [0, 400]}
    data = {
        "_format_version": "2.0",
        "python_baseline": [GOOD, missing, out_of_range, GOOD],
    }
    p = _write(tmp_path, data)
    problems = {(pr.sample_id, pr.code) for pr in check_corpus(p)}
    assert problems == {("m1", "missing_field"), ("r1", "out_of_range"), ("ok1", "duplicate_id")}
    assert cli_check(p) == 2
    with pytest.raises(CorpusError, match=r"c\.json: sample m1: missing field.*marker_char_pos"):
        load_corpus(p)
    ok = _write(tmp_path, {"_format_version": "2.0", "python_baseline": [GOOD]}, "ok.json")
    assert check_corpus(ok) == [] and cli_check(ok) == 0


def test_check_bad_values_and_format(tmp_path: Path) -> None:
    wrong_marker = GOOD | {"id": "w1", "marker_char_pos": 3}
    p = _write(tmp_path, {"_format_version": "2.0", "python_baseline": [wrong_marker]})
    [pr] = check_corpus(p)
    assert pr.code == "bad_value" and "marker_pattern='>>>' is not at marker_char_pos=3" in str(pr)
    p2 = _write(tmp_path, {"_format_version": "1.0", "python_doctest": []}, "v.json")
    assert check_corpus(p2)[0].code == "format"
    p3 = _write(tmp_path, {"_format_version": "2.0", "python_tests": []}, "u.json")
    assert "unknown list 'python_tests'" in str(check_corpus(p3)[0])


def test_check_masked_sample(tmp_path: Path) -> None:
    masked = {
        "id": "mask1",
        "code": "#[inline]\nfn f(x: u8) -> u8 { x }\n",
        "marker_char_pos": 0,
        "marker_pattern": "#[",
        "target_char_positions": [10, 13, 15],
    }
    p = _write(tmp_path, {"_format_version": "2.0", "rust_baseline": [masked]})
    [pr] = check_corpus(p)
    assert pr.code == "masked" and "[10, 13, 15]" in pr.message


def test_annotate_file_round_trip(tmp_path: Path) -> None:
    raw = {
        "python_doctest": [{"id": "a", "code": 'def f(x):\n    """\n    >>> f(1)\n    """\n'}],
        "rust_test": [
            {"id": "b", "code": "fn g(y: i32) -> i32 { y }\n#[test]\nfn t() { g(1); }\n"}
        ],
    }
    src = _write(tmp_path, raw, "in.json")
    out = tmp_path / "out.json"
    assert cli_annotate(src, out) == 0
    c = load_corpus(out)
    assert c.by_id("a").marker_char_pos == 22 and c.by_id("a").target_char_positions == (0, 4, 6)
    assert c.by_id("b").marker_char_pos == 26 and c.by_id("b").target_char_positions == (0, 3, 5)
    assert check_corpus(out) == []
    bad = _write(tmp_path, {"rust_test": [{"id": "z9", "code": "fn g() {}\n"}]}, "bad.json")
    assert cli_annotate(bad, tmp_path / "x.json") == 2
    assert not (tmp_path / "x.json").exists()  # nothing annotated: nothing written
    with pytest.raises(CorpusError, match=r"bad\.json: no sample could be annotated"):
        annotate_file(bad, tmp_path / "x.json")


DOC_TEST = (
    "/// Adds { two } integers: use fn like this (a, b)\n"
    "///\n"
    "/// #[test]\n"
    "/// fn test_add() {\n"
    "///     assert_eq!(add(2, 3), 5);\n"
    "/// }\n"
    "fn add(a: i32, b: i32) -> i32 {\n"
    "    a + b\n"
    "}\n"
)


def test_annotate_a_doc_comment_test_and_check_names_it_masked(tmp_path: Path) -> None:
    """A `///` test above the function (PLIP-rs prompt shape), with prose that is not Rust."""
    src = _write(tmp_path, {"rust_test": [{"id": "doc1", "code": DOC_TEST}]}, "in.json")
    out = tmp_path / "out.json"
    assert cli_annotate(src, out) == 0
    s = load_corpus(out).by_id("doc1")
    # Hand-checked: the `#` of `/// #[test]` and `fn`, `add`, `a`, `b` of the real function.
    assert s.marker_char_pos == DOC_TEST.index("#[test]")
    fn_at = DOC_TEST.index("fn add(")
    assert s.target_char_positions == (fn_at, fn_at + 3, fn_at + 7, fn_at + 15)
    [pr] = check_corpus(out)
    assert (pr.sample_id, pr.code) == ("doc1", "masked")


def test_annotate_reports_each_bad_sample_and_writes_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    raw = {
        "python_doctest": [
            {"id": "good_py", "code": 'def f(x):\n    """\n    >>> f(1)\n    """\n'},
            {"id": "bad_py", "code": "def f(x):\n    return x\n"},
        ],
        "rust_test": [
            {"id": "bad_rs", "code": "fn g() {}\n"},
            {"id": "good_rs", "code": "fn g(y: i32) -> i32 { y }\n#[test]\nfn t() { g(1); }\n"},
            {"id": "good_py", "code": "fn h() {}\n#[test]\nfn t() { h(); }\n"},
            {"code": "fn nameless() {}\n"},
        ],
    }
    src = _write(tmp_path, raw, "in.json")
    out = tmp_path / "out.json"
    corpus, problems = annotate_file(src, out)
    assert [s.id for s in corpus.samples] == ["good_py", "good_rs"]
    assert [(p.sample_id, p.code) for p in problems] == [
        ("bad_py", "unannotatable"),
        ("bad_rs", "unannotatable"),
        ("rust_test[3]", "unannotatable"),
        ("good_py", "duplicate_id"),
    ]
    assert [s.id for s in load_corpus(out).samples] == ["good_py", "good_rs"]
    capsys.readouterr()
    assert cli_annotate(src, tmp_path / "out2.json") == 2
    err = capsys.readouterr().err.splitlines()
    for sid in ("bad_py", "bad_rs", "rust_test[3]", "good_py"):
        [line] = [e for e in err if f"sample {sid}:" in e]
        assert str(src) in line
    assert "no function has a doctest example" in next(e for e in err if "bad_py" in e)
    assert load_corpus(tmp_path / "out2.json").by_id("good_rs").marker_char_pos == 26


@needs_plip
def test_annotate_plip_rs_generation_prompts(tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    assert cli_annotate(GENERATION, out) == 0
    annotated = load_corpus(out)
    assert annotated.samples == load_corpus(GENERATION).samples
    assert len(check_corpus(out)) == 50  # every one masked: the marker precedes the function


# ---------------------------------------------------------------------------------------------
# Our corpus
# ---------------------------------------------------------------------------------------------


def test_our_corpus_passes_check_and_has_enough_samples() -> None:
    assert check_corpus(DEFAULT_CORPUS_PATH) == []
    assert cli_check(DEFAULT_CORPUS_PATH) == 0
    c = load_corpus()
    assert check_corpus(c) == []
    for language in ("python", "rust"):  # issue 29: >= 160 per language
        assert len(c.select(language=language, kind="test")) >= 160
        assert len(c.select(language=language, kind="baseline")) >= 40
        assert len(c.select(language=language, kind="generation")) >= 160
    assert all(s.function is not None for s in c.samples)
    assert max(len(s.code) for s in c.samples) <= 520


def test_our_corpus_is_what_the_annotator_gives() -> None:
    c = load_corpus()
    for s in c.samples:
        annotate = annotate_python if s.language == "python" else annotate_rust
        kwargs = (
            {"source": s.function.source}
            if s.kind == "generation" and s.language == "python"
            else {}
        )
        ann = annotate(s.code, kind=s.kind, function=s.function.name, sample_id=s.id, **kwargs)
        assert (ann.marker_char_pos, ann.target_char_positions) == (
            s.marker_char_pos,
            s.target_char_positions,
        ), s.id
        assert ann.function == s.function, s.id


def test_generation_prompts_end_with_marker_after_function() -> None:
    for s in load_corpus().select(kind="generation"):
        suffix = ">>>" if s.language == "python" else "#[test]\n"
        assert s.code.endswith(suffix) and s.marker_char_pos == len(s.code) - len(suffix)
        assert max(s.target_char_positions) < s.marker_char_pos


def test_locate_source_after_targets_on_tiny_tokenizer() -> None:
    tok = tiny_tokenizer()
    c = load_corpus()
    for s in c.select(kind="test") + c.select(kind="generation"):
        pos = locate(tok, s.code, s.marker_char_pos, s.target_char_positions, sample_id=s.id)
        assert pos.targets and pos.source > max(pos.targets), s.id
        assert pos.dropped_targets == (), s.id


def test_python_corpus_functions_run_their_doctests() -> None:
    c = load_corpus()
    for s in c.select(language="python", kind="test") + c.select(
        language="python", kind="generation"
    ):
        module = types.ModuleType(s.id)
        exec(compile(s.function.source, s.id, "exec"), module.__dict__)
        result = doctest.testmod(module, report=False)
        assert result.attempted > 0 and result.failed == 0, s.id


def test_corpus_select_and_errors() -> None:
    c = load_corpus()
    assert c.select(language="rust", kind="baseline") == [
        s for s in c.samples if s.language == "rust" and s.kind == "baseline"
    ]
    with pytest.raises(ValueError, match="language='go'"):
        c.select(language="go")
    with pytest.raises(CorpusError, match="duplicate id"):
        Corpus(c.samples[:1] * 2)
    with pytest.raises(CorpusError, match="cannot read"):
        load_corpus("/nonexistent/corpus.json")


@pytest.mark.slow
@needs_rustc
def test_rust_corpus_compiles_and_tests_pass(tmp_path: Path) -> None:
    rustc = str(RUSTC)
    c = load_corpus()
    programs = {s.id: s.code for s in c.select(language="rust", kind="test")}
    programs |= {s.id: s.function.source for s in c.select(language="rust", kind="generation")}
    for sid, code in programs.items():
        src = tmp_path / f"{sid}.rs"
        src.write_text(code)
        exe = tmp_path / sid
        build = subprocess.run(
            [rustc, "--edition", "2021", "--test", "-A", "warnings", "-o", str(exe), str(src)],
            capture_output=True,
            text=True,
        )
        assert build.returncode == 0, (sid, build.stderr[:2000])
        if sid.startswith("rs_"):
            run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
            assert run.returncode == 0 and " 0 passed" not in run.stdout, (sid, run.stdout)
