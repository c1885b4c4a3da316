"""Experiments end to end on a tiny random Qwen2 saved to disk and a hand-positioned corpus.

Record values are checked against independent computations: attention levels against HF's own
``output_attentions``, KL against the hand-written reference attention of
tests/reference_attention.py.
"""

from __future__ import annotations

import json
import math
import re

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
from plip_nn.edits import Condition


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
    """Independent of plip_nn.positions: (ids, marker span rows, identifier tokens, plip
    targets, the prediction position) from the tokenizer's offsets and a regex."""
    code = s["code"]
    enc = tok(code, return_offsets_mapping=True)
    offs = enc["offset_mapping"]

    def over(a, b):
        return {i for i, (x, y) in enumerate(offs) if y > x and x < b and y > a}

    m = s["marker_char_pos"]
    end = m + len(s["marker_pattern"])
    if s["marker_pattern"] == "#[test]" and code[end : end + 1] == "\n":
        end += 1
    span = sorted(over(m, end))
    first = {min(over(c, c + 1)) for c in s["target_char_positions"]} - set(span)
    idents = set()
    for c in s["target_char_positions"]:
        word = re.match(r"\w+", code[c:])
        idents |= over(c, c + (len(word.group()) if word else 1))
    return enc["input_ids"], span, sorted(idents - set(span)), sorted(first), span[-1]


def _levels(att, layer, rows, targets):
    w = att[layer][0][:, rows][:, :, targets].mean(0)  # head-mean [rows, targets]
    return float(w.mean(-1).mean()), float(w.sum(-1).mean())


def test_scan_levels_equal_hf_output_attentions(env, hf, tmp_path):
    out = scan.main(scan.Config(**_common(env, tmp_path / "scan")))
    df = pd.read_parquet(out / "layer_scan.parquet")
    model, tok = hf
    n_layers = model.config.num_hidden_layers
    assert len(df) == 12 * n_layers * 2  # 4+4 tests, 2+2 baselines; two scopes
    assert set(df["layer"]) == set(range(n_layers))
    for sid in ("py_add", "rs_sub", "pyb_inc"):
        ids, span, idents, first, _ = _token_positions(tok, _sample(sid))
        with torch.inference_mode():
            att = model(input_ids=torch.tensor([ids]), output_attentions=True).attentions
        for layer in range(n_layers):
            for rows, targets, src, tgt in (("marker", "plip", span[:1], first),
                                            ("marker_span", "identifiers", span, idents)):  # fmt: skip
                level, mass = _levels(att, layer, src, tgt)
                row = df[(df.sample_id == sid) & (df.layer == layer) & (df.rows == rows)
                         & (df.targets == targets)].iloc[0]  # fmt: skip
                assert row.attn_level == pytest.approx(level, abs=1e-6)
                assert row.attn_mass == pytest.approx(mass, abs=1e-6)
                assert row.n_targets == len(tgt) and row.n_rows == len(src)
    rs = df[(df.sample_id == "rs_sub") & (df.rows == "marker_span")]
    assert (rs.n_rows >= 2).all()  # `#[test]` and its line break are several tokens
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["versions"]["nnsight"]
    assert json.loads((out / "config.json").read_text())["model"] == env["model"]


KO_L = "knockout@marker_span/identifiers/L"


def test_knockout_records_match_reference(env, hf, tmp_path):
    cfg = knockout.Config(**_common(env, tmp_path / "ko", layer=1, languages=("python",)),
                          window=0, draws=2)  # fmt: skip
    out = knockout.main(cfg)
    df = pd.read_parquet(out / "records.parquet")
    names = {"baseline", KO_L, "knockout@marker_span/identifiers/all",
             *(f"{arm}@marker_span/identifiers/{lay}#{d}" for lay in ("L", "all")
               for d in (0, 1) for arm in ("random_control", "inert_control"))}  # fmt: skip
    assert set(df.condition) == names
    assert len(df) == 6 * len(names)  # 4 tests + 2 baselines
    assert not df.duplicated(["sample_id", "condition", "layer"]).any()
    base = df[df.condition == "baseline"]
    assert (base.kl == 0).all() and base.top1_same.all() and (base.n_edges == 0).all()
    ko = df[df.condition == KO_L]
    assert (ko.attn_achieved == 0).all() and (ko.attn_baseline > 0).all()
    assert (df[df.condition == "knockout@marker_span/identifiers/all"].layer == -1).all()
    # KL, top-1, the greedy log-prob and the gold token's log p at the readout row (the call:
    # the token before the one holding "mul" in ">>> mul(1, 1)"), and the perplexity of the
    # tokens after the marker, equal the hand-written reference attention's
    model, tok = hf
    sample = _sample("py_mul")
    ids, span, idents, _, mk = _token_positions(tok, sample)
    call = sample["code"].index("mul(1, 1)")
    offs = tok(sample["code"], return_offsets_mapping=True)["offset_mapping"]
    at = next(i for i, (a, b) in enumerate(offs) if a <= call < b) - 1
    gold = ids[at + 1]
    x = torch.tensor([ids])
    for cond, layers in ((KO_L, (1,)), ("knockout@marker_span/identifiers/all", (0, 1))):
        knock = {lay: [(0, s, t) for s in span for t in idents] for lay in layers}
        with torch.inference_mode():
            plain = torch.log_softmax(model(input_ids=x).logits[0].double(), -1)
            with reference_attention(model, knock=knock):
                edited = torch.log_softmax(model(input_ids=x).logits[0].double(), -1)
        kl_ref = float((plain[at].exp() * (plain[at] - edited[at])).sum())
        top = int(plain[at].argmax())
        row = df[(df.condition == cond) & (df.sample_id == "py_mul")].iloc[0]
        assert (row.readout, row.call_at, row.predict_at, row.gold_token) == ("call", at, at, gold)
        assert row.kl == pytest.approx(kl_ref, rel=1e-3, abs=1e-7)
        assert row.dlogp_top1 == pytest.approx(float(edited[at, top] - plain[at, top]), abs=1e-4)
        assert row.top1_same == (int(edited[at].argmax()) == top)
        assert row.logp_gold_baseline == pytest.approx(float(plain[at, gold]), abs=1e-5)
        assert row.logp_gold_condition == pytest.approx(float(edited[at, gold]), abs=1e-5)
        assert row.dlogp_gold == pytest.approx(float(edited[at, gold] - plain[at, gold]), abs=1e-5)
        assert row.rank_gold_baseline == int((plain[at] > plain[at, gold]).sum())
        assert row.rank_gold_condition == int((edited[at] > edited[at, gold]).sum())
        assert row.p_top1_baseline == pytest.approx(float(plain[at].max().exp()), abs=1e-6)
        after = torch.arange(mk, len(ids) - 1)
        nxt = torch.tensor(ids)[after + 1]

        def ppl(lp, after=after, nxt=nxt):
            return math.exp(float(-lp[after, nxt].mean()))

        assert row.ppl_baseline == pytest.approx(ppl(plain), rel=1e-4)
        assert row.ppl_condition == pytest.approx(ppl(edited), rel=1e-4)
        assert row.logppl_condition == pytest.approx(math.log(ppl(edited)), rel=1e-4)
        assert row.n_edges == len(span) * len(idents)
    assert row.dlogp_gold != 0.0  # the all-layer knockout reaches the call (layer 0 -> 1)
    tests, false = base[base.kind == "test"], base[base.kind == "baseline"]
    assert (tests.dlogp_gold == 0.0).all() and (tests.readout == "call").all()
    assert len(false) == 2 and (false.readout == "").all() and (false.call_at == -1).all()
    assert false.dlogp_gold.isna().all() and (false.gold_token == -1).all()
    # the random control knocks out as many edges, none of them in the signature
    rc = df[(df.condition == "random_control@marker_span/identifiers/L#0")
            & (df.sample_id == "py_mul")].iloc[0]  # fmt: skip
    edit = json.loads(rc.edit)[0]
    assert (edit["rows"], edit["target_set"], edit["layer_scope"], edit["draw"]) == (
        "marker_span",
        "identifiers",
        "L",
        0,
    )  # the scope travels in the edit JSON
    assert Condition.from_json(rc.condition, rc.edit).edits[0].targets == tuple(edit["targets"])
    sig_end = _sample("py_mul")["code"].index(":\n") + 1
    sig = set().union(*(
        {i for i, (a, b) in enumerate(tok(_sample("py_mul")["code"], return_offsets_mapping=True)["offset_mapping"]) if a < sig_end and b > a}
        for _ in [0]
    ))  # fmt: skip
    cm = pd.read_parquet(out / "control_match.parquet")
    match = cm[(cm.sample_id == "py_mul") & (cm.layer == 1) & (cm.draw == 0)].iloc[0]
    assert json.loads(match.control_keys) == edit["targets"]
    assert (len(edit["targets"]) == len(idents)) == match.count_matched
    assert not set(edit["targets"]) & sig
    assert all(t < span[0] for t in edit["targets"])
    assert rc.attn_achieved == 0
    # the inert control zeroes the same keys and leaves the targets' attention at baseline,
    # where the renormalising control raises it
    ic = df[(df.condition == "inert_control@marker_span/identifiers/L#0")
            & (df.sample_id == "py_mul")].iloc[0]  # fmt: skip
    assert json.loads(ic.edit)[0]["targets"] == edit["targets"] and ic.attn_achieved == 0
    assert 0 <= ic.target_rel_dev <= 0.02 and math.isnan(rc.target_rel_dev)
    assert ic.target_attn_condition == pytest.approx(ic.target_attn_baseline, rel=0.02)
    assert rc.target_attn_condition > rc.target_attn_baseline


def test_knockout_every_layer(env, tmp_path):
    cfg = knockout.Config(
        **_common(env, tmp_path / "all", languages=("rust",), limit=2),
        every_layer=True,
        kinds=("test",),
    )
    df = pd.read_parquet(knockout.main(cfg) / "records.parquet")
    ko = df[df.arm == "knockout"]
    assert sorted(ko.layer.unique()) == [0, 1]
    assert len(ko) == 2 * 2 and (ko.attn_achieved == 0).all()


def test_steer_dose_response_follows_formula(env, tmp_path):
    factors = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
    cfg = steer.Config(**_common(env, tmp_path / "steer", layer=0), factors=factors)
    out = steer.main(cfg)
    df = pd.read_parquet(out / "records.parquet")
    cal = json.loads((out / "calibration.json").read_text())
    arms = {conditions.scale_name(f) for f in factors}
    arms |= {"baseline", "set_value_calibrated", "scale_calibrated", "scale_calibrated_x2"}
    assert arms == set(df.arm)
    sv = df[df.arm == "set_value_calibrated"]
    assert len(sv) > 0
    np.testing.assert_allclose(sv.attn_achieved, cal["set_value"], atol=1e-5)
    sc = df[df.arm == "scale_calibrated"]
    assert (sc.factor == cal["scale_factor"]).all()
    assert (df[df.arm == "scale_calibrated_x2"].factor == 2 * cal["scale_factor"]).all()
    one = df[df.arm == "scale_1"]
    np.testing.assert_allclose(one.kl, 0.0, atol=1e-9)
    scaled = df[df.op == "scale"]
    levels = scaled.pivot_table(index="sample_id", columns="factor", values="mass_achieved")
    # achieved head-mean mass increases with the factor for every sample
    assert (np.diff(levels.to_numpy(), axis=1) > 0).all()


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
    cal = calibrate(pd.DataFrame(rows), 2)  # a scan without scope columns: its one scope
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
    assert (df[df.arm == "knockout"].attn_achieved == 0).all()
    assert df[df.condition == "baseline"].attn_achieved.isna().all()
    assert set(df.scope) == {"", "marker_span/identifiers/L"}


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
    for mod, extra in ((knockout, {"window": 0, "draws": 1}),
                       (steer, {"factors": (0.5, 2.0), "calibrated": False})):  # fmt: skip
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
    cfg = knockout.Config(**_common(env, out, layer=0, batch_size=1), window=0, draws=1)
    full = pd.read_parquet(knockout.main(cfg) / "records.parquet")
    parts = sorted((out / "parts" / "records").glob("*.parquet"))
    assert len(parts) >= 2
    # lose the last part and the assembled table, as a crash would
    parts[-1].unlink()
    (out / "records.parquet").unlink()
    (out / "parts" / "records" / ".x.parquet.tmp-1").write_bytes(b"half")
    resumed = knockout.Config(
        **_common(env, out, layer=0, batch_size=1, resume=True), window=0, draws=1
    )
    again = pd.read_parquet(knockout.main(resumed) / "records.parquet")
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
    with pytest.raises(ConfigError, match="--rows"):
        knockout.Config(rows="marker_row")
    with pytest.raises(ConfigError, match="--draws"):
        knockout.Config(draws=0)
    base = conditions.build(conditions.Arm("baseline"), None, layer=0, n_layers=2)  # type: ignore[arg-type]
    assert base is not None and math.isnan(conditions.condition_op(base)[1])


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


def test_choose_layer_is_the_python_peak_at_any_layer_the_last_included():
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
    assert choose_layer(scan_df([0.1, 0.2, 0.15, 0.9])) == 3  # the last layer can be chosen


def test_triangle_writes_every_file_of_the_run_directory(env, tmp_path):
    from experiments import triangle

    cfg = triangle.Config(
        **_common(env, tmp_path / "tri", limit=2), max_new_tokens=6, execute="off", draws=1,
        factors=(2.0,),
    )  # fmt: skip
    out = triangle.main(cfg)
    for name in (
        "config.json",
        "manifest.json",
        "layer_scan.parquet",
        "calibration.json",
        "noise_floor.parquet",
        "control_match.parquet",
        "records.parquet",
        "generations.parquet",
        "stats.csv",
        "report.md",
    ):
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "figures").glob("*.png"))) >= 3
    rec = pd.read_parquet(out / "records.parquet")
    man = json.loads((out / "manifest.json").read_text())
    assert man["steering_window"] in ("w0-1",)  # the sweep of 2 layers has one window
    knock, steer_arms = triangle.study_arms(cfg, 2, man["steering_window"])
    grid = {"baseline", *(a.name for a in knock + steer_arms)}
    sp = triangle.study_plan(cfg, knock, steer_arms, man["steering_window"])
    prompts = rec[rec.kind == "generation"]
    set_values = {a.name for a in steer_arms if a.arm == "set_value_calibrated"}
    assert set(prompts.condition) == sp.prompts
    assert {"marker_span/identifiers/L", "to_call/identifiers/all", "marker/plip/L",
            "marker/plip/all", "marker_span/identifiers/w0-1"} <= set(rec.scope)  # fmt: skip
    assert not rec.scope.str.startswith("continuation").any()  # not a default knockout row
    tests = rec[rec.kind == "test"]
    assert grid - set_values <= set(tests.condition)  # the study runs on the test samples
    # steering in every deciding scope: each knockout row scope at L and all, and the window;
    # the dose series at the chosen layer
    for scope in ("marker_span/identifiers/L", "marker_span/identifiers/all",
                  "to_call/identifiers/L", "to_call/identifiers/all",
                  "marker_span/identifiers/w0-1"):  # fmt: skip
        arms = set(tests[tests.scope == scope].arm)
        assert {"knockout", "random_control", "inert_control", "scale_calibrated"} <= arms, scope
        series = {"scale_2", "scale_calibrated_x2"}
        assert (series <= arms) == scope.endswith("/L"), scope
    inert = rec[rec.arm == "inert_control"]
    assert len(inert) and inert.target_rel_dev.between(0, 0.02).all()
    assert rec[rec.arm != "inert_control"].target_rel_dev.isna().all()
    # control keys for every knockout scope's rows, every layer and draw
    cm = pd.read_parquet(out / "control_match.parquet")
    for a in knock:
        assert a.scope is not None
        got = cm[(cm.rows == a.scope.rows) & (cm.targets == a.scope.targets)]
        assert set(got.layer) == {0, 1} and set(got.draw) == {0}, a.scope.label
    # the scan reads every layer, the last included
    assert set(pd.read_parquet(out / "layer_scan.parquet").layer) == {0, 1}
    gen = pd.read_parquet(out / "generations.parquet")
    assert sp.generation - set_values <= set(gen.condition) <= sp.generation
    assert "knockout@marker/plip/all" not in sp.generation  # a compared scope
    assert man["layer"] in (0, 1) and man["status"] == "complete"
    report = (out / "report.md").read_text()
    assert report.index("## Findings") < report.index("## Outcome matrix")
