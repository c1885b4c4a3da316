"""Which heads carry it: per-head summaries, the attribution's validation, the held-out top-K test.

Pure functions over the tables of :mod:`experiments.heads` (never loads a model):

* :func:`summarize` -> ``heads.parquet``, one row per (model, language, layer, head): the
  marker->function attention level and mass of that head, its attribution (the estimated
  change of log p of the greedy token when its edges alone are knocked out, from one forward
  and one backward), and the measured effect of that knockout -- KL and the change of log p at
  the prediction -- as means over prompts with BCa bootstrap 95% CIs.
* :func:`validate_attribution`: Spearman ρ between attribution and measured change over the
  heads (head means) and over every (prompt, head), and the overlap of the 10 heads each ranks
  most harmful; for the estimate used and for plain first-order attribution patching.
* :func:`held_out`: the top-K heads (chosen on the other half of the functions) against K
  random heads of the same layer matched on mass, in preservation: exact McNemar with
  Newcombe CIs and the study's equivalence rule (:func:`analysis.equivalence.classify_change`);
  the top-K knockout against the layer's knockout at every head (do K heads carry the layer's
  whole effect?); Scale of the top-K heads (PASTA-style) against baseline and against Scale of
  every head; single-pass log p and KL with paired bootstrap CIs.
* :func:`heads_heatmap`: layer × head heatmaps per language (level, measured, attribution).
* :func:`analyze_heads`: all of the above for :func:`analysis.report.analyze` -- writes
  ``heads.parquet`` and the figures, returns the report section and the ``stats.csv`` rows.

Family ``heads`` (:mod:`analysis.families`): per model and language, the top-K knockout vs its
first random-heads draw and ``steer_topk`` vs baseline are counted; the other draws are
adjusted with the same m and must agree (as in :mod:`analysis.triangle`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from analysis.equivalence import Effect, PairedDifference, classify_change, paired_difference
from analysis.families import bonferroni
from analysis.hypothesis import TestResult, bootstrap_mean_diff, wilcoxon_signed_rank
from analysis.pairing import paired
from analysis.reach import Reach, kl_floor, reach, token_identical
from analysis.scopes import with_scope
from plip_nn.atomic import atomic_write_parquet

__all__ = [
    "HEADS_TABLES",
    "TOP_N",
    "HeadsAnalysis",
    "HeldOut",
    "analyze_heads",
    "heads_heatmap",
    "heads_section",
    "held_out",
    "summarize",
    "top_overlap",
    "validate_attribution",
]

log = logging.getLogger(__name__)

HEADS_TABLES = ("head_sweep", "heads_selection", "heads_control", "heads_records",
                "heads_generations")  # fmt: skip
"""The tables :mod:`experiments.heads` writes."""
TOP_N = 10
"""The attribution is validated on the overlap of the TOP_N heads each ranking puts first."""
N_RESAMPLES = 2000
TOPK, RANDOM, STEER, LAYER_KO = "knockout_topk", "random_heads", "steer_topk", "knockout"
MEASURES = {"dlogp_top1": "Δlog p(top-1)", "kl": "KL"}


def _mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and BCa bootstrap 95% CI (the point itself with fewer than 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        m = float(v.mean()) if v.size else math.nan
        return m, m, m
    r = bootstrap_mean_diff(v, np.zeros(v.size), paired=True, n_resamples=N_RESAMPLES, seed=0)
    return r.effect, r.ci_low, r.ci_high


def summarize(sweep: pd.DataFrame, noise: pd.DataFrame | None = None) -> pd.DataFrame:
    """``heads.parquet``: one row per (model, language, layer, head) of ``head_sweep``.

    ``rank_measured`` / ``rank_attribution``: the head's place (1 = first) when the heads of
    the model and language are ordered by mean measured / estimated change of log p(top-1),
    most negative first. ``p_top1``: the mean probability of the greedy token at the
    prediction, unedited (a near-certain token leaves a knockout little to move). With the KL
    noise floor (``noise``): ``kl_floor``, and
    ``reaches_output`` -- the head's median KL at the prediction is above the floor (as in
    :mod:`analysis.reach`).
    """
    rows = []
    keys = ["model", "language", "layer", "head"]
    for (model, language, layer, head), g in sweep.groupby(keys, sort=True):
        row: dict[str, Any] = {
            "model": model, "language": language, "layer": int(layer), "head": int(head),
            "rows": str(g["rows"].iloc[0]), "targets": str(g["targets"].iloc[0]),
            "n_prompts": int(g["sample_id"].nunique()),
            "attn_level": float(g["attn_level"].mean()),
            "attn_mass": float(g["attn_mass"].mean()),
            "attribution": float(g["attribution"].mean()),
            "attribution_linear": float(g["attribution_linear"].mean()),
            "top1_changed": float((~g["top1_same"].astype(bool)).mean()),
            "kl_median": float(g["kl"].median()),
            "p_top1": float(np.exp(g.drop_duplicates("sample_id")["logp_top1"]).mean()),
        }  # fmt: skip
        floor = kl_floor(noise, str(model))
        row["kl_floor"] = floor
        row["reaches_output"] = bool(row["kl_median"] > floor) if math.isfinite(floor) else None
        for col in MEASURES:
            mean, lo, hi = _mean_ci(g[col].to_numpy())
            row.update({col: mean, f"{col}_ci_low": lo, f"{col}_ci_high": hi})
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for col, name in (("dlogp_top1", "rank_measured"), ("attribution", "rank_attribution")):
        out[name] = (
            out.groupby(["model", "language"])[col].rank(method="first", ascending=True).astype(int)
        )
    return out


def top_overlap(a: Sequence[float], b: Sequence[float], n: int = TOP_N) -> tuple[int, int]:
    """(shared, n') of the ``n'`` = min(n, len) most negative entries of ``a`` and of ``b``."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    m = min(n, x.size)
    return len(set(np.argsort(x, kind="stable")[:m]) & set(np.argsort(y, kind="stable")[:m])), m


def validate_attribution(sweep: pd.DataFrame) -> pd.DataFrame:
    """Attribution vs measured knockout, per model and language (and both languages pooled).

    ``rho_heads``: Spearman ρ over the heads of the per-head means; ``rho_items``: over every
    (prompt, head); ``top_shared`` of ``top_n``: heads among the most harmful ``top_n`` in both
    rankings. ``estimator``: ``attribution`` (the log-odds estimate used) or
    ``attribution_linear`` (plain first-order attribution patching on log p).
    """
    rows = []
    for model, gm in sweep.groupby("model", sort=True):
        groups = [(str(lang), g) for lang, g in gm.groupby("language", sort=True)]
        if len(groups) > 1:
            groups.append(("both", gm))
        for language, g in groups:
            for est in ("attribution", "attribution_linear"):
                means = g.groupby(["language", "layer", "head"])[[est, "dlogp_top1"]].mean()
                if language == "both":  # pool the languages' head means
                    means = means.groupby(level=["layer", "head"]).mean()
                shared, n = top_overlap(means[est], means["dlogp_top1"])
                rows.append({
                    "model": model, "language": language, "estimator": est,
                    "n_heads": len(means), "n_items": len(g),
                    "rho_heads": _spearman(means[est], means["dlogp_top1"]),
                    "rho_items": _spearman(g[est], g["dlogp_top1"]),
                    "top_shared": shared, "top_n": n,
                    "mean_abs_error": float((g[est] - g["dlogp_top1"]).abs().mean()),
                })  # fmt: skip
    return pd.DataFrame(rows)


def _spearman(a: pd.Series, b: pd.Series) -> float:
    if len(a) < 3 or a.nunique() < 2 or b.nunique() < 2:
        return math.nan
    return float(spearmanr(a.to_numpy(), b.to_numpy()).statistic)


# ---------------------------------------------------------------------------------------------
# The held-out top-K test


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
        scope: the scope label (``rows/targets/L``).
        k: heads per set; ``selection``: per tested half, ``(layer, heads)``.
        factor: Scale factor of ``steer_topk``.
        single: rows of the single-pass table (condition, measure, mean and CI, vs random).
        vs_random: the top-K knockout against each random-heads draw.
        knockout_effect: the draws' common verdict (``inconclusive`` when they disagree).
        vs_layer: the top-K knockout against the layer's knockout at every head.
        layer_vs_baseline: the layer's knockout against baseline.
        steer: ``steer_topk`` against baseline; ``steer_vs_all``: against Scale of every head.
        manipulation: Wilcoxon of the steered rows' achieved vs baseline level (head-mean).
        manipulation_ok: the level moved the intended way (up for a factor > 1), p < alpha;
            None without records. A steering comparison whose check failed decides nothing.
        rates: condition -> preservation rate on the tested prompts.
        control: how well the random heads matched the top-K's mass (``heads_control``):
            ``within`` (share of prompt × draw within the tolerance), ``median_ratio``
            (control / top-K mass), ``n``.
        n_prompts: prompts tested.
        knockout_reach / steer_reach: whether the top-K knockout / steering reached the output
            (the study's gate, :func:`analysis.reach.reach`); an edit that did not reach it
            reads ``unreached``, never "no effect".
    """

    model: str
    language: str
    scope: str
    k: int
    selection: dict[int, tuple[int, tuple[int, ...]]]
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


def _merged(heads_tab: pd.DataFrame | None, main: pd.DataFrame | None, model: str,
            language: str) -> pd.DataFrame | None:  # fmt: skip
    """The heads table's rows of ``model``/``language``, plus the study's rows of conditions
    the heads table lacks (the triangle runs the references once, in its own tables)."""
    parts = []
    have: set[str] = set()
    if heads_tab is not None and len(heads_tab):
        h = heads_tab[(heads_tab["model"] == model) & (heads_tab["language"] == language)]
        parts.append(h)
        have = set(h["condition"])
    if main is not None and len(main):
        m = main[(main["model"] == model) & (main["language"] == language)]
        if "kind" in m:
            m = m[m["kind"] == "generation"]
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
            mean, lo, hi = _mean_ci(sub[col].to_numpy())
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


def _expand_draws(df: pd.DataFrame | None, ctrl: pd.DataFrame, scope: str) -> pd.DataFrame | None:
    """``df`` plus, for each draw that repeated an earlier draw's heads (``same_as_draw`` in
    ``heads_control``; experiments.heads runs it once), that earlier draw's row under its name."""
    if df is None or "same_as_draw" not in ctrl:
        return df
    rep = ctrl[ctrl["same_as_draw"] >= 0]
    if not len(rep):
        return df
    name = f"{RANDOM}@{scope}#"
    src = df[df["condition"].astype(str).str.startswith(name)].set_index(["sample_id", "condition"])
    copies = []
    for r in rep.itertuples():
        key = (r.sample_id, f"{name}{int(r.same_as_draw)}")
        if key in src.index:
            row = src.loc[[key]].reset_index()
            copies.append(row.assign(condition=f"{name}{int(r.draw)}", draw=int(r.draw)))
    return pd.concat([df, *copies], ignore_index=True) if copies else df


def _control_match(ctrl: pd.DataFrame | None, model: str, language: str) -> dict[str, float]:
    if ctrl is None or not len(ctrl):
        return {}
    c = ctrl[(ctrl["model"] == model) & (ctrl["language"] == language)]
    if not len(c):
        return {}
    return {"within": float(c["within_tolerance"].astype(bool).mean()),
            "median_ratio": float(c["mass_ratio"].median()), "n": float(len(c)),
            "tolerance": float(c["tolerance"].iloc[0])}  # fmt: skip


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
        recs = _merged(hrec, tables.get("records"), model, language)
        gens = _merged(hgen, tables.get("generations"), model, language)
        some = gens if gens is not None else recs
        assert some is not None
        topk_rows = some[some["arm"] == TOPK]
        if not len(topk_rows):
            continue
        scope = str(topk_rows["scope"].iloc[0])
        ctrl = tables.get("heads_control")
        if ctrl is not None and len(ctrl):
            ctrl = ctrl[(ctrl["model"] == model) & (ctrl["language"] == language)]
            recs, gens = (_expand_draws(t, ctrl, scope) for t in (recs, gens))
            some = gens if gens is not None else recs
            assert some is not None
        topk, steer, layer_ko = f"{TOPK}@{scope}", f"{STEER}@{scope}", f"{LAYER_KO}@{scope}"
        draws = sorted(int(d) for d in set(some.loc[some["arm"] == RANDOM, "draw"]))
        randoms = [f"{RANDOM}@{scope}#{d}" for d in draws]
        steer_rows = some[some["condition"] == steer]
        factor = float(steer_rows["factor"].iloc[0]) if len(steer_rows) else math.nan
        scale_all = f"scale_{factor:g}@{scope}"
        s = sel[(sel["model"] == model) & (sel["language"] == language)]
        selection = {
            int(half): (int(g["layer"].iloc[0]), tuple(int(x) for x in g.sort_values("rank")["head"]))
            for half, g in s.groupby("half")
        }  # fmt: skip
        k = int(s["rank"].max()) if len(s) else 0
        single = []
        if recs is not None:
            conds = [topk, *randoms, layer_ko, steer, scale_all]
            single = _single_rows(recs, conds, randoms[0] if randoms else None)
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
                                sign=1, what="preservation, top-K heads vs every head")  # fmt: skip
            layer_vs_base = _compare(gens, layer_ko, "baseline", p_adjusted=None, alpha=alpha,
                                     margin=margin, sign=-1,
                                     what="preservation, layer knockout vs baseline")  # fmt: skip
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
            knockout_reach=ko_reach, steer_reach=st_reach,
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
        for r in h.single:
            if not r["vs"]:
                continue
            rows.append(_stat(
                h.model, h.language, r["condition"], h.scope, f"bootstrap_mean_diff ({r['column']})",
                statistic=r["diff"], pvalue=r["wilcoxon_p"], effect=r["diff"],
                ci=(r["diff_ci_low"], r["diff_ci_high"]), n=r["n"],
                note=f"{r['measure']} at the prediction, {r['condition']} − {r['vs']}, paired BCa "
                "bootstrap; p = Wilcoxon signed-rank",
            ))  # fmt: skip
    return rows


def heads_heatmap(summary: pd.DataFrame, model: str) -> Figure:
    """Layer × head heatmaps of one model, one row per language: attention level, measured
    Δlog p(top-1) of the head's knockout, and its attribution (shared colour scale)."""
    data = summary[summary["model"] == model]
    if data.empty:
        raise ValueError(f"heads_heatmap: no heads of model {model!r}")
    languages = sorted(set(data["language"]))
    lim = float(np.nanmax(np.abs(data[["dlogp_top1", "attribution"]].to_numpy())))
    lim = lim if lim > 0 else 1.0
    fig, axes = plt.subplots(len(languages), 3, squeeze=False,
                             figsize=(11, 0.4 + 2.6 * len(languages) * max(1, data["layer"].nunique() / 8)))  # fmt: skip
    panels = (("attn_level", "attention level (marker→function)", "viridis", 0.0, None),
              ("dlogp_top1", "measured Δlog p(top-1), head knocked out", "RdBu", -lim, lim),
              ("attribution", "attribution (1 forward + 1 backward)", "RdBu", -lim, lim))  # fmt: skip
    for i, lang in enumerate(languages):
        sub = data[data["language"] == lang]
        for j, (col, title, cmap, vmin, vmax) in enumerate(panels):
            grid = sub.pivot(index="layer", columns="head", values=col)
            sns.heatmap(grid, ax=axes[i][j], cmap=cmap, vmin=vmin, vmax=vmax, center=None if
                        col == "attn_level" else 0.0, annot=grid.size <= 128, fmt=".2f",
                        annot_kws={"size": 6}, cbar=True)  # fmt: skip
            axes[i][j].set_title(f"{lang}: {title}", fontsize=8)
    fig.suptitle(f"{model}: per-head marker→function attention and knockout effect", fontsize=9)
    fig.tight_layout()
    return fig


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


def _fmt_ci(mean: float, lo: float, hi: float) -> str:
    return f"{mean:+.3g} [{lo:+.3g}, {hi:+.3g}]"


def _pp(d: PairedDifference) -> str:
    return f"{100 * d.effect:+.1f} pp [{100 * d.ci95[0]:+.1f}, {100 * d.ci95[1]:+.1f}]"


def _heads_str(heads: tuple[int, ...]) -> str:
    return ", ".join(str(h) for h in heads)


WHOLE_WORDS = {
    "none": "K heads carry the layer's whole effect (equivalent within the margin)",
    "predicted": "K heads carry only part of the layer's effect (significantly less)",
    "opposite": "knocking out K heads changes preservation MORE than knocking out every head",
    "inconclusive": "undecided whether K heads carry the layer's whole effect",
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
                f"top-{h.k} heads' knockout vs {h.k} random heads of the layer matched on mass: "
                f"{verdict}."
            )
        if h.vs_layer is not None:
            whole = WHOLE_WORDS[h.vs_layer.effect]
            if h.layer_vs_baseline is not None and h.layer_vs_baseline.effect != "predicted":
                whole = (
                    "the layer's own knockout does not lower preservation significantly "
                    f"({h.layer_vs_baseline.words}), so there is no whole effect to carry"
                )
            out.append(f"{h.model} / {h.language}: {whole} ({h.vs_layer.words}).")
        if h.steer is not None and h.manipulation_ok is False:
            out.append(
                f"{h.model} / {h.language}: Scale ×{h.factor:g} of the top-{h.k} heads did not "
                "move the layer's marker→function attention the intended way (manipulation "
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
    """The top-K knockout's single-pass Δlog p next to every head's and random heads'."""
    by = {(r["condition"], r["column"]): r for r in h.single}
    topk = by.get((f"{TOPK}@{h.scope}", "dlogp_top1"))
    layer = by.get((f"{LAYER_KO}@{h.scope}", "dlogp_top1"))
    rand = by.get((f"{RANDOM}@{h.scope}#0", "dlogp_top1"))
    if topk is None or layer is None:
        return ""
    text = (
        f"knocking out the top-{h.k} heads changes log p of the greedy token by "
        f"{_fmt_ci(topk['mean'], topk['ci_low'], topk['ci_high'])}, every head of the layer by "
        f"{_fmt_ci(layer['mean'], layer['ci_low'], layer['ci_high'])}"
    )
    if layer["mean"] != 0:
        text += f" ({100 * topk['mean'] / layer['mean']:.0f}% of it)"
    if rand is not None:
        text += f", {h.k} random heads by {_fmt_ci(rand['mean'], rand['ci_low'], rand['ci_high'])}"
    return text


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
        "\nEvery head of every layer, in the default scope, on the generation prompts, at the "
        "prediction after the marker: its attention level, its **attribution** (the estimated "
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
        sel = "; ".join(f"half {half} (chosen on half {1 - half}): layer {lay}, heads "
                        f"{_heads_str(hs)}" for half, (lay, hs) in sorted(h.selection.items()))  # fmt: skip
        lines.append(f"**{h.model} / {h.language}** (`{h.scope}`, K = {h.k}, {h.n_prompts} "
                     f"prompts tested): {sel}.\n\n")  # fmt: skip
        if h.control:
            lines.append(
                f"Random heads: {100 * h.control['within']:.0f}% of {int(h.control['n'])} "
                f"prompt × draw matches within ±{100 * h.control['tolerance']:.0f}% of the top-{h.k} heads' marker→function mass; "
                f"median ratio {h.control['median_ratio']:.2f} (below 1: the random heads remove "
                "less mass, because the heads that carry the most are the top ones; the "
                "comparison is then weaker, as with the token-0 sinks of the study's controls).\n\n"
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
                "\nManipulation check of `steer_topk` (the level of the layer, averaged over all "
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
        "top-K steering vs baseline); the other draws use the same m and must agree. A layer "
        "knockout that itself leaves preservation unchanged leaves no whole effect to carry.\n\n"
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


@dataclass(frozen=True)
class HeadsAnalysis:
    """What :func:`analyze_heads` adds to a report: the section, ``stats.csv`` rows, figures."""

    section: str
    rows: list[dict[str, Any]]
    figures: list[Path]


def analyze_heads(
    tables: dict[str, pd.DataFrame], metas: Sequence[dict[str, Any]], out: Path, *,
    alpha: float, margin: float,
) -> HeadsAnalysis | None:  # fmt: skip
    """Write ``heads.parquet`` and the heatmaps into ``out`` and build the heads section;
    None when the run has no ``head_sweep``."""
    sweep = tables.get("head_sweep")
    if sweep is None or not len(sweep):
        return None
    from analysis.figures import save_figure

    summary = summarize(sweep, tables.get("noise_floor"))
    atomic_write_parquet(Path(out) / "heads.parquet", summary)
    validation = validate_attribution(sweep)
    held = held_out(tables, alpha=alpha, margin=margin)
    figures = [
        save_figure(heads_heatmap(summary, m), Path(out) / "figures" / f"heads_{_slug(m)}.png")
        for m in sorted(set(summary["model"]))
    ]
    costs = {
        str(meta["manifest"].get("model")): meta["manifest"]["heads_cost"]
        for meta in metas
        if "heads_cost" in meta.get("manifest", {})
    }
    section = heads_section(summary, validation, held, costs, figures, margin=margin)
    return HeadsAnalysis(section=section, rows=stats_rows(validation, held), figures=figures)
