"""Corpus: file formats, automatic marker/target annotation, and checks.

Modules: :mod:`~plip_nn.corpus.model` (samples and the corpus), :mod:`~plip_nn.corpus.io`
(load, annotate, convert, write), :mod:`~plip_nn.corpus.python` and
:mod:`~plip_nn.corpus.rust` (the annotators), :mod:`~plip_nn.corpus.check` (problems).

File format (ours) is the PLIP-rs universal v2.0 shape: a JSON object with
``_format_version: "2.0"`` and lists ``python_doctest``, ``rust_test``, ``python_baseline``,
``rust_baseline`` (PLIP-rs) plus ``python_generation`` and ``rust_generation`` (ours). Each entry is
``{id, code, marker_char_pos, marker_pattern, target_char_positions, function}`` where ``function``
is ``{name, params, arity, source}`` (absent in PLIP-rs files). Extra keys are kept and ignored.

Annotation convention (docs/CONTRACT.md, "Corpus annotation"), found with ``ast``/``tokenize``
for Python and tree-sitter-rust for Rust, never with regular expressions over the raw text:

* **test**: marker = first char of the first doctest example (``>>>`` starting a docstring line,
  as ``doctest`` parses it) in the function's docstring / of the ``#[test]`` attribute of the
  first test that calls the function. Python picks the first function (source order) whose
  docstring has an example; Rust picks the first ``#[test]`` function that calls a function
  defined in the sample (preferring one whose name is part of the test's name). Rust tests in
  real code win over tests written inside ``///`` doc comments, which are used only when the
  code has no real test (the PLIP-rs generation prompts); such a marker precedes the function,
  so its edges are causally masked and ``check_corpus`` reports them.
* **baseline** (false marker): Python = first ``>>>`` inside a comment or string token; Rust =
  first outer attribute ``#[...]`` other than ``#[test]``/``#[cfg(test)]``. Function = the first
  (non-test) function.
* **generation**: the code ends right after the marker (:mod:`plip_nn.codesrc`): ``>>>``
  (Python, inside the docstring of the last function) or ``#[test]`` and its line break (Rust,
  after the last function); the older ``>>> `` / ``#[test]\\nfn `` endings are accepted. The
  marker is *after* the function, so the edge is causally valid.
* targets = first char of the ``def``/``fn`` keyword (``async def`` -> ``def``), of the name, and
  of each declared parameter: ``self`` included, ``&mut self`` -> ``s``, ``mut x`` -> ``x``,
  ``*args`` -> ``a``; a Rust pattern parameter targets every name it binds
  (``(a, b): (i32, i32)`` -> ``a`` and ``b``; ``_`` binds none and is its own target).
* ``FunctionInfo.params`` are the declared names in source spelling (Python keeps ``*``/``**``
  on variadics: ``("self", "x", "*args", "**kwargs")``; Rust pattern parameters keep their
  pattern text); ``arity == len(params)`` (Python counts ``self``, ``*args`` and ``**kwargs``
  one each). ``FunctionInfo.source`` is a complete program that defines the function, for
  running tests later: the sample's code for test/baseline samples, the prompt without its
  trailing marker for Rust generation prompts, and the given complete program for Python
  generation prompts (whose prompt stops inside the docstring).
"""

from plip_nn.codesrc import (
    PY_GENERATION_SUFFIX,
    PY_MARKER,
    RUST_BASELINE_MARKER,
    RUST_GENERATION_SUFFIX,
    RUST_TEST_MARKER,
    generation_prompt,
    generation_suffix,
)
from plip_nn.corpus.check import check_corpus
from plip_nn.corpus.io import (
    annotate_file,
    annotate_sample,
    convert_file,
    load_corpus,
)
from plip_nn.corpus.model import (
    DEFAULT_CORPUS_PATH,
    FORMAT_VERSION,
    LISTS,
    Annotation,
    Corpus,
    CorpusError,
    FunctionInfo,
    Kind,
    Language,
    Problem,
    Sample,
)
from plip_nn.corpus.python import annotate_python
from plip_nn.corpus.rust import annotate_rust

__all__ = [
    "DEFAULT_CORPUS_PATH",
    "FORMAT_VERSION",
    "LISTS",
    "PY_GENERATION_SUFFIX",
    "PY_MARKER",
    "RUST_BASELINE_MARKER",
    "RUST_GENERATION_SUFFIX",
    "RUST_TEST_MARKER",
    "Annotation",
    "Corpus",
    "CorpusError",
    "FunctionInfo",
    "Kind",
    "Language",
    "Problem",
    "Sample",
    "annotate_file",
    "annotate_python",
    "annotate_rust",
    "annotate_sample",
    "check_corpus",
    "convert_file",
    "generation_prompt",
    "generation_suffix",
    "load_corpus",
]
