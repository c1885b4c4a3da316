"""The held-out top-K heads test (:mod:`experiments.heads`' tables; never loads a model).

:func:`held_out`: per model and language, the top-K (layer, head) pairs (chosen over every
layer on the other half of the functions) tested on the test samples at the readout of the
records (the call, issue 28) and in the generations:

* single pass: the call-site Δlog p of the gold name token (``dlogp_gold`` when the records
  have it, else Δlog p of the greedy token), Δlog p(top-1) and KL, with BCa bootstrap CIs; the
  top-K knockout against the first random-heads draw (paired bootstrap, Wilcoxon);
* **the share of the whole-model effect** (:func:`whole_model_share`): the top-K knockout's
  mean effect divided by the mean effect of knocking out the same edges in every head of every
  layer (``knockout@rows/targets/all``), with a paired percentile-bootstrap 95% CI;
* preservation: the top-K knockout against K random heads matched on mass (distinct across
  draws), exact McNemar with Newcombe CIs and the study's equivalence rule
  (:func:`analysis.equivalence.classify_change`); against the whole-model knockout; Scale of the
  top-K heads (PASTA-style) against baseline and against Scale of every head.

:func:`stats_rows`: the ``stats.csv`` rows of the heads family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from analysis.equivalence import Effect, PairedDifference, classify_change, paired_difference
from analysis.families import bonferroni
from analysis.hypothesis import TestResult, bootstrap_mean_diff, wilcoxon_signed_rank
from analysis.pairing import paired
from analysis.reach import Reach, kl_floor, reach, token_identical
from analysis.scopes import with_scope

__all__ = [
    "MEASURES",
    "Comparison",
    "HeldOut",
    "Share",
    "held_out",
    "primary_measure",
    "stats_rows",
    "whole_model_share",
]


N_RESAMPLES = 2000
TOPK, RANDOM, STEER, LAYER_KO = "knockout_topk", "random_heads", "steer_topk", "knockout"
WHOLE_KO = LAYER_KO  # the arm of the whole-model reference: knockout@rows/targets/all
MEASURES = {"dlogp_gold": "Δlog p(gold name token)", "dlogp_top1": "Δlog p(top-1)", "kl": "KL"}
"""The single-pass measures (``dlogp_gold`` only where the records have the call readout)."""


def _mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and BCa bootstrap 95% CI (the point itself with fewer than 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        m = float(v.mean()) if v.size else math.nan
        return m, m, m
    r = bootstrap_mean_diff(v, np.zeros(v.size), paired=True, n_resamples=N_RESAMPLES, seed=0)
    return r.effect, r.ci_low, r.ci_high


def primary_measure(recs: pd.DataFrame) -> str:
    """``dlogp_gold`` (the call-site Δlog p) when ``recs`` has it with some value, else
    ``dlogp_top1``."""
    if "dlogp_gold" in recs and recs["dlogp_gold"].notna().any():
        return "dlogp_gold"
    return "dlogp_top1"


@dataclass(frozen=True, kw_only=True)
class Share:
    """The top-K knockout's share of the whole-model effect (:func:`whole_model_share`).

    Attributes:
        measure: the column (``dlogp_gold`` or ``dlogp_top1``).
        topk / whole: the conditions (top-K knockout; the same edges in every head of every
            layer).
        topk_mean / whole_mean: their mean effects over the paired samples.
        share: topk_mean / whole_mean (NaN when the whole-model mean is 0).
        ci_low / ci_high: paired percentile-bootstrap 95% CI of the share (resampling
            samples; NaN with fewer than 2 pairs).
        n: paired samples.
    """

    measure: str
    topk: str
    whole: str
    topk_mean: float
    whole_mean: float
    share: float
    ci_low: float
    ci_high: float
    n: int


def whole_model_share(
    recs: pd.DataFrame, topk: str, whole: str, measure: str, *, seed: int = 0
) -> Share | None:
    """The share of ``whole``'s mean effect that ``topk`` carries, on the samples with both
    (None when there are none): the ratio of the two means, with a paired percentile
    bootstrap over samples (``N_RESAMPLES`` resamples, seeded)."""
    p = paired(recs, measure, topk, whole).dropna(subset=["cond", "ref"])
    if not len(p):
        return None
    a, b = p["cond"].to_numpy(dtype=float), p["ref"].to_numpy(dtype=float)
    ma, mb = float(a.mean()), float(b.mean())
    share = ma / mb if mb != 0 else math.nan
    lo = hi = math.nan
    if len(p) >= 2 and mb != 0:

        def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            den = np.mean(y, axis=axis)
            return np.mean(x, axis=axis) / np.where(den == 0, np.nan, den)

        with np.errstate(invalid="ignore", divide="ignore"):
            res = bootstrap((a, b), ratio, paired=True, vectorized=True, n_resamples=N_RESAMPLES,
                            method="percentile", random_state=np.random.default_rng(seed))  # fmt: skip
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Share(measure=measure, topk=topk, whole=whole, topk_mean=ma, whole_mean=mb,
                 share=share, ci_low=lo, ci_high=hi, n=len(p))  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One paired comparison of preservation, with its verdict.

    Attributes:
        cond / ref: the condition and the reference it is compared with.
        diff: the paired difference (cond − ref).
        p_adjusted: Bonferroni over the heads family (None: not a deciding test).
        effect / words: :func:`analysis.equivalence.classify_change`'s verdict and words.
    """

    cond: str
    ref: str
    diff: PairedDifference
    p_adjusted: float | None
    effect: Effect
    words: str


@dataclass(frozen=True, kw_only=True)
class HeldOut:
    """The held-out top-K test of one model and language.

    Attributes:
        model, language: what was tested.
        scope: the scope label (``rows/targets/all``: a head set may span layers).
        k: heads per set; ``selection``: per tested half, its ``(layer, head)`` pairs.
        factor: Scale factor of ``steer_topk``.
        single: rows of the single-pass table (condition, measure, mean and CI, vs random).
        vs_random: the top-K knockout against each random-heads draw.
        knockout_effect: the draws' common verdict (``inconclusive`` when they disagree).
        vs_layer: the top-K knockout against the knockout of the same edges in every head of
            every layer (the whole model), in preservation.
        layer_vs_baseline: that whole-model knockout against baseline.
        steer: ``steer_topk`` against baseline; ``steer_vs_all``: against Scale of every head.
        manipulation: Wilcoxon of the steered rows' achieved vs baseline level (head-mean).
        manipulation_ok: the level moved the intended way (up for a factor > 1), p < alpha;
            None without records. A steering comparison whose check failed decides nothing.
        rates: condition -> preservation rate on the tested prompts.
        control: how well the random heads matched the top-K's mass (``heads_control``):
            ``within`` (share of sample × draw within the tolerance), ``median_ratio``
            (control / top-K mass), ``n``, ``tolerance``, ``distinct`` (no sample repeats a
            head set across draws), ``short`` (samples whose pool had fewer matched sets than
            draws).
        share: the top-K knockout's share of the whole-model effect at the readout.
        measure: the primary single-pass column (``dlogp_gold`` or ``dlogp_top1``).
        n_prompts: prompts tested.
        knockout_reach / steer_reach: whether the top-K knockout / steering reached the output
            (the study's gate, :func:`analysis.reach.reach`); an edit that did not reach it
            reads ``unreached``, never "no effect".
    """

    model: str
    language: str
    scope: str
    k: int
    selection: dict[int, tuple[tuple[int, int], ...]]
    factor: float
    single: list[dict[str, Any]]
    vs_random: list[Comparison]
    knockout_effect: Effect | None
    vs_layer: Comparison | None
    layer_vs_baseline: Comparison | None
    steer: Comparison | None
    steer_vs_all: Comparison | None
    manipulation: TestResult | None
    manipulation_ok: bool | None
    rates: dict[str, float]
    n_prompts: int
    control: dict[str, float]
    knockout_reach: Reach | None = None
    steer_reach: Reach | None = None
    share: Share | None = None
    measure: str = "dlogp_top1"


def _merged(heads_tab: pd.DataFrame | None, main: pd.DataFrame | None, model: str,
            language: str, kind: str) -> pd.DataFrame | None:  # fmt: skip
    """The heads table's rows of ``model``/``language``, plus the study's rows (of ``kind``:
    ``test`` for records, ``generation`` for generations) of conditions the heads table lacks
    (the triangle runs the references once, in its own tables)."""
    parts = []
    have: set[str] = set()
    if heads_tab is not None and len(heads_tab):
        h = heads_tab[(heads_tab["model"] == model) & (heads_tab["language"] == language)]
        parts.append(h)
        have = set(h["condition"])
    if main is not None and len(main):
        m = main[(main["model"] == model) & (main["language"] == language)]
        if "kind" in m:
            m = m[m["kind"] == kind]
        parts.append(m[~m["condition"].isin(have)])
    parts = [p for p in parts if len(p)]
    return with_scope(pd.concat(parts, ignore_index=True)) if parts else None


def _compare(gens: pd.DataFrame, cond: str, ref: str, *, p_adjusted: float | None, alpha: float,
             margin: float, sign: int, what: str) -> Comparison | None:  # fmt: skip
    if not {cond, ref} <= set(gens["condition"]):
        return None
    p = paired(gens, "preserved", cond, ref)
    if not len(p):
        return None
    diff = paired_difference(p["ref"].astype(bool), p["cond"].astype(bool))
    p_adj = diff.pvalue if p_adjusted is None else p_adjusted
    effect, words = classify_change(diff, p_adjusted=p_adj, alpha=alpha, margin=margin,
                                    predicted_sign=sign, what=what)  # fmt: skip
    return Comparison(cond=cond, ref=ref, diff=diff, p_adjusted=p_adjusted, effect=effect,
                      words=words)  # fmt: skip


def _single_rows(recs: pd.DataFrame, conds: list[str], random0: str | None) -> list[dict[str, Any]]:
    """Per condition and measure at the prediction: mean with its CI; for the top-K knockout
    also the paired difference to the first random draw (bootstrap CI, Wilcoxon p)."""
    out: list[dict[str, Any]] = []
    for cond in conds:
        sub = recs[recs["condition"] == cond]
        if not len(sub):
            continue
        for col, label in MEASURES.items():
            if col not in sub or sub[col].isna().all():
                continue
            mean, lo, hi = _mean_ci(sub[col].dropna().to_numpy())
            row = {"condition": cond, "measure": label, "column": col, "n": len(sub),
                   "mean": mean, "ci_low": lo, "ci_high": hi, "vs": "", "diff": math.nan,
                   "diff_ci_low": math.nan, "diff_ci_high": math.nan, "wilcoxon_p": math.nan}  # fmt: skip
            out.append(row)
    if random0 is not None:
        for row in out:
            if not str(row["condition"]).startswith(f"{TOPK}@"):
                continue
            p = paired(recs, str(row["column"]), str(row["condition"]), random0)
            if len(p) >= 2:
                b = bootstrap_mean_diff(p["cond"], p["ref"], paired=True,
                                        n_resamples=N_RESAMPLES, seed=0)  # fmt: skip
                row.update(vs=random0, diff=b.effect, diff_ci_low=b.ci_low,
                           diff_ci_high=b.ci_high)  # fmt: skip
                if (p["cond"] != p["ref"]).any():
                    row["wilcoxon_p"] = wilcoxon_signed_rank(p["cond"], p["ref"]).pvalue
    return out


def _control_match(ctrl: pd.DataFrame | None, model: str, language: str) -> dict[str, float]:
    if ctrl is None or not len(ctrl):
        return {}
    c = ctrl[(ctrl["model"] == model) & (ctrl["language"] == language)]
    if not len(c):
        return {}
    out = {"within": float(c["within_tolerance"].astype(bool).mean()),
           "median_ratio": float(c["mass_ratio"].median()), "n": float(len(c)),
           "tolerance": float(c["tolerance"].iloc[0])}  # fmt: skip
    if "control_heads" in c:
        per = c.groupby("sample_id")["control_heads"]
        out["distinct"] = float(bool((per.nunique() == per.size()).all()))
    if "n_matched_sets" in c:
        draws = c.groupby("sample_id")["draw"].nunique()
        matched = c.groupby("sample_id")["n_matched_sets"].first()
        out["short"] = float((matched < draws).sum())
    return out


def _reach_of(
    recs: pd.DataFrame | None, gens: pd.DataFrame | None, cond: str, floor: float
) -> Reach | None:
    """The study's reach gate for one condition (None when neither table has it)."""
    rows = recs[recs["condition"] == cond] if recs is not None else None
    has_gen = gens is not None and cond in set(gens["condition"])
    ident = token_identical(gens, cond) if gens is not None and has_gen else None
    if (rows is None or not len(rows)) and ident is None:
        return None
    kls = rows["kl"] if rows is not None else pd.Series(dtype=float)
    top1 = rows["top1_same"] if rows is not None and "top1_same" in rows else None
    return reach(kls, ident, floor, top1)


def held_out(tables: dict[str, pd.DataFrame], *, alpha: float, margin: float) -> list[HeldOut]:
    """The held-out top-K test of every model and language in ``heads_records`` /
    ``heads_generations`` (module docstring); references missing there come from
    ``records`` / ``generations``."""
    hrec, hgen = tables.get("heads_records"), tables.get("heads_generations")
    sel = tables.get("heads_selection")
    base = hrec if hrec is not None else hgen
    if base is None or sel is None or not len(sel):
        return []
    out = []
    for (model, language), _ in base.groupby(["model", "language"], sort=True):
        recs = _merged(hrec, tables.get("records"), model, language, "test")
        gens = _merged(hgen, tables.get("generations"), model, language, "generation")
        some = gens if gens is not None else recs
        assert some is not None
        topk_rows = some[some["arm"] == TOPK]
        if not len(topk_rows):
            continue
        scope = str(topk_rows["scope"].iloc[0])
        topk, steer, layer_ko = f"{TOPK}@{scope}", f"{STEER}@{scope}", f"{LAYER_KO}@{scope}"
        draws = sorted(int(d) for d in set(some.loc[some["arm"] == RANDOM, "draw"]))
        randoms = [f"{RANDOM}@{scope}#{d}" for d in draws]
        steer_rows = some[some["condition"] == steer]
        factor = float(steer_rows["factor"].iloc[0]) if len(steer_rows) else math.nan
        scale_all = f"scale_{factor:g}@{scope}"
        s = sel[(sel["model"] == model) & (sel["language"] == language)]
        selection = {
            int(half): tuple((int(a), int(b)) for a, b in
                             g.sort_values("rank")[["layer", "head"]].to_numpy())
            for half, g in s.groupby("half")
        }  # fmt: skip
        k = int(s["rank"].max()) if len(s) else 0
        single: list[dict[str, Any]] = []
        share, measure = None, "dlogp_top1"
        if recs is not None:
            conds = [topk, *randoms, layer_ko, steer, scale_all]
            single = _single_rows(recs, conds, randoms[0] if randoms else None)
            measure = primary_measure(recs)
            share = whole_model_share(recs, topk, layer_ko, measure)
        vs_random: list[Comparison] = []
        knockout_effect: Effect | None = None
        vs_layer = layer_vs_base = steer_cmp = steer_all = None
        rates: dict[str, float] = {}
        n_prompts = int(topk_rows["sample_id"].nunique())
        if gens is not None:
            for cond in ("baseline", topk, *randoms, layer_ko, steer, scale_all):
                sub = gens[gens["condition"] == cond]
                if len(sub):
                    rates[cond] = float(sub["preserved"].astype(bool).mean())
            raw: list[tuple[str, PairedDifference]] = []  # (random draw, top-K vs it)
            for r in randoms:
                if {topk, r} <= set(gens["condition"]):
                    p = paired(gens, "preserved", topk, r)
                    if len(p):
                        raw.append(
                            (r, paired_difference(p["ref"].astype(bool), p["cond"].astype(bool)))
                        )
            st = None
            if {steer, "baseline"} <= set(gens["condition"]):
                p = paired(gens, "preserved", steer, "baseline")
                if len(p):
                    st = paired_difference(p["ref"].astype(bool), p["cond"].astype(bool))
            counted = [d.pvalue for _, d in raw[:1]] + ([st.pvalue] if st is not None else [])
            m = len(counted)
            adj = bonferroni(counted) if m else np.array([])
            for i, (r, d) in enumerate(raw):
                p_adj = float(adj[0]) if i == 0 else float(min(1.0, d.pvalue * m))
                effect, words = classify_change(
                    d, p_adjusted=p_adj, alpha=alpha, margin=margin, predicted_sign=-1,
                    what="preservation, top-K heads vs random heads",
                )  # fmt: skip
                vs_random.append(Comparison(cond=topk, ref=r, diff=d, p_adjusted=p_adj,
                                            effect=effect, words=words))  # fmt: skip
            if vs_random:
                effects = {c.effect for c in vs_random}
                knockout_effect = vs_random[0].effect if len(effects) == 1 else "inconclusive"
            if st is not None:
                p_adj = float(adj[-1])
                effect, words = classify_change(st, p_adjusted=p_adj, alpha=alpha, margin=margin,
                                                predicted_sign=1, what="preservation, steered vs baseline")  # fmt: skip
                steer_cmp = Comparison(cond=steer, ref="baseline", diff=st, p_adjusted=p_adj,
                                       effect=effect, words=words)  # fmt: skip
            vs_layer = _compare(gens, topk, layer_ko, p_adjusted=None, alpha=alpha, margin=margin,
                                sign=1, what="preservation, top-K heads vs every head of "
                                "every layer")  # fmt: skip
            layer_vs_base = _compare(gens, layer_ko, "baseline", p_adjusted=None, alpha=alpha,
                                     margin=margin, sign=-1,
                                     what="preservation, whole-model knockout vs baseline")  # fmt: skip
            steer_all = _compare(gens, steer, scale_all, p_adjusted=None, alpha=alpha,
                                 margin=margin, sign=1,
                                 what="preservation, top-K steering vs every head")  # fmt: skip
        floor = kl_floor(tables.get("noise_floor"), str(model))

        ko_reach, st_reach = (_reach_of(recs, gens, c, floor) for c in (topk, steer))
        if ko_reach is not None and not ko_reach.reached and knockout_effect is not None:
            knockout_effect = "unreached"
        if st_reach is not None and not st_reach.reached and steer_cmp is not None:
            steer_cmp = replace(steer_cmp, effect="unreached",
                                words=st_reach.words)  # fmt: skip
        manipulation, manipulation_ok = None, None
        if recs is not None and steer in set(recs["condition"]):
            r = recs[recs["condition"] == steer].dropna(subset=["attn_achieved", "attn_baseline"])
            manipulation_ok = False
            if len(r) >= 2 and (r["attn_achieved"] != r["attn_baseline"]).any():
                manipulation = wilcoxon_signed_rank(r["attn_achieved"], r["attn_baseline"])
                intended = 1.0 if factor > 1 else -1.0
                manipulation_ok = bool(
                    manipulation.pvalue is not None
                    and manipulation.pvalue < alpha
                    and np.sign(manipulation.effect) == intended
                )
        out.append(HeldOut(
            model=str(model), language=str(language), scope=scope, k=k, selection=selection,
            factor=factor, single=single, vs_random=vs_random, knockout_effect=knockout_effect,
            vs_layer=vs_layer, layer_vs_baseline=layer_vs_base, steer=steer_cmp,
            steer_vs_all=steer_all, manipulation=manipulation, manipulation_ok=manipulation_ok,
            rates=rates, n_prompts=n_prompts,
            control=_control_match(tables.get("heads_control"), str(model), str(language)),
            knockout_reach=ko_reach, steer_reach=st_reach, share=share, measure=measure,
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# stats.csv rows, figure, report section


def _stat(model: str, language: str, condition: str, scope: str, test: str, *, statistic: float,
          pvalue: float, effect: float, ci: tuple[float, float], n: int, note: str,
          counted: bool = False, p_bonferroni: float | None = None, m: int = 0) -> dict[str, Any]:  # fmt: skip
    row = {
        "family": "heads", "model": model, "test": test, "language": language,
        "condition": condition, "scope": scope, "statistic": statistic, "pvalue": pvalue,
        "counted": counted, "effect": effect, "ci_low": ci[0], "ci_high": ci[1], "n": n,
        "note": note,
    }  # fmt: skip
    if p_bonferroni is not None and not counted:
        row["p_bonferroni"], row["family_size"] = p_bonferroni, m
    return row


def stats_rows(validation: pd.DataFrame, held: Sequence[HeldOut]) -> list[dict[str, Any]]:
    """The ``stats.csv`` rows of the heads family (module docstring)."""
    rows = []
    for v in validation.itertuples():
        rows.append(_stat(
            str(v.model), str(v.language), str(v.estimator), "", "spearman (heads)",
            statistic=float(v.rho_heads), pvalue=math.nan, effect=float(v.rho_heads),
            ci=(math.nan, math.nan), n=int(v.n_heads),
            note=f"attribution vs measured Δlog p(top-1), per-head means; per (prompt, head) "
            f"ρ = {v.rho_items:.3f}; top-{v.top_n} shared {v.top_shared}",
        ))  # fmt: skip
    for h in held:
        m = (1 if h.vs_random else 0) + (1 if h.steer is not None else 0)
        comparisons = [(c, i == 0) for i, c in enumerate(h.vs_random)]
        comparisons += [(h.steer, True)] if h.steer is not None else []
        comparisons += [(c, False) for c in (h.vs_layer, h.layer_vs_baseline, h.steer_vs_all)
                        if c is not None]  # fmt: skip
        for c, counted in comparisons:
            d = c.diff
            rows.append(_stat(
                h.model, h.language, c.cond, h.scope, "mcnemar_exact (newcombe ci)",
                statistic=float(min(d.b, d.c)), pvalue=d.pvalue, effect=d.effect, ci=d.ci95,
                n=d.n, counted=counted,
                p_bonferroni=c.p_adjusted if c.p_adjusted is not None else None, m=m,
                note=f"preserved, {c.cond} vs {c.ref}: b={d.b} c={d.c}; 90% CI "
                f"[{d.ci90[0]:.4f}, {d.ci90[1]:.4f}]; {c.effect}",
            ))  # fmt: skip
        if h.share is not None:
            sh = h.share
            rows.append(_stat(
                h.model, h.language, sh.topk, h.scope, f"share of whole-model effect ({sh.measure})",
                statistic=sh.share, pvalue=math.nan, effect=sh.share, ci=(sh.ci_low, sh.ci_high),
                n=sh.n, note=f"mean {sh.measure} of {sh.topk} ({sh.topk_mean:+.4g}) / of "
                f"{sh.whole} ({sh.whole_mean:+.4g}); paired percentile bootstrap over samples",
            ))  # fmt: skip
        for r in h.single:
            if not r["vs"]:
                continue
            rows.append(_stat(
                h.model, h.language, r["condition"], h.scope, f"bootstrap_mean_diff ({r['column']})",
                statistic=r["diff"], pvalue=r["wilcoxon_p"], effect=r["diff"],
                ci=(r["diff_ci_low"], r["diff_ci_high"]), n=r["n"],
                note=f"{r['measure']} at the readout, {r['condition']} − {r['vs']}, paired BCa "
                "bootstrap; p = Wilcoxon signed-rank",
            ))  # fmt: skip
    return rows
