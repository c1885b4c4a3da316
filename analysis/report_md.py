"""report.md: the text around the tables, and what the run still cannot show (from the data)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.callsite import CERTAIN, DLOGP_MARGIN, call_rows, cannot_move, inert_check
from analysis.dose import H2Result
from analysis.families import FAMILIES
from analysis.findings import false_markers_louder, scope_words
from analysis.languages import H1_MEASURES, H1Result, MarkerResult, ObserveResult
from analysis.matching import MIN_MATCHED
from analysis.reach import MIN_CHANGED, REACH_NATS
from analysis.report_tables import (
    control_table,
    h1_table,
    h2_table,
    knockout_table,
    marker_table,
    md_table,
    preservation_table,
    source_table,
    steering_table,
)
from analysis.robust_report import NO_SAMPLED
from analysis.scopes import scope_order
from analysis.verdicts import EFFECT_WORDS, TriangleOutcome, interpretation_table

__all__ = ["Inputs", "cannot_show", "render"]


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """Everything the report text is written from."""

    label: str
    sources: list[Path]
    tables: dict[str, pd.DataFrame]
    metas: list[dict[str, Any]]
    stats: pd.DataFrame
    outcomes: list[TriangleOutcome]
    h1s: list[H1Result]
    h2s: list[H2Result]
    observed: list[ObserveResult]
    markers: list[MarkerResult]
    matching: pd.DataFrame
    found: list[str]
    figures: list[Path]
    alpha: float
    margin: float
    floor: dict[str, float]
    heads_md: str = ""
    power: pd.DataFrame | None = None
    robust: pd.DataFrame | None = None
    rates: Mapping[tuple[str, str, str], Any] | None = None
    sampled: bool = False
    seed_sources: list[Path] = field(default_factory=list)


def _versions(man: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for k in ("experiment", "model", "model_revision", "git_commit", "seed", "remote", "device",
              "dtype", "layer", "layer_by_half", "layer_choice", "started", "finished",
              "status"):  # fmt: skip
        if k in man:
            info[k] = man[k]
    for k, v in (man.get("versions") or {}).items():
        info[k] = v
    return info


def _design(x: Inputs) -> list[str]:
    lines = ["## Design\n\n"]
    for src, meta in zip(x.sources, x.metas, strict=True):
        man = meta.get("manifest", {})
        info: dict[str, Any] = {"run directory": str(src), **_versions(man)}
        skipped = man.get("skipped_masked") or []
        info["samples skipped (--skip-masked)"] = len(skipped)
        lines.append(md_table(pd.DataFrame({"item": list(info),
                                            "value": [str(v) for v in info.values()]})))  # fmt: skip
        if skipped:
            lines.append("\nSkipped because an edge is causally masked (`--skip-masked`):\n\n")
            lines.extend(f"- `{s['sample_id']}`: {s['reason']}\n" for s in skipped)
        note = (man.get("execute") or {}).get("note")
        if note:
            lines.append(f"\n**Generated tests (`executes`)**: {note}.\n")
        by_half = man.get("layer_by_half")
        if man.get("layer_choice") == "cross-fitted scan peak" and by_half:
            same = len(set(by_half.values())) == 1
            lines.append(
                f"\n**Layer, held out.** The functions were split into two seeded halves; each "
                f"half is edited at the peak layer of the *other* half's scan (half 0 → layer "
                f"{by_half['0']}, half 1 → layer {by_half['1']})"
                + (", so every sample uses the same layer" if same else "")
                + ". No sample is edited at a layer chosen on itself.\n"
            )
        elif man.get("layer_choice") == "flag":
            lines.append("\n**Layer** given with `--layer`: not chosen on these samples.\n")
        elif "layer" in man:
            lines.append(
                "\n**Layer**: chosen on the same samples it is tested on (not held out).\n"
            )
        lines.append("\n")
    lines.append(
        "**Scoring.** One rule for both languages: only the *first* generated test is scored "
        "(Python: the first doctest example and its expected output; Rust: the first test "
        "function). `preserved` = it calls the function by name with the declared number of "
        "arguments and parses; `calls_function` (a call by name) is reported beside it.\n\n"
        "**Readouts.** Primary: at the call -- on each test sample, teacher-forced on its gold "
        "test, the row that predicts the first token of the function's name where the test "
        "first calls it: the gold token's Δlog p (`dlogp_gold`), its rank, KL and top-1. "
        "Secondary: KL/top-1 at the token after the marker on the generation prompts, the "
        "test's log-PPL, and generation preservation.\n\n"
        "**Controls.** Each knockout has, in its own rows and layers, random keys outside the "
        "signature matched on the removed mass layer by layer; the **inert** control (their "
        "mass goes to non-target keys only, so the targets' attention stays at baseline) "
        "decides, the renormalising control is a compared row.\n\n"
    )
    by_source = source_table(x.tables.get("records"), x.tables.get("generations"))
    if len(by_source):
        lines.append(
            "**Corpus by source** (`corpus_source`: hand-written, or mined from real code by "
            "`plip-nn corpus mine`). No prompt was kept or dropped by the model's baseline "
            "behaviour: every sample of the corpus (up to `--limit`) is in the run, so there is "
            "no unselected run to compare. Baseline preservation is greedy, on the generation "
            "prompts:\n\n" + md_table(by_source) + "\n"
        )
    counts = {f"rows in {k}.parquet": len(v) for k, v in x.tables.items()}
    if x.sampled and "rows in generations.parquet" in counts:  # the tables hold greedy rows
        counts["rows in generations.parquet (greedy; the sampled decodings feed the rates)"] = (
            counts.pop("rows in generations.parquet"))  # fmt: skip
    lines.append(md_table(pd.DataFrame({"table": list(counts),
                                        "rows": [str(v) for v in counts.values()]})))  # fmt: skip
    for src, meta in zip(x.sources, x.metas, strict=True):
        if "calibration" in meta:
            cal = {k: v for k, v in meta["calibration"].items() if not isinstance(v, list | dict)}
            lines.append(f"\n### Calibration (`{src.name}`)\n\n")
            lines.append(md_table(pd.DataFrame({"quantity": list(cal),
                                                "value": [str(v) for v in cal.values()]})))  # fmt: skip
    return lines


def _matrix(x: Inputs) -> list[str]:
    lines = ["\n## Outcome matrix (one row per scope)\n\n"]
    if not x.outcomes:
        return [
            *lines,
            "_No knockout/steering data in this run: the triangle was not classified._\n",
        ]
    cols = [(o.model, o.language) for o in x.outcomes]
    many = len({c[0] for c in cols}) > 1
    scopes = scope_order(sorted({s for o in x.outcomes for s in o.cells}))
    matrix = pd.DataFrame([
        {"scope": s, **{(f"{m} / {g}" if many else g):
                        next((o.cells.get(s, "not run") for o in x.outcomes
                              if o.model == m and o.language == g), "not run")
                        for m, g in cols}}
        for s in scopes
    ])  # fmt: skip
    lines.append(md_table(matrix))
    lines.append("\nEach knockout is paired with the steering of its own scope; a scope without "
                 "steering reads \"steering not run\".\n")  # fmt: skip
    for o in x.outcomes:
        for scope, st in o.steering_by_scope.items():
            lines.append(f"\n- Steering ({o.model} / {o.language}, `{scope}`): "
                         f"**{EFFECT_WORDS[st.effect]}** -- {st.words}.\n")  # fmt: skip
        lines.extend(f"\n- _{o.model} / {o.language}: {n}._\n" for n in o.notes)
    lines.append(f"\nRule: {x.outcomes[0].rule}.\n\n")
    lines.append(md_table(interpretation_table()))
    return lines


def _knockouts(x: Inputs) -> list[str]:
    lines = ["\n## Knockout by scope\n\n"]
    if not x.outcomes:
        return lines
    lines.append(
        "Primary: the call-site Δlog p of the gold name token, knockout minus the inert control "
        "(paired by prompt, BCa bootstrap; negative = the knockout lowers the name's log p "
        f"more), margin ±{DLOGP_MARGIN:g} nats; the renormalising control and baseline are "
        "compared rows. Preservation: knockout minus control (first draw), exact McNemar with "
        f"Newcombe CIs; power is the exact McNemar power to detect a {100 * x.margin:.0f} pp "
        "drop at α_adj; `Δ over draws` is the range over the control draws.\n\n"
    )
    if not x.sampled:
        lines.append(f"Preservation on sampled decodings: _{NO_SAMPLED}_ (greedy only).\n\n")
    else:
        lines.append(
            "Preservation on sampled decodings decides the generation verdict: per-prompt rates "
            "over the sampled decodings, knockout vs each generation draw of the control, paired "
            "BCa bootstrap of the mean rate difference at α_adj with a GEE (binomial, prompt "
            "clusters, exchangeable) cross-check (`analysis.rates`); the greedy McNemar verdict "
            "is the compared row.\n\n"
        )
    lines.append(md_table(knockout_table(x.outcomes, x.rates, sampled=x.sampled)))
    lines.append("\n")
    for o in x.outcomes:
        for k in o.knockouts:
            lines.append(f"- {o.model} / {o.language}, `{k.scope}` ({scope_words(k.scope)}): "
                         f"**{EFFECT_WORDS[k.effect]}** -- {k.words}.\n")  # fmt: skip
    lines.append("\n### Preservation and calls_function by condition\n\n")
    lines.append(md_table(preservation_table(x.tables.get("generations"))))
    lines.append("\n### Controls matched per layer (share of (prompt, draw) pairs with a "
                 "removed-mass ratio in 0.9-1.1)\n\n")  # fmt: skip
    lines.append(
        f"A scope with any edited layer below {100 * MIN_MATCHED:.0f}% reads "
        "\"control unmatched\".\n\n" if len(x.matching)
        else "_No per-layer matching: control_match.parquet is missing or holds no layer of "
        "these scopes (an old run)._\n\n"
    )  # fmt: skip
    if len(x.matching):
        t = x.matching.copy()
        t["matched share"] = (100 * t["matched share"]).map(lambda v: f"{v:.0f}%")
        lines.append(md_table(t))
    lines.append("\n### The inert control's check (targets' attention vs baseline)\n\n")
    inert = inert_check(x.tables.get("records"))
    lines.append(md_table(inert) if len(inert) else
                 "_No inert_control rows with `target_rel_dev` (an old run)._\n")  # fmt: skip
    return lines


def _power(x: Inputs) -> list[str]:
    lines = ["\n## Prospective power of every deciding test\n\n"]
    if x.power is None or not len(x.power):
        return [*lines, "_No deciding test with an estimable variance._\n"]
    lines.append(
        "Each deciding test (a knockout scope vs its deciding control's first draw; each deciding "
        "steering condition vs baseline) at the family's Bonferroni α: detection of a change of "
        "the margin, and equivalence (TOST) within ±margin when the true change is 0. `observed` "
        "is the discordance ψ (paired binary) or the SD of the paired differences (call-site "
        "Δlog p in nats; per-prompt rates); `n for 80%` is the smallest n with power ≥ 0.8 "
        "(-1: over 100,000); `low` marks power < 0.5 (`analysis.power`).\n\n"
    )
    t = x.power.copy()
    t["power"] = t["power"].map(lambda v: f"{v:.2f}")
    t["low"] = t.pop("flag_low_power").map(lambda v: "LOW" if v else "")
    t = t.rename(columns={"n_for_80": "n for 80%"})
    lines.append(md_table(t[["model", "language", "scope", "condition", "reference", "test",
                             "margin", "observed", "n", "power", "n for 80%", "low"]]))  # fmt: skip
    return lines


def _robust(x: Inputs) -> list[str]:
    lines = ["\n## Robustness of each knockout verdict\n\n"]
    if x.robust is None or not len(x.robust):
        return [*lines, "_No knockout verdict._\n"]
    dims = ["every control draw", "each half's samples (the layer that half was edited at)"]
    if x.seed_sources:
        dims.append("each seed of the study (run directories whose config.json differs only in "
                    "`seed`: " + ", ".join(f"`{p}`" for p in x.seed_sources) + ")")  # fmt: skip
    else:
        dims.append("no further seeds (pass run directories that differ only in `seed` to "
                    "`plip-nn analyze RUN ... --out DIR`)")  # fmt: skip
    dims.append("greedy vs sampled decoding (row `· preservation`)" if x.sampled
                else f"decoding: {NO_SAMPLED}")  # fmt: skip
    lines.append("Each knockout verdict recomputed under " + "; ".join(dims) + ". A Finding "
                 "states its verdict only where every level agrees; otherwise it names the "
                 "levels that disagree (`analysis.robustness`).\n\n")  # fmt: skip
    lines.append(md_table(x.robust.assign(agree=x.robust["agree"].map({True: "yes", False: "NO"}))))
    return lines


def _reach(x: Inputs) -> list[str]:
    lines = ["\n## Does each edit reach the output?\n\n"]
    lines.append(
        f"A cell decides only if its median call-site |Δlog p| is at least {REACH_NATS} nats or "
        f"at least {100 * MIN_CHANGED:.0f}% of its generations changed (docs/CONTRACT.md, "
        '"Reach"); below both it reads "does not reach the output". '
    )
    if x.floor:
        lines.append("KL noise floor (reported, no longer the gate): " + ", ".join(
            f"{m}: {v:.2e} nats" for m, v in x.floor.items()) + ".\n\n")  # fmt: skip
        high = [m for m, v in x.floor.items() if v >= REACH_NATS / 5]
        if high:
            lines.append(f"**Warning**: the noise floor of {', '.join(high)} is at least a fifth "
                         f"of the {REACH_NATS} nats gate; the gate no longer separates an edit "
                         "from numerical noise by a wide factor (docs/CONTRACT.md, \"Reach\").\n\n")  # fmt: skip
    else:
        lines.append("_No noise_floor.parquet._\n\n")
    if x.outcomes:
        lines.append(md_table(pd.DataFrame([
            {"model": o.model, "language": o.language, "scope": k.scope,
             "reaches": "yes" if k.reach.reached else "**no**", "evidence": k.reach.words}
            for o in x.outcomes for k in o.knockouts
        ])))  # fmt: skip
    lines.append("\n### Where a readout can move\n\n")
    moves = cannot_move(x.tables.get("records"))
    lines.append(
        md_table(moves) + f"\nA readout whose median baseline top-1 probability is ≥ {CERTAIN} "
        "cannot move: its next token is certain, so KL and top-1 there cannot show an effect "
        "(the KL after the marker is a secondary row).\n" if len(moves)
        else "_Records lack `readout`/`p_top1_baseline` (an old run)._\n"
    )  # fmt: skip
    return lines


def _hypotheses(x: Inputs) -> list[str]:
    lines = ["\n## Steering by scope and its manipulation checks\n\n"]
    lines.append(
        "A steering condition decides only when its achieved attention moved the intended way "
        "(Wilcoxon signed-rank, Bonferroni over the steering conditions) and it reaches the "
        "output. Python SetValue sets Python to its own level: the roadmap's control.\n\n"
    )
    lines.append(md_table(steering_table(x.outcomes)) if x.outcomes else "_(none)_\n")
    lines.append("\n## H1: is the knockout effect larger in Python than in Rust?\n\n")
    lines.append(
        "Per scope and measure: each language's mean per-prompt effect of the knockout against "
        "its deciding control (paired BCa 95% CI); Python − Rust with an unpaired bootstrap CI "
        "and a Welch t p, Holm-corrected across every comparison of the model.\n\n"
    )
    lines.extend(f"- **{k}**: {v}\n" for k, v in H1_MEASURES.items())
    lines.append("\n" + md_table(h1_table(x.h1s)))
    lines.append("\n## H2: preservation against the steering dose, per scope\n\n")
    if x.h2s:
        lines.append(md_table(h2_table(x.h2s)))
        lines.extend(f"\n- {r.model} / {r.language} / {r.scope or 'all Scale arms'}: {r.verdict}.\n"
                     for r in x.h2s)  # fmt: skip
    else:
        lines.append("_No Scale dose-response in a scope where steering reaches the output._\n")
    return lines


def _observe(x: Inputs) -> list[str]:
    lines = ["\n## Observe: Python vs Rust attention\n\n"]
    if x.observed:
        lines.append(md_table(pd.DataFrame([
            {"model": r.model, "scope": r.scope, "view": r.view, "Python mean": r.python_mean,
             "Rust mean": r.rust_mean, "ratio": r.ratio, "Welch p": r.test.pvalue,
             "Cohen's d": r.d}
            for r in x.observed
        ])))  # fmt: skip
        lines.append(
            "\nRead in the edited scope. The position-normalised view multiplies each level by "
            "the number of keys the marker row can attend to (its level relative to uniform).\n"
        )
    lines.append("\n### Real vs false markers, every layer\n\n")
    lines.append(md_table(marker_table(x.markers)) if x.markers
                 else "_No false markers (kind=baseline) in the scan._\n")  # fmt: skip
    ctrl = x.tables.get("control_match")
    lines.append("\n## The random controls (matched on count and removed mass, per layer)\n\n")
    if ctrl is not None:
        lines.append(md_table(control_table(ctrl)))
        lines.append(
            "\nWhere the knockout's targets include token 0 (`def`/`fn` in a model without BOS) "
            "and it acts as an attention sink, no set of keys outside the signature can match "
            "the removed mass; the ratio then stays below 1 and the comparison is weaker there.\n"
        )
    else:
        lines.append("_No control_match.parquet in this run._\n")
    return lines


def _header_share(tables: dict[str, pd.DataFrame]) -> str:
    """ ", as N% of the baseline's preserved Rust tests do" -- measured, or "" without data."""
    gens = tables.get("generations")
    if gens is None or "function_name" not in gens or "text" not in gens:
        return ""
    rs = gens[(gens["language"] == "rust") & (gens["condition"] == "baseline") & gens["preserved"]]
    if not len(rs):
        return ""
    named = [
        bool(re.search(rf"fn\s+\w*{re.escape(str(name))}\w*\s*\(", str(text)))
        for name, text in zip(rs["function_name"], rs["text"], strict=True)
    ]
    return f", as {100 * sum(named) / len(named):.0f}% of the {len(named)} preserved Rust tests at baseline do"


def cannot_show(x: Inputs) -> list[str]:
    """The data-specific limits of the run, in words."""
    out = []
    low = x.matching[x.matching["matched share"] < MIN_MATCHED] if len(x.matching) else x.matching
    if len(low):
        where = "; ".join(f"{r.model} / {r.language} `{r.scope}` layer {r.layer} "
                          f"({100 * r.share:.0f}%)"
                          for r in low.rename(columns={"matched share": "share"}).itertuples())  # fmt: skip
        out.append(f"Controls unmatched at some edited layer ({where}): those scopes cannot "
                   "say whether the targets matter more than as much attention elsewhere.")  # fmt: skip
    moves = cannot_move(x.tables.get("records"))
    stuck = moves[moves["can move"] != "yes"] if len(moves) else moves
    for r in stuck.rename(columns={"median p_top1_baseline": "p"}).itertuples():
        out.append(f"In {r.language.capitalize()} ({r.model}) the {r.readout} readout cannot "
                   f"move (median p of the baseline's top-1 {r.p:.3f}): KL and top-1 there "
                   "cannot show an effect.")  # fmt: skip
    if x.tables.get("records") is not None and call_rows(x.tables["records"]) is None:
        out.append("This run has no call-site readout (an old run): the knockouts were judged "
                   "at the token after the marker, which in Rust is `fn` with p ≈ 1.")  # fmt: skip
    for o in x.outcomes:
        un = [k.scope for k in o.knockouts if k.effect == "unreached"]
        dis = [k.scope for k in o.knockouts if k.effect == "disagree"]
        weak = [k.scope for k in o.knockouts if not math.isnan(k.power) and k.power < 0.5]
        weak_call = [f"{k.scope} (n = {k.call_n80:.0f} for 80%)" for k in o.knockouts
                     if not math.isnan(k.call_power) and k.call_power < 0.5]  # fmt: skip
        no_steer = [k.scope for k in o.knockouts if k.scope not in o.steering_by_scope]
        if un:
            out.append(f"{o.model} / {o.language}: {', '.join(un)} do not reach the output, so "
                       "nothing there is evidence for or against a role of these edges.")  # fmt: skip
        if dis:
            out.append(f"{o.model} / {o.language}: the verdict of {', '.join(dis)} depends on "
                       "the control draw.")  # fmt: skip
        if weak:
            out.append(f"{o.model} / {o.language}: preservation has power < 0.5 at the margin in "
                       f"{', '.join(weak)}; a change of the margin's size may be missed there.")  # fmt: skip
        if weak_call:
            out.append(f"{o.model} / {o.language}: the call-site Δlog p has power < 0.5 at "
                       f"±{o.margin_nats:g} nats in {', '.join(weak_call)}.")  # fmt: skip
        if no_steer:
            out.append(f"{o.model} / {o.language}: steering was not run in {', '.join(no_steer)}, "
                       "so those scopes say nothing about malleability.")  # fmt: skip
    for model in sorted({m.model for m in x.markers}):
        louder = false_markers_louder(x.markers, model)
        if louder:
            out.append(f"Observe ({model}): false markers draw more attention than real ones in "
                       f"{louder}, so the marker is not the only thing that draws it there.")  # fmt: skip
    for r in x.h2s:
        if r.status != "estimated":
            out.append(f"H2 {r.model} / {r.language} / {r.scope or 'all'}: {r.status}.")
    return out


def render(x: Inputs) -> str:
    lines = [f"# plip-nn analysis: `{x.label}`\n\n", "## Findings\n\n"]
    lines.extend(f"- {s}\n" for s in x.found) if x.found else lines.append(
        "_No decided outcome._\n"
    )
    lines.append(
        f"\nα = {x.alpha}; equivalence margins ±{DLOGP_MARGIN:g} nats (call-site Δlog p) and "
        f"±{100 * x.margin:.0f} pp (preservation). Every verdict holds for its scope only "
        "(rows → targets, layers; `plip_nn.scope`).\n\n"
    )
    every = [*x.sources, *x.seed_sources]
    lines.append("Regenerate with `plip-nn analyze " + " ".join(str(p) for p in every)
                 + (f" --out {x.label}" if len(every) > 1 else "") + "` (reads records only).\n\n")  # fmt: skip
    for part in (_design, _matrix, _knockouts, _power, _robust, _reach, _hypotheses, _observe):
        lines.extend(part(x))
    lines.append(x.heads_md)
    if x.figures:
        lines.append("\n## Figures\n\n")
        lines.extend(f"![{p.stem}](figures/{p.name})\n\n" for p in x.figures)
    lines.append("\n## Tests and corrections\n\n")
    lines.append(
        "Paired data get paired tests: call-site Δlog p → paired BCa bootstrap (deciding CI at "
        "1 − α/m); preservation → exact McNemar with Newcombe CIs; attention before/after an "
        "edit → Wilcoxon signed-rank and paired t with d_z; KL knockout vs control → Wilcoxon "
        "with a bootstrap CI; Python vs Rust and real vs false markers → Welch t with Cohen's d. "
        "Families (corrected within each model and language; `counted` marks a family's rows; "
        "`p_bonferroni` is what decisions use, `p_holm` (Holm) is given alongside):\n\n"
    )
    lines.extend(f"- `{name}`: {text}\n" for name, text in FAMILIES.items())
    lines.append("\nAll rows are in `stats.csv`.\n\n")
    cols = ["model", "test", "language", "condition", "pvalue", "p_bonferroni", "effect",
            "ci_low", "ci_high", "n"]  # fmt: skip
    for family, grp in x.stats.groupby("family", sort=False):
        lines.append(f"### {family}\n\n" + md_table(grp[cols]) + "\n")
    lines.append("## What this data cannot show\n\n")
    lines.extend(f"- {s}\n" for s in cannot_show(x))
    lines.append(
        "- Each verdict holds for its scope: the edited rows, keys and layers, at every head of "
        "those layers. Other routes to the same information (the residual stream, other rows, "
        "heads left unedited) stay open.\n"
        '- "No effect" means the 90% CI lies inside the stated margin; changes smaller than the '
        "margin are not ruled out.\n"
        "- Steering edits probabilities directly: a rise shows the pathway is usable, not that the "
        "model uses it this way.\n"
        "- Preservation is syntactic"
        + ("" if x.sampled else f" and greedy ({NO_SAMPLED})")
        + "; `executes` needs the sandbox and, for Rust, "
        "rustc. Sampled decoding, other seeds and other corpora may differ.\n"
        f"- A generated Rust test may name the function in its own header (`fn test_<name>`) and "
        f"copy the call from there rather than from the function{_header_share(x.tables)}; the "
        "`mentions` targets and `to_call`/`continuation` rows close that path.\n"
        "- The embedded model is tiny and trained on synthetic copy tasks; results hold for this "
        "model, this corpus and these seeds only.\n"
    )
    return "".join(lines)
