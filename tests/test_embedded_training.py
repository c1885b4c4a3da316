"""The embedded model's training script: synthetic data, completion checks, baselines."""

from __future__ import annotations

import doctest
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sandbox_marks import RUSTC, needs_rustc

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

from embedded.card import recorded_command  # noqa: E402
from embedded.cli import parse_config  # noqa: E402
from embedded.config import DEFAULT_OUT, ROOT, copy_mix  # noqa: E402
from embedded.data import encode_stream, eval_function_names, train_tokenizer  # noqa: E402
from embedded.evaluate import python_calls, rust_test_check, unigram_perplexity  # noqa: E402
from embedded_model_eval_prompts import PYTHON_DOCTEST_PROMPTS, RUST_TEST_PROMPTS  # noqa: E402
from synthetic_code import (  # noqa: E402
    _RESERVED,
    _RS_KEYWORDS,
    PY_PARAMS,
    RS_PARAMS,
    CodeGenerator,
)


def test_eval_prompts_cover_twenty_per_language():
    assert len(PYTHON_DOCTEST_PROMPTS) >= 20 and len(RUST_TEST_PROMPTS) >= 20
    for name, prompt in PYTHON_DOCTEST_PROMPTS:
        assert prompt.endswith(">>> ") and f"def {name}(" in prompt
    for name, prompt in RUST_TEST_PROMPTS:
        assert prompt.endswith("#[test]\nfn ") and f"fn {name}(" in prompt


def test_generator_is_seeded_and_never_uses_held_out_names():
    a = CodeGenerator(seed=3, exclude=eval_function_names())
    b = CodeGenerator(seed=3, exclude=eval_function_names())
    docs = [a.python_document() for _ in range(300)] + [a.rust_document() for _ in range(300)]
    assert docs == [b.python_document() for _ in range(300)] + [
        b.rust_document() for _ in range(300)
    ]
    defined = {m for d in docs for m in re.findall(r"\b(?:def|fn)\s+(\w+)", d)}
    assert "is_prime" in eval_function_names() and "gcd" in eval_function_names()
    assert not defined & eval_function_names()
    assert len(defined) > 300  # varied names


def test_copy_curriculum_names_are_random_fresh_identifiers():
    exclude = eval_function_names()
    a = CodeGenerator(seed=4, exclude=exclude, random_names=True)
    b = CodeGenerator(seed=4, exclude=exclude, random_names=True)
    docs = [a.python_document() for _ in range(200)] + [a.rust_document() for _ in range(200)]
    assert docs == [b.python_document() for _ in range(200)] + [
        b.rust_document() for _ in range(200)
    ]
    defined = [m for d in docs for m in re.findall(r"^(?:pub )?(?:def|fn)\s+(\w+)\(", d, re.M)]
    generic = {"it_works", "test_basic", "basic", "works", "test_it", "simple_case"}
    funcs = [
        n
        for n in defined
        if n not in generic and not re.match(r"(test_|check_)|.*_(works|basic|simple)$", n)
    ]
    assert len(funcs) > 500 and len(set(funcs)) > 0.95 * len(funcs)  # practically never repeats
    assert not set(funcs) & (exclude | _RESERVED | _RS_KEYWORDS)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", n) for n in funcs)
    params = {
        p.split(":")[0].strip()
        for d in docs
        for sig in re.findall(r"^(?:pub )?(?:def|fn) \w+\(([^)]*)\)", d, re.M)
        for p in sig.split(",")
        if p.strip()
    }
    pools = {p for pool in (*PY_PARAMS.values(), *RS_PARAMS.values()) for p in pool}
    assert len(params) > 300 and len(params & pools) < 0.05 * len(params)
    assert not params & (_RESERVED | _RS_KEYWORDS)
    # The default generator is unchanged by the option: verb_noun names from the fixed pool.
    plain = CodeGenerator(seed=4, exclude=exclude).python_document()
    assert re.search(r"def (\w+)\(", plain).group(1) in CodeGenerator(seed=0, exclude=exclude).names


def test_copy_mix_and_init_from_arguments(tmp_path):
    mix = dict(copy_mix(0.8))
    assert mix == pytest.approx({"python": 0.1, "rust": 0.1, "python_copy": 0.4, "rust_copy": 0.4})
    assert dict(copy_mix(0.0)) == {"python": 0.5, "rust": 0.5}
    with pytest.raises(ValueError, match=r"copy_fraction=1\.0"):
        copy_mix(1.0)
    with pytest.raises(ValueError, match=r"holds no config\.json"):
        parse_config(["--init-from", str(tmp_path)])
    (tmp_path / "config.json").write_text("{}")
    cfg = parse_config(
        ["--init-from", str(tmp_path), "--copy-fraction", "0.8", "--seq-len", "160", "--lr", "1e-3"]
    )
    assert cfg.init_from == tmp_path and cfg.seq_len == 160 and cfg.lr == 1e-3
    assert dict(cfg.mix) == pytest.approx(mix) and cfg.out == DEFAULT_OUT
    cmd = recorded_command(cfg)
    assert f"--init-from {tmp_path} --copy-fraction 0.8" in cmd
    assert "--seq-len 160" in cmd and "--lr 0.001" in cmd and "--out" not in cmd
    assert parse_config(cmd.split()[2:]) == cfg  # the recorded command reproduces the config


MODEL_CARD = ROOT / "plip_nn" / "data" / "MODEL_CARD.md"


def _stage_commands() -> list[list[str]]:
    """The training commands MODEL_CARD.md records (its Retrain block), as argv lists."""
    text = MODEL_CARD.read_text(encoding="utf-8")
    block = text.split("## Retrain", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [ln.split("  #", 1)[0].split() for ln in block.strip().splitlines()]
    assert all(ln[1] == "scripts/train_embedded_model.py" for ln in lines), lines
    return [ln[2:] for ln in lines]


def test_model_card_stage_commands_parse(tmp_path):
    """Every stage command in MODEL_CARD.md still parses to the TrainConfig it recorded."""
    stages = _stage_commands()
    assert len(stages) == 6
    model = tmp_path / "model"  # --init-from must hold a config.json; the recorded dirs are gone
    model.mkdir()
    (model / "config.json").write_text("{}")
    cfgs = []
    for argv in stages:
        if "--init-from" in argv:
            argv[argv.index("--init-from") + 1] = str(model)
        cfgs.append(parse_config(argv))
    first = cfgs[0]
    assert (first.steps, first.seed, first.minutes, first.init_from) == (100000, 0, 25.0, None)
    assert first.out == DEFAULT_OUT and dict(first.mix)["python_synthetic"] == 0.3
    second = cfgs[1]
    assert second.init_from == model and second.seq_len == 160 and second.lr == 1e-3
    assert dict(second.mix) == pytest.approx(dict(copy_mix(0.8)))
    assert second.synthetic_docs == 2000 and second.warmup == 100
    fifth = cfgs[4]
    assert dict(fifth.mix) == pytest.approx(dict(copy_mix(0.3, 0.4)))
    assert fifth.name_words and fifth.batch_size == 12 and fifth.copy_docs == 60000
    assert fifth.checkpoint_dir == Path("/work/train/ckpt5")
    last = cfgs[5]
    assert last.arity_balance and last.seed == 6 and last.out == Path("/work/train/model_v4")


def test_old_checkpoint_flag_names_still_parse():
    cfg = parse_config(["--checkpoint-every", "60", "--probe-every", "120"])
    assert cfg.checkpoint_every_s == 60.0 and cfg.probe_every_s == 120.0


def _rust_arity(doc: str) -> int:
    sig = re.search(r"fn \w+\(([^)]*)\)", doc).group(1)
    return sig.count(":")


def test_arity_balance_draws_the_parameter_count_uniformly(tmp_path):
    """Curriculum v3: 1-, 2- and 3-parameter functions equally often (else 1 dominates)."""
    counts = {}
    for balance in (False, True):
        gen = CodeGenerator(seed=3, exclude=(), random_names=True, arity_balance=balance)
        arities = [_rust_arity(gen.rust_document()) for _ in range(600)]
        counts[balance] = {n: arities.count(n) / len(arities) for n in (1, 2, 3)}
    assert counts[False][1] > 0.5 and counts[False][3] < 0.15  # the templates' own skew
    for n in (1, 2, 3):
        assert counts[True][n] == pytest.approx(1 / 3, abs=0.07), counts[True]
    # The flag is recorded in the training command, which reproduces the config.
    (tmp_path / "config.json").write_text("{}")
    cfg = parse_config(["--init-from", str(tmp_path), "--copy-fraction", "0.3", "--arity-balance"])
    assert cfg.arity_balance and "--arity-balance" in recorded_command(cfg)
    assert parse_config(recorded_command(cfg).split()[2:]) == cfg


def test_real_function_pick_balances_arity():
    import random

    from real_code_copy import _pick, _rs_literal

    fns = [{"types": ["i32"] * n} for n in (1,) * 90 + (2,) * 9 + (3,)]
    rng = random.Random(0)
    picks = [len(_pick(rng, fns, "types", True)["types"]) for _ in range(3000)]
    assert all(abs(picks.count(n) / 3000 - 1 / 3) < 0.04 for n in (1, 2, 3))
    assert sum(len(_pick(rng, fns, "types", False)["types"]) == 1 for _ in range(1000)) > 850
    lit = _rs_literal(rng, "(f64, i32)", tuples=True)
    assert re.fullmatch(r"\((0\.5|1\.5|2\.0), \d+\)", lit)
    assert _rs_literal(rng, "(f64, i32)") is None  # tuples only in curriculum v3
    assert _rs_literal(rng, "(f64, Foo)", tuples=True) is None


@pytest.mark.parametrize(
    ("random_names", "arity_balance"), [(False, False), (True, False), (True, True)]
)
def test_synthetic_python_doctests_pass(random_names, arity_balance):
    gen = CodeGenerator(seed=7, exclude=(), random_names=random_names, arity_balance=arity_balance)
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    n_examples = 0
    for i in range(200):
        src = gen.python_document()
        namespace: dict = {}
        exec(compile(src, f"<doc{i}>", "exec"), namespace)
        funcs = [v for k, v in namespace.items() if callable(v) and v.__doc__ and k[0] != "_"]
        assert funcs, src
        for func in funcs:
            test = parser.get_doctest(func.__doc__, namespace, func.__name__, None, 0)
            n_examples += len(test.examples)
            result = runner.run(test, out=lambda _: None)
            assert result.failed == 0, src
    assert n_examples > 300


@needs_rustc
@pytest.mark.parametrize(
    ("random_names", "arity_balance"), [(False, False), (True, False), (True, True)]
)
def test_synthetic_rust_tests_compile_and_pass(tmp_path, random_names, arity_balance):
    gen = CodeGenerator(seed=11, exclude=(), random_names=random_names, arity_balance=arity_balance)
    docs = [gen.rust_document() for _ in range(60)]
    n_tests = sum(d.count("#[test]") for d in docs)
    src = "\n".join(
        f"#[allow(dead_code, unused_imports)]\nmod doc{i} {{\n{d}\n}}" for i, d in enumerate(docs)
    )
    (tmp_path / "lib.rs").write_text(src)
    build = subprocess.run(
        [
            str(RUSTC),
            "--edition",
            "2021",
            "--test",
            "-o",
            str(tmp_path / "t"),
            str(tmp_path / "lib.rs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    done = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"{n_tests} passed" in done.stdout


@pytest.mark.parametrize(
    ("completion", "name", "expected"),
    [
        ("gcd(12, 8)\n    4", "gcd", True),
        ("print(gcd(3, 4))", "gcd", True),
        ("x = gcd(1, 2)", "gcd", True),
        ("gcd\n", "gcd", False),  # no call
        ("lcm(12, 8)", "gcd", False),
        ("gcd(12, \n8)", "gcd", False),  # first line does not parse
        ("'gcd(1, 2)'", "gcd", False),  # a string, not a call
        ("math.gcd(1, 2)", "gcd", False),  # a different function
    ],
)
def test_python_call_check(completion, name, expected):
    assert python_calls(completion, name) is expected


@pytest.mark.parametrize(
    ("completion", "test_fn", "calls"),
    [
        ("test_gcd() {\n    assert_eq!(gcd(12, 8), 4);\n}\n\nfn more", True, True),
        ("it_works() {\n    let r = gcd(1, 2);\n    assert!(r > 0);\n}", True, True),
        ("it_works() {\n    assert_eq!(lcm(1, 2), 2);\n}", True, False),
        ("it_works() {\n    assert_eq!(gcd, 2);\n}", True, False),  # named, not called
        ("test_gcd() {\n}", False, False),  # empty body
        ("test_gcd(x: u8) {\n    gcd(1, 2);\n}", False, False),  # a test takes no arguments
        ("test_gcd() {\n    assert_eq!(gcd(1, 2), 1);\n", False, False),  # never closes
        ("test_gcd() {\n    let = ;\n}", False, False),  # syntax error
    ],
)
def test_rust_test_check(completion, test_fn, calls):
    assert rust_test_check(completion, "gcd") == {"test_fn": test_fn, "calls_function": calls}


def test_unigram_perplexity_by_hand():
    train = np.array([0, 0, 1, 2, 0], dtype=np.int32)  # counts 3,1,1,0 over vocab 4
    targets = np.array([0, 3])
    # add-one: p = (4, 2, 2, 1) / 9
    expected = math.exp(-(math.log(4 / 9) + math.log(1 / 9)) / 2)
    assert unigram_perplexity(train, targets, 4) == pytest.approx(expected, rel=1e-12)


def test_tokenizer_and_marker_split_encoding(tmp_path):
    from transformers import AutoTokenizer, Qwen2Config

    gen = CodeGenerator(seed=5, exclude=())
    docs = [gen.python_document() for _ in range(150)] + [gen.rust_document() for _ in range(150)]
    tok = train_tokenizer(iter(docs), 500)
    assert tok.bos_token is None and tok.eos_token_id == tok.pad_token_id == 0
    tok.save_pretrained(tmp_path)
    Qwen2Config().save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "".join(docs[:20])
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]

    doc = 'def f(x):\n    """Doc.\n\n    >>> f(1)\n    2\n    """\n'
    whole = encode_stream(tok, [doc]).tolist()
    pieces = encode_stream(tok, [doc], split_fraction=1.0).tolist()
    assert whole[-1] == pieces[-1] == tok.eos_token_id and whole.count(0) == pieces.count(0) == 1
    assert tok.decode(pieces[:-1]) == tok.decode(whole[:-1]) == doc
    # Whole: the space before the call is glued to "f". Pieces: a bare space token, then "f".
    names = tok.convert_ids_to_tokens(pieces)
    at = names.index("Ġ>>>")
    assert names[at + 1] == "Ġ" and names[at + 2] == "f"
    whole_names = tok.convert_ids_to_tokens(whole)
    assert whole_names[whole_names.index("Ġ>>>") + 1] == "Ġf"
    assert pieces[: at + 2] == tok('def f(x):\n    """Doc.\n\n    >>> ')["input_ids"]
