"""The report's opening "Findings": a few sentences in words, each qualified by its scope.

Every sentence is built from a decided outcome (:mod:`analysis.triangle`, :mod:`analysis.dose`,
:mod:`analysis.languages`), never from a free-standing number, so the headline cannot say more
than the tests behind it. A scope whose control is unmatched says so and gives its effect
against baseline in words; draws that disagree and edits below the reach gate say so too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from analysis.dose import H2Result
from analysis.languages import H1Result, MarkerResult, ObserveResult
from analysis.verdicts import EFFECT_WORDS, STEERING_NOT_RUN, KnockoutOutcome, TriangleOutcome
from plip_nn.scope import CHOSEN, EVERY, Scope

__all__ = ["false_markers_louder", "findings", "scope_words"]

_ROWS = {
    "marker": "the marker's first token",
    "marker_span": "every marker token",
    "to_call": "every row from the marker to the call",
    "continuation": "every row from the marker on",
}
_TARGETS = {
    "plip": "the first token of each identifier",
    "identifiers": "every identifier token",
    "mentions": "every identifier token and earlier mention of the name",
}
MAX_SENTENCES = 8
Key = tuple[str, str, str]


def scope_words(label: str, layer: str = "the chosen layer") -> str:
    """``marker_span/identifiers/L`` -> "from every marker token to every identifier token, at
    the chosen layer"."""
    s = Scope.parse(label)
    if s.layers == CHOSEN:
        where = f"at {layer}"
    elif s.layers == EVERY:
        where = "at all layers"
    else:
        where = f"in the layer window {s.layers[1:]}"
    return f"from {_ROWS.get(s.rows, s.rows)} to {_TARGETS.get(s.targets, s.targets)}, {where}"


def _ko_phrase(k: KnockoutOutcome | None, inline_power: bool = True) -> str:
    """The knockout's verdict in words; ``inline_power`` False leaves the power note to the
    power table's flag (:func:`analysis.power_report.power_flag`)."""
    if k is None:
        return "was not run"
    d = k.draws[0]
    if k.effect in ("unmatched", "unreached", "disagree"):
        label = EFFECT_WORDS[k.effect]
        return f'reads "{label}"' + k.words.removeprefix(label)
    if k.measure == "dlogp" and d.call is not None:
        c = d.call
        ci = f"{c.effect:+.2f} nats vs the inert control, 95% CI [{c.ci95[0]:+.2f}, {c.ci95[1]:+.2f}]"
        if inline_power and not math.isnan(k.call_power) and k.call_power < 0.5:
            ci += f"; power < 0.5 at ±{c.margin:g} nats, {k.call_n80:.0f} prompts for 80%"
        return {
            "predicted": f"lowered the name's log p at the call beyond the inert control ({ci})",
            "opposite": f"raised the name's log p at the call against the prediction ({ci})",
            "none": f"moved the name's log p at the call no more than the inert control, within "
            f"±{c.margin:g} nats ({ci})",
        }.get(k.effect, f"was inconclusive at the call ({ci})")
    rates = (f" ({100 * k.knockout_rate:.0f}% vs {100 * k.control_rate:.0f}% preserved under "
             "the control)" if d.diff is not None else "")  # fmt: skip
    power = " (power < 0.5)" if inline_power and not math.isnan(k.power) and k.power < 0.5 else ""
    if k.measure == "kl" and k.effect in ("predicted", "opposite"):
        more = "more" if k.effect == "predicted" else "less"
        return (f"moved the prediction {more} than the mass-matched control (KL at the "
                "prediction; no generations, so preservation was not measured)")  # fmt: skip
    if k.effect == "predicted":
        return f"lowered preservation beyond the mass-matched control{rates}"
    if k.effect == "opposite":
        return f"raised preservation against the prediction{rates}"
    if k.effect == "none":
        return f"changed preservation no more than the control, within the margin{rates}{power}"
    if d.diff is not None:
        lo, hi = (100 * v for v in d.diff.ci90)
        return (f"was inconclusive{rates}: the 90% CI of the difference, [{lo:+.0f}, {hi:+.0f}] "
                f"pp, reaches past the margin{power}")  # fmt: skip
    return "was inconclusive (no preservation data)"


def _steer_phrase(o: TriangleOutcome, scope: str) -> str:
    st = o.steering_by_scope.get(scope)
    if st is None:
        return STEERING_NOT_RUN
    up = [t.arm for t in st.tests if t.role == "deciding" and t.effect == "predicted"]
    return {
        "predicted": f"steering raised the output ({', '.join(up)})",
        "opposite": "steering lowered the output",
        "none": "steering left the output unchanged within the margin",
        "unreached": "steering does not reach the output",
    }.get(st.effect, "steering was inconclusive")


def _language_part(o: TriangleOutcome, scope: str, power: Mapping[Key, str] | None,
                   robust: Mapping[Key, tuple[bool, str]] | None) -> str:  # fmt: skip
    """One language's clause: the verdict (only where every robustness level agrees; else which
    levels disagree), the low-power flag, and the steering of the scope."""
    key = (o.model, o.language, scope)
    flag = (power or {}).get(key, "")
    lang = o.language.capitalize()
    agree, words = (robust or {}).get(key, (True, ""))
    if not agree:
        return (f"in {lang} no verdict is stated: the {words}{flag} "
                f"[{_steer_phrase(o, scope)}]")  # fmt: skip
    held = f"; {words}" if words else ""
    return (f"in {lang} it {_ko_phrase(o.knockout(scope), inline_power=power is None)}{flag}"
            f"{held} [{_steer_phrase(o, scope)}]")  # fmt: skip


def _knockout_sentence(
    outs: Sequence[TriangleOutcome], scope: str, layer: str,
    power: Mapping[Key, str] | None = None, robust: Mapping[Key, tuple[bool, str]] | None = None,
) -> str | None:  # fmt: skip
    parts = [_language_part(o, scope, power, robust) for o in outs
             if o.knockout(scope) is not None]  # fmt: skip
    if not parts:
        return None
    return (
        f"Knocking out attention {scope_words(scope, layer)} ({scope}): " + "; ".join(parts) + "."
    )


def _chosen_scopes(scopes: list[str]) -> list[str]:
    parsed = {s: Scope.parse(s) for s in scopes}
    default = [s for s in scopes if not parsed[s].is_plip and parsed[s].layers == CHOSEN]
    every = [s for s in scopes if not parsed[s].is_plip and parsed[s].layers == EVERY]
    plip = [s for s in scopes if parsed[s].is_plip]
    return list(dict.fromkeys([*default[:2], *every[:1], *plip[-1:]]))


def _h1_sentence(h1: Sequence[H1Result], model: str, scope: str) -> str | None:
    bits = []
    for measure, unit, scale in (
        ("call-site Δlog p", "nats", 1.0),
        ("preservation drop", "pp", 100.0),
    ):
        r = next((r for r in h1 if r.model == model and r.scope == scope and r.measure == measure
                  and r.difference is not None), None)  # fmt: skip
        if r is None or r.difference is None:
            continue
        d = r.difference
        bits.append(f"{measure} {r.verdict} (Python − Rust {scale * d.effect:+.3g} {unit}, 95% CI "
                    f"[{scale * d.ci_low:+.3g}, {scale * d.ci_high:+.3g}], Holm p = {r.p_holm:.2g})")  # fmt: skip
    return f"H1 ({scope}): " + "; ".join(bits) + "." if bits else None


def false_markers_louder(markers: Sequence[MarkerResult], model: str, alpha: float = 0.05) -> str:
    """ "Rust at layers 1, 2" where false markers draw significantly MORE attention than real
    ones (raw level; Bonferroni over the layers of a language), or ""."""
    bits = []
    raw = [r for r in markers if r.model == model and r.view == "level"]
    for lang in sorted({r.language for r in raw}):
        mine = [r for r in raw if r.language == lang]
        hits = [r.layer for r in mine
                if r.test.effect < 0 and (r.test.pvalue or 1.0) * len(mine) < alpha]  # fmt: skip
        if hits:
            bits.append(f"{lang.capitalize()} at layer{'s' if len(hits) > 1 else ''} "
                        + ", ".join(map(str, sorted(hits))))  # fmt: skip
    return "; ".join(bits)


def findings(
    outcomes: Sequence[TriangleOutcome],
    h1: Sequence[H1Result] = (),
    h2: Sequence[H2Result] = (),
    observed: Sequence[ObserveResult] = (),
    *,
    layer: str = "the chosen layer",
    markers: Sequence[MarkerResult] = (),
    power: Mapping[Key, str] | None = None,
    robust: Mapping[Key, tuple[bool, str]] | None = None,
) -> list[str]:
    """3-8 sentences per model for the top of the report (more models: more sentences).

    ``power``: (model, language, scope) -> the low-power flag of that knockout verdict
    (:func:`analysis.power_report.power_flags`); ``robust``: -> (every robustness level agrees,
    the robustness sentence) (:mod:`analysis.robust_report`). A knockout states its verdict only
    where every level agrees; otherwise its clause names the levels that disagree."""
    out: list[str] = []
    for model in sorted({o.model for o in outcomes}):
        outs = [o for o in outcomes if o.model == model]
        prefix = f"[{model}] " if len({o.model for o in outcomes}) > 1 else ""
        mine: list[str] = []
        scopes = list(dict.fromkeys(k.scope for o in outs for k in o.knockouts))
        for scope in _chosen_scopes(scopes):
            sent = _knockout_sentence(outs, scope, layer, power, robust)
            if sent:
                mine.append(sent)
        windows = [s for s in scopes if Scope.parse(s).is_window]
        if windows:
            hits = [f"{o.language.capitalize()} {k.scope.rsplit('/', 1)[1][1:]}" for o in outs
                    for k in o.knockouts if k.scope in windows and k.effect == "predicted"]  # fmt: skip
            mine.append(
                "In the sweep of layer windows, the knockout moved the output beyond its control "
                "in " + ", ".join(hits) + "." if hits
                else f"No window of the layer sweep ({len(windows)} windows) moved the output "
                "beyond its control in either language."
            )  # fmt: skip
        default = next(iter(_chosen_scopes(scopes)), None)
        if default:
            h = _h1_sentence(h1, model, default)
            if h:
                mine.append(h)
        for d2 in h2:
            if d2.model == model and d2.language != "python":
                where = f"Scale in {d2.scope}" if d2.scope else "Scale"
                mine.append(f"H2 ({d2.language.capitalize()}, {where}): {d2.verdict}.")
                break
        obs = {o.view: o for o in observed if o.model == model}
        raw, norm = obs.get("level"), obs.get("level × keys (position-normalised)")
        if raw is not None:
            text = (f"Observed at {layer} in the edited scope ({raw.scope or 'default'}), Python "
                    f"markers attend {raw.ratio:.1f}× as much to the function as Rust markers "
                    f"(Welch p = {raw.test.pvalue:.2g})")  # fmt: skip
            if norm is not None and not math.isnan(norm.ratio):
                text += (f"; normalised for marker position the ratio is {norm.ratio:.1f}× "
                         f"(p = {norm.test.pvalue:.2g})")  # fmt: skip
            louder = false_markers_louder(markers, model)
            if louder:
                text += f"; false markers draw MORE attention than real ones in {louder}"
            mine.append(text + ".")
        out.extend(prefix + s for s in mine[:MAX_SENTENCES])
    return out
