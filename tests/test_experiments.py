"""Experiments end to end on a tiny random Qwen2 saved to disk and a hand-positioned corpus.

Record values are checked against independent computations: attention levels against HF's own
``output_attentions``, KL against the hand-written reference attention of
tests/reference_attention.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from reference_attention import reference_attention
from study_fixtures import corpus_dict, write_corpus, write_model_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from experiments import conditions, knockout, scan, steer
from experiments import generate as gen_exp
from experiments.calibrate import calibrate
from experiments.generate import trim_continuation


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    model_dir = write_model_dir(root / "model")
    corpus = write_corpus(root / "corpus.json")
    return {"root": root, "model": str(model_dir), "corpus": str(corpus)}


def _common(env, out, **kw):
    return {
        "model": env["model"],
        "corpus": env["corpus"],
        "out": str(out),
        "progress": False,
        **kw,
    }


@pytest.fixture(scope="module")
def hf(env):
    model = AutoModelForCausalLM.from_pretrained(env["model"], attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(env["model"])
    return model, tok


def _sample(sid):
    data = corpus_dict()
    for lst in data.values():
        if isinstance(lst, list):
            for s in lst:
                if s["id"] == sid:
                    return s
    raise KeyError(sid)


def _token_positions(tok, s):
    enc = tok(s["code"], return_offsets_mapping=True)
    offs = enc["offset_mapping"]

    def tok_of(c):
        return next(i for i, (a, b) in enumerate(offs) if a <= c < b)

    src = tok_of(s["marker_char_pos"])
    tgts = sorted({tok_of(c) for c in s["target_char_positions"]} - {src})
    return enc["input_ids"], src, tgts


def test_scan_levels_equal_hf_output_attentions(env, hf, tmp_path):
    out = scan.main(scan.Config(**_common(env, tmp_path / "scan")))
    df = pd.read_parquet(out / "layer_scan.parquet")
    model, tok = hf
    n_layers = model.config.num_hidden_layers
    assert len(df) == 12 * n_layers  # 4+4 tests, 2+2 baselines
    assert set(df["layer"]) == set(range(n_layers))
    for sid in ("py_add", "rs_sub", "pyb_inc"):
        ids, src, tgts = _token_positions(tok, _sample(sid))
        with torch.inference_mode():
            att = model(input_ids=torch.tensor([ids]), output_attentions=True).attentions
        for layer in range(n_layers):
            weights = att[layer][0, :, src, tgts].mean(0)  # head-mean per target
            row = df[(df.sample_id == sid) & (df.layer == layer)].iloc[0]
            assert row.attn_level == pytest.approx(float(weights.mean()), abs=1e-6)
            assert row.attn_mass == pytest.approx(float(weights.sum()), abs=1e-6)
            assert row.n_targets == len(tgts)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["versions"]["nnsight"]
    assert json.loads((out / "config.json").read_text())["model"] == env["model"]


def test_knockout_records_match_reference(env, hf, tmp_path):
    cfg = knockout.Config(**_common(env, tmp_path / "ko", layer=1, languages=("python",)))
    out = knockout.main(cfg)
    df = pd.read_parquet(out / "records.parquet")
    assert set(df.condition) == set(knockout.CONDITIONS)
    assert len(df) == 6 * len(knockout.CONDITIONS)  # 4 tests + 2 baselines
    assert not df.duplicated(["sample_id", "condition", "layer"]).any()
    base = df[df.condition == "baseline"]
    assert (base.kl == 0).all() and base.top1_same.all() and (base.n_edges == 0).all()
    ko = df[df.condition == "knockout"]
    assert (ko.attn_achieved == 0).all() and (ko.attn_baseline > 0).all()
    assert (df[df.condition == "knockout_all_layers"].layer == -1).all()
    # KL of one knockout row equals KL from the hand-written reference attention
    model, tok = hf
    ids, src, tgts = _token_positions(tok, _sample("py_mul"))
    with torch.inference_mode():
        plain = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
        with reference_attention(model, knock={1: [(0, src, t) for t in tgts]}):
            edited = torch.log_softmax(
                model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1
            )
    kl_ref = float((plain.exp() * (plain - edited)).sum())
    row = ko[ko.sample_id == "py_mul"].iloc[0]
    assert row.kl == pytest.approx(kl_ref, rel=1e-3, abs=1e-7)
    assert row.n_edges == len(tgts)
    # the random control knocks out as many edges, none of them a target
    rc = df[(df.condition == "random_control") & (df.sample_id == "py_mul")].iloc[0]
    edit = json.loads(rc.edit)[0]
    assert len(edit["targets"]) == len(tgts) and not set(edit["targets"]) & set(tgts)
    assert all(t < src for t in edit["targets"])
    assert rc.attn_achieved == 0


def test_random_control_is_seeded_and_valid():
    pos = conditions.Positions(sample_id="s", source=20, targets=(0, 1, 3))
    a = conditions.random_targets(pos, seed=1)
    assert a == conditions.random_targets(pos, seed=1)
    assert len(a) == 3 and not set(a) & {0, 1, 3} and all(0 <= t < 20 for t in a)
    draws = {conditions.random_targets(pos, seed=s) for s in range(20)}
    assert len(draws) > 5  # the seed matters
    with pytest.raises(ValueError, match="non-target keys"):
        conditions.random_targets(conditions.Positions(sample_id="s", source=3, targets=(0, 1)), 0)


def test_knockout_every_layer(env, tmp_path):
    cfg = knockout.Config(
        **_common(env, tmp_path / "all", languages=("rust",), limit=2),
        every_layer=True,
        kinds=("test",),
    )
    df = pd.read_parquet(knockout.main(cfg) / "records.parquet")
    ko = df[df.condition == "knockout"]
    assert sorted(ko.layer.unique()) == [0, 1]
    assert len(ko) == 2 * 2 and (ko.attn_achieved == 0).all()


def test_steer_dose_response_follows_formula(env, tmp_path):
    cfg = steer.Config(**_common(env, tmp_path / "steer", layer=0))
    out = steer.main(cfg)
    df = pd.read_parquet(out / "records.parquet")
    cal = json.loads((out / "calibration.json").read_text())
    names = {conditions.scale_name(f) for f in conditions.DOSE_FACTORS}
    assert names | {"baseline", "set_value_calibrated"} == set(df.condition)
    sv = df[df.condition == "set_value_calibrated"]
    assert len(sv) == 8
    np.testing.assert_allclose(sv.attn_achieved, cal["set_value"], atol=1e-5)
    one = df[df.condition == "scale_1"]
    np.testing.assert_allclose(one.kl, 0.0, atol=1e-9)
    levels = df.pivot_table(index="sample_id", columns="factor", values="mass_achieved")
    # achieved head-mean mass increases with the factor for every sample
    facs = sorted(conditions.DOSE_FACTORS)
    assert (np.diff(levels[facs].to_numpy(), axis=1) > 0).all()


def test_calibrate_pure_function():
    rows = []
    for i, (lang, level, mass, n) in enumerate(
        [("python", 0.1, 0.4, 4), ("python", 0.3, 1.2 / 4, 4), ("rust", 0.05, 0.2, 4)]
    ):
        rows.append(
            dict(
                sample_id=f"s{i}",
                language=lang,
                kind="test",
                layer=2,
                attn_level=level,
                attn_mass=mass,
                n_targets=n,
            )
        )
    cal = calibrate(pd.DataFrame(rows), 2)
    assert cal["set_value"] == pytest.approx(0.2)
    # f solving f*m/(1-m+f*m) = M with m = 0.2, M = 0.2*4 = 0.8
    f = cal["scale_factor"]
    assert f * 0.2 / (1 - 0.2 + f * 0.2) == pytest.approx(0.8)


def test_generate_records_and_preservation_columns(env, tmp_path):
    cfg = gen_exp.Config(
        **_common(env, tmp_path / "gen", layer=1, limit=2),
        conditions=("baseline", "knockout", "scale_2"),
        max_new_tokens=6,
        execute="off",
    )
    df = pd.read_parquet(gen_exp.main(cfg) / "generations.parquet")
    assert len(df) == 4 * 3
    for col in ("text", "calls_function", "arity_ok", "valid", "preserved", "stop_reason"):
        assert col in df
    assert (df.n_new_tokens == 6).all()
    edited = df[df.condition != "baseline"]
    assert (edited.n_edited_steps >= 1).all()
    assert (df[df.condition == "knockout"].attn_achieved == 0).all()
    assert df[df.condition == "baseline"].attn_achieved.isna().all()


LEGACY_RS = "fn add(a: i32, b: i32) -> i32 { a + b }\n#[test]\nfn "
RS = "fn add(a: i32, b: i32) -> i32 { a + b }\n#[test]\n"


@pytest.mark.parametrize(
    ("language", "prompt", "text", "expected", "reason"),
    [
        (
            "python",
            'def add(a, b):\n    """\n    >>>',
            ' add(1, 2)\n    3\n    """\n    return 1\ndef other():',
            ' add(1, 2)\n    3\n    """\n    return 1',
            "end_of_function",
        ),
        (
            "python",
            'def add(a, b):\n    """\n    >>>',
            " add(1, 2)<|endoftext|>junk",
            " add(1, 2)",
            "eos",
        ),
        (
            "rust",
            LEGACY_RS,
            'test_add() {\n    assert_eq!(add(1, 2), "}");\n}\nfn more() {}',
            'test_add() {\n    assert_eq!(add(1, 2), "}");\n}',
            "end_of_function",
        ),
        (
            "rust",
            LEGACY_RS,
            "test_add() {\n    let x = {1};",
            "test_add() {\n    let x = {1};",
            "max_new_tokens",
        ),
        # Braces in char literals and comments are not braces (tree-sitter tokens, as the
        # preservation scorer reads them); a character scan would stop or go on wrongly here.
        (
            "rust",
            RS,
            "fn test_add() {\n    let c = '}'; // }\n    assert_eq!(add(1, 2), 3);\n}\n#[test]",
            "fn test_add() {\n    let c = '}'; // }\n    assert_eq!(add(1, 2), 3);\n}",
            "end_of_function",
        ),
        (
            "rust",
            RS,
            "fn test_add() {\n    /* { */ assert_eq!(add(1, 2), 3);\n}<|endoftext|>fn x() {}",
            "fn test_add() {\n    /* { */ assert_eq!(add(1, 2), 3);\n}",
            "end_of_function",
        ),
    ],
)
def test_trim_continuation(language, prompt, text, expected, reason):
    assert trim_continuation(language, prompt, text, "<|endoftext|>") == (expected, reason)


def test_trim_continuation_agrees_with_the_scored_test():
    """Generation keeps exactly the test that preservation scores (one trimming rule)."""
    from analysis.preservation import _rust_header, _rust_trim

    for cont in (
        'fn t() { let s = "{"; assert_eq!(add(1, 2), 3); }\nfn more() {}',
        "fn t() { if true { add(1, 2); } }\n\n#[test]\nfn u() {}",
        "fn t() { let c = '{';",
    ):
        text, _ = trim_continuation("rust", RS, cont, None)
        assert _rust_trim(cont, _rust_header(RS)) == "#[test]\n" + text


def test_remote_local_equals_local(env, tmp_path):
    for mod, extra in ((knockout, {}), (steer, {"factors": (0.5, 2.0), "set_value": False})):
        common = dict(layer=1, limit=2, languages=("python",))
        a = mod.main(mod.Config(**_common(env, tmp_path / f"{mod.__name__}-l", **common), **extra))
        b = mod.main(
            mod.Config(
                **_common(env, tmp_path / f"{mod.__name__}-r", remote="local", **common), **extra
            )
        )
        ra = pd.read_parquet(a / "records.parquet")
        rb = pd.read_parquet(b / "records.parquet")
        assert len(ra) == len(rb) > 0
        pd.testing.assert_frame_equal(
            ra.drop(columns=["kl"]), rb.drop(columns=["kl"]), check_exact=False, atol=1e-6
        )
        np.testing.assert_allclose(ra.kl, rb.kl, atol=1e-7)


def test_resume_skips_finished_parts_and_never_duplicates(env, tmp_path):
    out = tmp_path / "r"
    cfg = knockout.Config(**_common(env, out, layer=0, batch_size=1))
    full = pd.read_parquet(knockout.main(cfg) / "records.parquet")
    parts = sorted((out / "parts" / "records").glob("*.parquet"))
    assert len(parts) >= 2
    # lose the last part and the assembled table, as a crash would
    parts[-1].unlink()
    (out / "records.parquet").unlink()
    (out / "parts" / "records" / ".x.parquet.tmp-1").write_bytes(b"half")
    again = pd.read_parquet(
        knockout.main(knockout.Config(**_common(env, out, layer=0, batch_size=1, resume=True)))
        / "records.parquet"
    )
    pd.testing.assert_frame_equal(full, again)
    assert not list(out.rglob("*.tmp-*"))
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and len(man["resumed"]) == 1


def test_configs_validate_at_construction():
    # configs validate at construction
    from experiments.study import ConfigError

    with pytest.raises(ConfigError, match="--batch-size"):
        knockout.Config(batch_size=0)
    with pytest.raises(ConfigError, match="--remote"):
        knockout.Config(remote="cloud")
    with pytest.raises(ConfigError, match="--conditions"):
        gen_exp.Config(conditions=("baseline", "knockoutt"))
    with pytest.raises(ConfigError, match="--factors"):
        steer.Config(factors=(0.0,))
    assert math.isnan(
        conditions.condition_op(
            conditions.build(
                "baseline",
                conditions.Positions(sample_id="s", source=5, targets=(1,)),
                layer=0,
                n_layers=2,
            )[0]
        )[1]
    )


def test_chat_template_shifts_positions(env):
    from types import SimpleNamespace

    from experiments.study import ConfigError, prepare, render
    from plip_nn.codesrc import generation_prompt
    from plip_nn.corpus import load_corpus

    tok = AutoTokenizer.from_pretrained(env["model"])
    sample = load_corpus(env["corpus"]).by_id("pygen_add")
    with pytest.raises(ConfigError, match="no chat template"):
        render(tok, sample.code, True)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}"
        "{% if not loop.last %}\n{% endif %}{% endfor %}"
    )
    code = generation_prompt(sample.code, sample.language)  # what prepare feeds the model
    text, shift = render(tok, code, True)
    assert shift > 0 and text.endswith(code) and text.startswith("<|user|>")
    handle = SimpleNamespace(tokenizer=tok, config=SimpleNamespace(max_position_embeddings=4096))
    [plain] = prepare(handle, [sample], chat_template=False)
    [chat] = prepare(handle, [sample], chat_template=True)
    assert chat.text == text and len(chat.input_ids) > len(plain.input_ids)

    def spelled(p, pos):
        return tok.decode([p.input_ids[pos]]).strip()

    assert spelled(chat, chat.positions.source) == spelled(plain, plain.positions.source)
    assert [spelled(chat, t) for t in chat.positions.targets] == [
        spelled(plain, t) for t in plain.positions.targets
    ]


def test_choose_layer_is_the_python_peak_but_never_the_last_layer():
    from experiments.scan import choose_layer

    def scan_df(levels):
        return pd.DataFrame(
            [
                dict(
                    sample_id=f"{lang}{i}",
                    language=lang,
                    kind="test",
                    layer=layer,
                    attn_level=lv + (0.5 if lang == "rust" else 0.0),
                )
                for lang in ("python", "rust")
                for i in range(2)
                for layer, lv in enumerate(levels)
            ]
        )

    assert choose_layer(scan_df([0.1, 0.3, 0.2, 0.0])) == 1  # Rust's offset is ignored
    assert choose_layer(scan_df([0.1, 0.2, 0.15, 0.9])) == 1  # the last layer is excluded


def test_triangle_writes_every_file_of_the_run_directory(env, tmp_path):
    from experiments import triangle

    cfg = triangle.Config(
        **_common(env, tmp_path / "tri", limit=2), max_new_tokens=6, execute="off"
    )
    out = triangle.main(cfg)
    for name in (
        "config.json",
        "manifest.json",
        "layer_scan.parquet",
        "calibration.json",
        "records.parquet",
        "generations.parquet",
        "stats.csv",
        "report.md",
    ):
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "figures").glob("*.png"))) >= 3
    rec = pd.read_parquet(out / "records.parquet")
    study = set(conditions.STUDY_CONDITIONS)
    assert study <= set(rec.condition)
    assert {"scale_0.5", "scale_1", "scale_3", "scale_4"} <= set(rec.condition)
    gen = pd.read_parquet(out / "generations.parquet")
    assert set(gen.condition) == study and len(gen) == 4 * len(study)
    man = json.loads((out / "manifest.json").read_text())
    assert man["layer"] in (0, 1) and man["status"] == "complete"
    report = (out / "report.md").read_text()
    assert "Outcome matrix" in report or "outcome" in report.lower()
