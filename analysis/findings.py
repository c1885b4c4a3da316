"""The report's opening "Findings": a few sentences in words, each qualified by its scope.

Every sentence is built from a decided outcome (:mod:`analysis.triangle`, :mod:`analysis.dose`,
:mod:`analysis.languages`), never from a free-standing number, so the headline cannot say more
than the tests behind it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from analysis.dose import H2Result
from analysis.languages import H1Result, ObserveResult
from analysis.triangle import KnockoutOutcome, TriangleOutcome
from plip_nn.scope import CHOSEN, EVERY, Scope

__all__ = ["findings", "scope_words"]

_ROWS = {
    "marker": "the marker's first token",
    "marker_span": "every marker token",
    "continuation": "every row from the marker on",
}
_TARGETS = {"plip": "the first token of each identifier", "identifiers": "every identifier token"}


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
    return f"from {_ROWS[s.rows]} to {_TARGETS[s.targets]}, {where}"


def _ko_phrase(k: KnockoutOutcome | None) -> str:
    if k is None:
        return "was not run"
    d = k.draws[0].diff
    rates = (
        f" ({100 * k.knockout_rate:.0f}% vs {100 * k.control_rate:.0f}% preserved under the "
        f"control)"
        if d is not None
        else ""
    )
    if k.measure == "kl" and k.effect in ("predicted", "opposite"):
        # Single passes only (no generations): the KL at the prediction decided.
        more = "more" if k.effect == "predicted" else "less"
        return (
            f"moved the prediction {more} than the mass-matched control (KL at the prediction; "
            "no generations, so preservation was not measured)"
        )
    if k.effect == "predicted":
        return f"lowered preservation beyond the mass-matched control{rates}"
    if k.effect == "opposite":
        return f"raised preservation against the prediction{rates}"
    if k.effect == "none":
        return f"changed preservation no more than the control, within the margin{rates}"
    if k.effect == "unreached":
        return f"did not reach the output ({k.reach.words})"
    if d is not None:
        lo, hi = (100 * v for v in d.ci90)
        return f"was inconclusive{rates}: the 90% CI of the difference, [{lo:+.0f}, {hi:+.0f}] pp, reaches past the margin"
    return "was inconclusive (no preservation data)"


def _knockout_sentence(outs: Sequence[TriangleOutcome], scope: str, layer: str) -> str | None:
    parts = [f"in {o.language.capitalize()} it {_ko_phrase(o.knockout(scope))}" for o in outs
             if o.knockout(scope) is not None]  # fmt: skip
    if not parts:
        return None
    return (
        f"Knocking out attention {scope_words(scope, layer)} ({scope}): " + "; ".join(parts) + "."
    )


def findings(
    outcomes: Sequence[TriangleOutcome],
    h1: Sequence[H1Result] = (),
    h2: Sequence[H2Result] = (),
    observed: Sequence[ObserveResult] = (),
    *,
    layer: str = "the chosen layer",
) -> list[str]:
    """3-8 sentences per model for the top of the report (more models: more sentences)."""
    out: list[str] = []
    for model in sorted({o.model for o in outcomes}):
        outs = [o for o in outcomes if o.model == model]
        prefix = f"[{model}] " if len({o.model for o in outcomes}) > 1 else ""
        scopes = list(dict.fromkeys(k.scope for o in outs for k in o.knockouts))
        default = next((s for s in scopes if not Scope.parse(s).is_plip and s.endswith("/L")), None)
        chosen = [default] if default else []
        chosen += [s for s in scopes if s.endswith("/all") and not Scope.parse(s).is_plip]
        plip = [s for s in scopes if Scope.parse(s).is_plip]
        for scope in [*chosen, *plip[-1:]]:
            sent = _knockout_sentence(outs, scope, layer)
            if sent:
                out.append(prefix + sent)
        windows = [s for s in scopes if Scope.parse(s).is_window]
        if windows:
            hits = [f"{o.language.capitalize()} {k.scope.rsplit('/', 1)[1][1:]}" for o in outs
                    for k in o.knockouts if k.scope in windows and k.effect == "predicted"]  # fmt: skip
            out.append(prefix + (
                "In the sweep of layer windows, the knockout lowered preservation beyond control in "
                + ", ".join(hits) + "."
                if hits
                else f"No window of the layer sweep ({len(windows)} windows) lowered preservation "
                "beyond the control in either language."
            ))  # fmt: skip
        steer = []
        for o in outs:
            dec = [t for t in o.steering.tests if t.role == "deciding"]
            failed = [t.arm for t in o.steering.tests if t.role == "not deciding"]
            lang = o.language.capitalize()
            if o.steering.effect == "predicted":
                up = [t.arm for t in dec if t.effect == "predicted"]
                steer.append(
                    f"in {lang} raising the attention raised preservation ({', '.join(up)})"
                )
            elif o.steering.effect == "opposite":
                steer.append(f"in {lang} raising the attention lowered preservation")
            elif o.steering.effect == "none":
                steer.append(
                    f"in {lang} raising the attention left preservation unchanged within the margin"
                )
            elif o.steering.effect == "unreached":
                steer.append(f"in {lang} raising the attention did not reach the output, so it "
                             "cannot show whether preservation follows the attention")  # fmt: skip
            elif not dec:
                steer.append(f"in {lang} no steering condition passed its manipulation check"
                             + (f" ({', '.join(failed)} failed)" if failed else ""))  # fmt: skip
            else:
                steer.append(
                    f"in {lang} the effect of raising the attention on preservation is inconclusive"
                )
        if steer and default:
            out.append(
                prefix + f"Steering {scope_words(default, layer)}: " + "; ".join(steer) + "."
            )
        if default:
            h = next((r for r in h1 if r.model == model and r.scope == default
                      and r.measure == "preservation drop" and r.difference is not None), None)  # fmt: skip
            k = next((r for r in h1 if r.model == model and r.scope == default
                      and r.measure == "KL" and r.difference is not None), None)  # fmt: skip
            if h is not None or k is not None:
                bits = []
                for r, unit, scale in ((h, "pp", 100.0), (k, "nats", 1.0)):
                    if r is None or r.difference is None:
                        continue
                    d = r.difference
                    bits.append(
                        f"{r.measure} {r.verdict} (Python − Rust {scale * d.effect:+.3g} {unit}, "
                        f"95% CI [{scale * d.ci_low:+.3g}, {scale * d.ci_high:+.3g}])"
                    )
                out.append(prefix + f"H1 ({default}): " + "; ".join(bits) + ".")
        for d2 in h2:
            if d2.model == model and d2.language != "python":
                out.append(
                    prefix
                    + f"H2 ({d2.language.capitalize()}, Scale in the default scope): {d2.verdict}."
                )
        obs = {o.view: o for o in observed if o.model == model}
        raw, norm = obs.get("level"), obs.get("level × keys (position-normalised)")
        if raw is not None and len(out) < 8:
            text = (f"Observed at {layer}, Python markers attend {raw.ratio:.1f}× as much to the "
                    f"function as Rust markers (Welch p = {raw.test.pvalue:.2g})")  # fmt: skip
            if norm is not None and not math.isnan(norm.ratio):
                text += (f"; normalised for marker position the ratio is {norm.ratio:.1f}× "
                         f"(p = {norm.test.pvalue:.2g})")  # fmt: skip
            out.append(prefix + text + ".")
    return out
