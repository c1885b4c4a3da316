"""Sampled decodings (issue 29): per-row seeds, reproducible, batch-independent, and equal to
an independent full-recomputation sampler on the embedded model."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from experiments import generate as gen_exp
from experiments.triangle import QUICK
from experiments.triangle import Config as TriangleConfig
from plip_nn.edits import AttentionEdit, Condition, EditSpecError, Knockout
from plip_nn.generate import GenerationRequest, generate, generate_recompute
from plip_nn.models import load_model

T = 0.7
N = 6
PROMPTS = ('def add_one(x):\n    """\n    >>>', "def double(y):\n    return y * 2\n#")


@pytest.fixture(scope="module")
def handle():
    return load_model(None)


def _req(handle, i: int, seed: int | None, edit: bool) -> GenerationRequest:
    ids = tuple(handle.tokenizer(PROMPTS[i], add_special_tokens=False)["input_ids"])
    edits = (AttentionEdit(layers=(1,), sources=(len(ids) - 1,), targets=(0, 1), op=Knockout()),)
    return GenerationRequest(
        key=f"{i}-{seed}-{edit}", sample_id=str(i), input_ids=ids,
        condition=Condition(name="knockout" if edit else "baseline", edits=edits if edit else ()),
        source_policy="continuation", sample_seed=seed,
    )  # fmt: skip


def _hand_sampler(handle, ids: tuple[int, ...], seed: int, n: int) -> tuple[int, ...]:
    """Temperature sampling by hand on the HF model, in numpy: a full forward per step, EOS
    banned, p = softmax(logits / T) in float64, the token where the CDF first exceeds
    u * sum(p), u the step's uniform from a CPU generator seeded ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    seq, eos = list(ids), handle.hf.generation_config.eos_token_id
    with torch.inference_mode():
        for _ in range(n):
            logits = handle.hf(torch.tensor([seq], device=handle.device)).logits[0, -1]
            z = logits.double().cpu().numpy() / T
            z[eos] = -np.inf
            p = np.exp(z - z.max())
            u = float(torch.rand(1, generator=gen, dtype=torch.float64)[0])
            cdf = np.cumsum(p)
            seq.append(int(np.searchsorted(cdf, u * cdf[-1], side="right")))
    return tuple(seq[len(ids) :])


def test_mixed_batch_rows_equal_each_row_alone_and_the_recomputation(handle):
    reqs = [_req(handle, i, s, e) for i in (0, 1) for e in (False, True) for s in (None, 11, 12)]
    batched = generate(handle, reqs, max_new_tokens=N, temperature=T, batch_size=len(reqs))
    for req, got in zip(reqs, batched, strict=True):
        [alone] = generate(handle, [req], max_new_tokens=N, temperature=T)
        assert got.new_token_ids == alone.new_token_ids
        ref = generate_recompute(handle, req, max_new_tokens=N, temperature=T)
        assert got.new_token_ids == ref
        if not req.condition.edits:  # the unedited model: a sampler written by hand
            want = (_hand_sampler(handle, req.input_ids, req.sample_seed, N)
                    if req.sample_seed is not None else ref)  # fmt: skip
            assert got.new_token_ids == want
    by = {r.key: r.new_token_ids for r in batched}
    greedy = by["0-None-False"]
    assert by["0-11-False"] != greedy or by["0-12-False"] != greedy  # it did sample
    assert by["0-11-False"] != by["0-12-False"]  # the seed drives it


def test_seeded_rows_refuse_hf_sampling_and_bad_seeds(handle):
    with pytest.raises(EditSpecError, match="do_sample=False"):
        generate(handle, [_req(handle, 0, 3, False)], max_new_tokens=2, do_sample=True)
    with pytest.raises(EditSpecError, match="sample_seed=-1"):
        _req(handle, 0, -1, False)


def _run(tmp_path, name: str, seed: int) -> pd.DataFrame:
    cfg = gen_exp.Config(
        out=str(tmp_path / name), progress=False, seed=seed, layer=1, limit=2,
        languages=("python",), conditions=("baseline", "knockout"), max_new_tokens=N,
        samples=2, temperature=T, execute="off",
    )  # fmt: skip
    return pd.read_parquet(gen_exp.main(cfg) / "generations.parquet")


def test_study_rows_are_paired_reproducible_and_equal_the_reference(handle, tmp_path):
    a, b, c = _run(tmp_path, "a", 0), _run(tmp_path, "b", 0), _run(tmp_path, "c", 1)
    assert len(a) == 2 * 2 * 3  # 2 prompts x 2 conditions x (greedy + 2 sampled)
    pd.testing.assert_frame_equal(a[["text", "gen_seed"]], b[["text", "gen_seed"]])
    counts = a.groupby(["sample_id", "condition", "decoding"]).size().unstack()
    assert (counts["greedy"] == 1).all() and (counts["sampled"] == 2).all()
    sampled = a[a.decoding == "sampled"]
    for row in sampled.itertuples():
        key = f"0|{row.sample_id}|{row.sample_index}".encode()
        assert row.gen_seed == int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1
    # paired: a prompt's baseline and knockout share the seed of each sample_index
    assert (sampled.groupby(["sample_id", "sample_index"])["gen_seed"].nunique() == 1).all()
    assert (a[a.decoding == "greedy"].gen_seed == -1).all()
    assert (a[a.decoding == "greedy"].sample_index == 0).all()
    assert set(c.gen_seed) != set(a.gen_seed)
    assert list(c[c.decoding == "greedy"].raw_text) == list(a[a.decoding == "greedy"].raw_text)
    # a baseline row's sampled tokens: the hand sampler on that prompt alone, with its gen_seed
    base = sampled[sampled.condition == "baseline"]
    assert len(base) == 4
    for row in base.itertuples():
        ids = tuple(handle.tokenizer(row.prompt, add_special_tokens=False)["input_ids"])
        assert tuple(row.tokens) == _hand_sampler(handle, ids, int(row.gen_seed), N)


def _triangle(*argv: str) -> TriangleConfig:
    from experiments import cli

    parser = cli.build_parser(["triangle"])
    args = parser.parse_args(["triangle", *argv])
    args.given_flags = cli.given_flags(parser, "triangle", ["triangle", *argv])  # as main does
    return cli.config_from_args(args)[1]


def test_quick_sets_what_its_help_says_and_flags_override_it():
    quick = _triangle("--quick")
    assert {k: getattr(quick, k) for k in QUICK} == QUICK
    # the documented preset, read from the flag's help (the Attributes entry)
    doc = " ".join((TriangleConfig.__doc__ or "").split())
    assert ("--limit 4 --draws 2 --gen-draws 1 --samples 1 --heads 0 --layer-scopes layer all "
            "--no-plip-scope --max-new-tokens 32") in doc  # fmt: skip
    assert QUICK == {"limit": 4, "draws": 2, "gen_draws": 1, "samples": 1, "heads": 0,
                     "layer_scopes": ("layer", "all"), "plip_scope": False,
                     "max_new_tokens": 32}  # fmt: skip
    mine = _triangle("--quick", "--limit", "6", "--samples", "2", "--layer-scopes", "layer")
    assert (mine.limit, mine.samples, mine.layer_scopes, mine.draws) == (6, 2, ("layer",), 2)
    plain = _triangle()
    assert (plain.samples, plain.temperature, plain.limit, plain.quick) == (3, 0.7, None, False)
    # a flag given with its default value still overrides the preset
    kept = _triangle("--quick", "--samples", "3", "--max-new-tokens=40", "--draws", "2")
    assert (kept.samples, kept.max_new_tokens, kept.draws, kept.limit) == (3, 40, 2, 4)
    assert _triangle("--quick", "--samples", "0").samples == 0
    assert TriangleConfig(quick=True) == quick  # the API applies the same preset


@pytest.mark.parametrize(
    ("argv", "match"),
    [(("--samples", "-1"), "--samples -1"), (("--temperature", "0"), "--temperature 0.0")],
)
def test_bad_sampling_flags_exit_2(argv, match, capsys):
    from experiments import cli

    assert cli.main(["triangle", *argv]) == 2
    assert match in capsys.readouterr().err


def test_the_plan_samples_baseline_and_the_chosen_layer_knockouts_and_first_inert_draws():
    from experiments import triangle

    cfg = triangle.Config(knockout_rows=("marker_span", "continuation"))
    knock, steer = triangle.study_arms(cfg, 4, "w1-2")
    sp = triangle.study_plan(cfg, knock, steer, "w1-2")
    at_l = ["marker_span/identifiers/L", "continuation/identifiers/L"]
    want = {"baseline"} | {f"knockout@{s}" for s in at_l} | {f"inert_control@{s}#0" for s in at_l}
    assert sp.sampled == want
    assert sp.sampled <= sp.prompts and sp.sampled <= sp.generation
    assert triangle.Config().knockout_rows == ("marker_span", "to_call")
    assert triangle.Config().samples == 3
    assert not any(n.startswith("random_control") for n in sp.sampled)
