"""The report's ``## Heads`` section: findings in words, then the tables behind them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.equivalence import PairedDifference
from analysis.heads_heldout import LAYER_KO, RANDOM, TOPK, HeldOut

__all__ = ["TOP_N", "heads_section"]

TOP_N = 10
"""The attribution is validated on the overlap of the TOP_N heads each ranking puts first."""


def _fmt_ci(mean: float, lo: float, hi: float) -> str:
    return f"{mean:+.3g} [{lo:+.3g}, {hi:+.3g}]"


def _pp(d: PairedDifference) -> str:
    return f"{100 * d.effect:+.1f} pp [{100 * d.ci95[0]:+.1f}, {100 * d.ci95[1]:+.1f}]"


def _heads_str(heads: tuple[tuple[int, int], ...]) -> str:
    """``1.2, 3.0``: layer.head of each pair."""
    return ", ".join(f"{lay}.{h}" for lay, h in heads)


WHOLE_WORDS = {
    "none": "K heads carry the whole model's effect (equivalent within the margin)",
    "predicted": "K heads carry only part of the whole model's effect (significantly less)",
    "opposite": "knocking out K heads changes preservation MORE than knocking out every head",
    "inconclusive": "undecided whether K heads carry the whole model's effect",
}


def _findings(
    summary: pd.DataFrame, validation: pd.DataFrame, held: Sequence[HeldOut]
) -> list[str]:
    out = []
    unreached: set[tuple[str, str]] = set()
    for (model, language), g in summary.groupby(["model", "language"], sort=True):
        reach = g["reaches_output"]
        if reach.notna().all() and not reach.astype(bool).any():
            unreached.add((str(model), str(language)))
            out.append(
                f"{model} / {language}: no single head's knockout moves the prediction beyond "
                f"the KL noise floor (largest median KL {g['kl_median'].max():.2g} nats, floor "
                f"{g['kl_floor'].iloc[0]:.2g}): at the prediction there is nothing to rank, and "
                "the head rankings, the attribution's ρ and the held-out selection below rest "
                "on numerical noise in this language."
            )
            continue
        best = g.sort_values("rank_measured").iloc[0]
        n_reach = "" if reach.isna().any() else (
            f"; {int(reach.astype(bool).sum())} of {len(g)} heads have a median KL above the "
            f"noise floor ({g['kl_floor'].iloc[0]:.2g} nats)"
        )  # fmt: skip
        ci = _fmt_ci(best["dlogp_top1"], best["dlogp_top1_ci_low"], best["dlogp_top1_ci_high"])
        out.append(
            f"{model} / {language}: knocking out the marker→function edges of head "
            f"{int(best['layer'])}.{int(best['head'])} alone lowers log p of the greedy token "
            f"most ({ci}, KL {best['kl']:.3g}; attention level {best['attn_level']:.3f}, mass "
            f"{best['attn_mass']:.3f}){n_reach}; unedited, the greedy token there has probability "
            f"{best['p_top1']:.3f} on average."
        )
    v = validation[(validation["estimator"] == "attribution")]
    for r in v.itertuples():
        if r.language == "both" or (str(r.model), str(r.language)) in unreached:
            continue
        g = summary[(summary["model"] == r.model) & (summary["language"] == r.language)]
        worst = g.loc[(g["attribution"] - g["dlogp_top1"]).abs().idxmax()]
        out.append(
            f"{r.model} / {r.language}: attribution from one forward and one backward ranks the "
            f"heads like the measured knockouts (Spearman ρ = {r.rho_heads:.2f} over "
            f"{r.n_heads} heads, {r.rho_items:.2f} over prompts × heads; {r.top_shared} of the "
            f"top {r.top_n} shared); its largest miss is head {int(worst['layer'])}."
            f"{int(worst['head'])} (estimate {worst['attribution']:+.3g} vs measured "
            f"{worst['dlogp_top1']:+.3g}, mass on the targets {worst['attn_mass']:.2f})."
        )
    for h in held:
        share = _share(h)
        if share:
            out.append(f"{h.model} / {h.language}, held out: {share}.")
        if h.vs_random:
            c = h.vs_random[0]
            verdict = f"**{h.knockout_effect}** ({c.words})"
            if h.knockout_effect == "unreached" and h.knockout_reach is not None:
                verdict = f"**does not reach the output** ({h.knockout_reach.words}; {c.words})"
            out.append(
                f"{h.model} / {h.language}, held out (heads chosen on the other half): the "
                f"top-{h.k} heads' knockout vs {h.k} random heads matched on mass: "
                f"{verdict}."
            )
        if h.vs_layer is not None:
            whole = WHOLE_WORDS[h.vs_layer.effect]
            if h.layer_vs_baseline is not None and h.layer_vs_baseline.effect != "predicted":
                whole = (
                    "knocking out every head of every layer does not lower preservation "
                    "significantly "
                    f"({h.layer_vs_baseline.words}), so there is no whole effect to carry"
                )
            out.append(f"{h.model} / {h.language}: {whole} ({h.vs_layer.words}).")
        if h.steer is not None and h.manipulation_ok is False:
            out.append(
                f"{h.model} / {h.language}: Scale ×{h.factor:g} of the top-{h.k} heads did not "
                "move the marker→function attention the intended way (manipulation "
                f"check failed), so its preservation result ({h.steer.words}) decides nothing."
            )
        elif h.steer is not None:
            out.append(
                f"{h.model} / {h.language}: Scale ×{h.factor:g} of the top-{h.k} heads only: "
                + (
                    "**does not reach the output**"
                    if h.steer.effect == "unreached"
                    else f"**{h.steer.effect}**"
                )
                + f" ({h.steer.words})."
            )
    return out


def _share(h: HeldOut) -> str:
    """The top-K knockout's effect at the readout next to the whole model's and random heads',
    and its share of the whole-model effect with its CI."""
    col = h.measure
    by = {(r["condition"], r["column"]): r for r in h.single}
    topk = by.get((f"{TOPK}@{h.scope}", col))
    whole = by.get((f"{LAYER_KO}@{h.scope}", col))
    rand = by.get((f"{RANDOM}@{h.scope}#0", col))
    if topk is None or whole is None:
        return ""
    what = "the gold name token at the call" if col == "dlogp_gold" else "the greedy token"
    text = (
        f"knocking out the top-{h.k} heads changes log p of {what} (`{col}`) by "
        f"{_fmt_ci(topk['mean'], topk['ci_low'], topk['ci_high'])}, every head of every layer "
        f"by {_fmt_ci(whole['mean'], whole['ci_low'], whole['ci_high'])}"
    )
    sh = h.share
    if sh is not None and math.isfinite(sh.share):
        text += (f" (share of the whole-model effect {100 * sh.share:.0f}% [95% CI "
                 f"{100 * sh.ci_low:.0f}, {100 * sh.ci_high:.0f}], n = {sh.n})")  # fmt: skip
    if rand is not None:
        text += f", {h.k} random heads by {_fmt_ci(rand['mean'], rand['ci_low'], rand['ci_high'])}"
    return text


def _control_words(h: HeldOut) -> str:
    """How the random heads matched the top-K's mass, and whether the draws were distinct."""
    c = h.control
    text = (
        f"Random heads: {100 * c['within']:.0f}% of {int(c['n'])} sample × draw matches within "
        f"±{100 * c['tolerance']:.0f}% of the top-{h.k} heads' marker→function mass; median "
        f"ratio {c['median_ratio']:.2f}"
    )
    if "distinct" in c:
        text += "; no sample repeats a head set across draws" if c["distinct"] else (
            "; **some samples repeat a head set across draws**")  # fmt: skip
    if c.get("short"):
        text += (f"; {int(c['short'])} samples had fewer matched sets than draws (the pool of "
                 "other heads is too small: their extra draws are the closest unmatched sets)")  # fmt: skip
    return text + ".\n\n"


def _md(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def heads_section(
    summary: pd.DataFrame, validation: pd.DataFrame, held: Sequence[HeldOut],
    costs: dict[str, dict[str, Any]], figures: Sequence[Path], *, margin: float,
) -> str:  # fmt: skip
    """The report's ``## Heads`` section: findings in words, then the tables behind them."""
    lines = ["\n## Heads: which heads carry it\n\n"]
    lines.extend(f"- {s}\n" for s in _findings(summary, validation, held))
    lines.append(
        "\nEvery head of every layer, in the default scope, on the test samples, at the "
        "records' readout (the call where the records carry it): its attention level, its **attribution** (the estimated "
        "change of log p of the greedy token when that head's marker→function edges alone are "
        "knocked out, from one forward and one backward pass: exact knocked-out pattern, "
        "log-odds linearised and mapped back; `plip_nn.attribution`), and the **measured** "
        "effect of that knockout (one batch row per prompt × head), means over prompts with "
        "BCa bootstrap 95% CIs. All rows: `heads.parquet`.\n\n"
    )
    lines.append(f"### Top {TOP_N // 2} heads per language (measured)\n\n")
    top = summary.sort_values(["model", "language", "rank_measured"])
    top = top.groupby(["model", "language"]).head(TOP_N // 2)
    lines.append(_md(pd.DataFrame({
        "model": top["model"], "language": top["language"],
        "head (layer.head)": [f"{int(a)}.{int(b)}" for a, b in zip(top["layer"], top["head"], strict=True)],
        "level": top["attn_level"], "mass": top["attn_mass"],
        "Δlog p [95% CI]": [_fmt_ci(a, b, c) for a, b, c in
                            zip(top["dlogp_top1"], top["dlogp_top1_ci_low"], top["dlogp_top1_ci_high"], strict=True)],
        "KL [95% CI]": [f"{a:.3g} [{b:.3g}, {c:.3g}]" for a, b, c in
                        zip(top["kl"], top["kl_ci_low"], top["kl_ci_high"], strict=True)],
        "attribution": top["attribution"], "rank by attribution": top["rank_attribution"],
    })))  # fmt: skip
    lines.append("\n### Attribution vs the measured knockout\n\n")
    lines.append(
        "`attribution`: the estimate used (linear in the top-1 log-odds, mapped back to log p "
        "exactly, because the output softmax is often saturated); `attribution_linear`: plain "
        "first-order attribution patching on log p. The attention softmax needs no AtP*-style "
        "QK correction: the knocked-out pattern is computed exactly, not linearised. What stays "
        "linear is everything downstream of the pattern; a head that puts nearly all its mass "
        "on the targets (token 0 is often `def`/`fn`, an attention sink) changes its output "
        "entirely when they are removed, and there the estimate falls short.\n\n"
    )
    lines.append(_md(validation.rename(columns={"top_shared": f"top-{TOP_N} shared"})))
    lines.append("\n### Held-out top-K heads\n\n")
    if not held:
        lines.append("_No held-out test in this run (`--heads 0`, or no half had prompts to "
                     "choose heads on)._\n")  # fmt: skip
    for h in held:
        sel = "; ".join(f"half {half} (chosen over every layer on half {1 - half}): heads "
                        f"{_heads_str(hs)}" for half, hs in sorted(h.selection.items()))  # fmt: skip
        lines.append(f"**{h.model} / {h.language}** (`{h.scope}`, K = {h.k}, {h.n_prompts} "
                     f"samples tested): {sel}.\n\n")  # fmt: skip
        if h.control:
            lines.append(_control_words(h))
        if h.share is not None:
            sh = h.share
            lines.append(
                f"Share of the whole-model effect (`{sh.measure}`, per language): mean of "
                f"`{sh.topk}` {sh.topk_mean:+.3g} / mean of `{sh.whole}` {sh.whole_mean:+.3g} = "
                f"**{sh.share:.3g}** [95% CI {sh.ci_low:.3g}, {sh.ci_high:.3g}] over {sh.n} "
                "paired samples (percentile bootstrap over samples).\n\n"
            )
        if h.single:
            lines.append(_md(pd.DataFrame([{
                "condition": r["condition"], "measure": r["measure"], "n": r["n"],
                "mean [95% CI]": _fmt_ci(r["mean"], r["ci_low"], r["ci_high"]),
                "vs random #0 [95% CI]": "" if not r["vs"] else
                _fmt_ci(r["diff"], r["diff_ci_low"], r["diff_ci_high"]),
                "Wilcoxon p": r["wilcoxon_p"],
            } for r in h.single])))  # fmt: skip
        if h.rates:
            rows = []
            for c in [*h.vs_random, h.vs_layer, h.layer_vs_baseline, h.steer, h.steer_vs_all]:
                if c is None:
                    continue
                rows.append({"condition": c.cond, "vs": c.ref,
                             "preserved": f"{100 * c.diff.cond_rate:.0f}% vs {100 * c.diff.ref_rate:.0f}%",
                             "Δ [95% CI]": _pp(c.diff), "p": c.diff.pvalue,
                             "p_adj": math.nan if c.p_adjusted is None else c.p_adjusted,
                             "verdict": c.effect})  # fmt: skip
            lines.append("\n" + _md(pd.DataFrame(rows)))
        if h.manipulation is not None:
            lines.append(
                "\nManipulation check of `steer_topk` (the level of the edited layers, averaged over all "
                "its heads, achieved vs baseline; the edited heads are a subset): Wilcoxon p = "
                f"{h.manipulation.pvalue:.3g}, median change {h.manipulation.effect:+.3g}: "
                + ("passed" if h.manipulation_ok else "**failed** (the steering decides nothing)")
                + ".\n"
            )
        lines.append("\n")
    lines.append(
        f"Verdicts follow the study's rule (`analysis.equivalence.classify_change`): exact "
        f'McNemar, Newcombe CIs, "none" only when the 90% CI lies inside ±{100 * margin:.0f} pp. '
        "`p_adj`: Bonferroni over the heads family (top-K vs the first random draw, and the "
        "top-K steering vs baseline); the other draws use the same m and must agree. A "
        "whole-model knockout that itself leaves preservation unchanged leaves no whole effect "
        "to carry.\n\n"
    )
    if costs:
        lines.append("### Cost\n\n")
        lines.append(_md(pd.DataFrame([{
            "model": m, "K": c.get("k"), "prompts timed": c.get("prompts_timed"),
            **{f"{k} s": v for k, v in (c.get("seconds") or {}).items()},
            **{f"{k} / plain forward": v for k, v in (c.get("ratio_to_plain_forward") or {}).items()},
            "torch threads": c.get("torch_threads"), "load avg": str(c.get("load_average")),
        } for m, c in costs.items()])))  # fmt: skip
        lines.append(
            "\nSeconds measured side by side in this run: `plain` is one plain HF forward over "
            "the same prompts in the same batches; the sweep is the attribution plus one "
            "knockout row per prompt × head.\n\n"
        )
    lines.extend(f"![{p.stem}](figures/{p.name})\n\n" for p in figures)
    lines.append(
        "What this cannot show: a head's knockout removes only its marker→function edges at "
        "the marker rows; other heads can still carry the same information (redundancy), so a "
        "small single-head effect does not mean the head is unused. The attribution is a "
        "screen; the measured knockouts decide.\n"
    )
    return "".join(lines)
