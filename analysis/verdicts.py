"""The verdict vocabulary of the triangle and the records each decision leaves behind.

Labels are exact strings (the report, the Findings, the outcome matrix and the tests all read
them from here): per scope and language a knockout is **in the predicted direction**,
**opposite direction**, **no effect** (equivalence only), **inconclusive**, **control
unmatched** (its control missed the removed mass at some edited layer), **draws disagree** (the
control draws do not give one verdict) or **does not reach the output** (the reach gate,
:mod:`analysis.reach`). Each knockout is paired with the steering of the *same* scope; a scope
without steering reads "steering not run", never "one-way".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.equivalence import EFFECTS, Effect, PairedDifference
from analysis.hypothesis import TestResult
from analysis.reach import Reach

__all__ = [
    "DECIDING_STEERING",
    "DISAGREE",
    "EFFECT_WORDS",
    "INCONCLUSIVE",
    "INTERPRETATIONS",
    "STEERING_NOT_RUN",
    "UNMATCHED",
    "UNREACHED",
    "CallDiff",
    "DrawResult",
    "KnockoutOutcome",
    "SteeringOutcome",
    "SteeringTest",
    "TriangleOutcome",
    "interpret",
    "interpretation_table",
]

EFFECT_WORDS: dict[str, str] = {
    "predicted": "in the predicted direction",
    "none": "no effect",
    "opposite": "opposite direction",
    "inconclusive": "inconclusive",
    "unreached": "does not reach the output",
    "unmatched": "control unmatched",
    "disagree": "draws disagree",
}
INTERPRETATIONS: dict[tuple[bool, bool], str] = {
    (True, True): "causal and malleable",
    (True, False): "causal one-way",
    (False, True): "confounded",
    (False, False): "epiphenomenal",
}
INCONCLUSIVE = "inconclusive"
UNREACHED = EFFECT_WORDS["unreached"]
UNMATCHED = EFFECT_WORDS["unmatched"]
DISAGREE = EFFECT_WORDS["disagree"]
STEERING_NOT_RUN = "steering not run"
OPPOSITE_KNOCKOUT = "opposite direction (knockout)"
OPPOSITE_STEERING = "opposite direction (steering)"
OPPOSITE_BOTH = "opposite direction (knockout and steering)"
STEERING_UNREACHED = "inconclusive (steering does not reach the output)"
STEERING_UNREACHED_CAUSAL = "causal (knockout); steering does not reach the output"
DECIDING_STEERING = ("scale_2", "scale_calibrated", "set_value_calibrated")
"""The steering arms that may decide (others are the dose-response of H2)."""


def interpret(knockout: str, steering: str | None) -> str:
    """The outcome of one (knockout effect, steering effect) pair of :data:`EFFECTS`.

    ``steering`` None: no steering ran in the knockout's scope ("steering not run"; the
    knockout's own verdict is kept, never read as "one-way").
    """
    for e in (knockout, steering):
        if e is not None and e not in EFFECTS:
            raise ValueError(f"effect {e!r} is not one of {EFFECTS}")
    if knockout in ("unreached", "unmatched", "disagree"):
        return EFFECT_WORDS[knockout]
    if steering is None:
        return f"{EFFECT_WORDS[knockout]} (knockout); {STEERING_NOT_RUN}"
    if knockout == "opposite" and steering == "opposite":
        return OPPOSITE_BOTH
    if knockout == "opposite":
        return OPPOSITE_KNOCKOUT
    if steering == "opposite":
        return OPPOSITE_STEERING
    if steering == "unreached":
        return STEERING_UNREACHED_CAUSAL if knockout == "predicted" else STEERING_UNREACHED
    if "inconclusive" in (knockout, steering) or steering in ("unmatched", "disagree"):
        return INCONCLUSIVE
    return INTERPRETATIONS[(knockout == "predicted", steering == "predicted")]


def interpretation_table() -> pd.DataFrame:
    """Every (knockout effect, steering effect or none run) cell with its outcome."""
    steering: list[str | None] = [*EFFECTS, None]
    return pd.DataFrame(
        [
            {"knockout effect": EFFECT_WORDS[k],
             "steering effect": STEERING_NOT_RUN if s is None else EFFECT_WORDS[s],
             "outcome": interpret(k, s)}
            for k in EFFECTS
            for s in steering
        ]
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class CallDiff:
    """A paired difference of the call-site Δlog p (nats), condition − reference.

    Attributes:
        n: paired prompts; effect: mean difference; ci95 / ci90: paired BCa bootstrap CIs;
        ci_adj: the BCa CI at 1 − α/m (the deciding CI; NaNs where not deciding);
        level_adj: its confidence level; margin: the equivalence margin (nats);
        tost: the two one-sided p-values (paired t, H0: effect <= −margin; H0: effect >= margin).
        sd: the standard deviation of the paired differences (ddof 1).
    """

    n: int
    effect: float
    ci95: tuple[float, float]
    ci90: tuple[float, float]
    ci_adj: tuple[float, float]
    level_adj: float
    margin: float
    tost: tuple[float, float]
    sd: float = float("nan")


@dataclass(frozen=True, kw_only=True)
class DrawResult:
    """One control draw's comparison with the knockout of a scope.

    Attributes:
        draw: the control draw; control: its arm (``inert_control`` decides; old runs
            without it fall back to ``random_control``).
        call: call-site Δlog p, knockout − control (None without the call readout).
        diff: paired change in ``preserved``, knockout − control (None without generations).
        calls: paired change in ``calls_function``, knockout − control (None without).
        kl: Wilcoxon signed-rank of KL at the prediction, knockout vs control (None without
            records); kl_direction: sign of its rank sums.
        measure: what decided this draw (``dlogp``, ``preserved`` or ``kl``).
        pvalue / p_adjusted: the deciding p and its Bonferroni adjustment (NaN when a CI at
            1 − α/m decided: the call-site endpoint).
        effect / words: the draw's verdict and its reason.
    """

    draw: int
    control: str
    call: CallDiff | None
    diff: PairedDifference | None
    calls: PairedDifference | None
    kl: TestResult | None
    kl_direction: int
    measure: str
    pvalue: float
    p_adjusted: float
    effect: Effect
    words: str


@dataclass(frozen=True, kw_only=True)
class KnockoutOutcome:
    """The knockout verdict of one scope in one language.

    Attributes:
        scope: the scope label; effect / words: the verdict and its reason in words.
        measure: ``dlogp`` (call-site Δlog p), ``preserved`` or ``kl`` (old runs).
        draws: one result per deciding-control draw; compared: the renormalising control's
            draws (never deciding; empty when the inert control is missing and decides in
            its place).
        vs_baseline: the knockout's own call-site Δlog p against baseline (mean, BCa 95% CI).
        reach: whether the knockout reached the output.
        matched: the smallest per-layer share of matched (prompt, draw) pairs (NaN: no table);
        power: exact McNemar power at α_adj for a ``margin`` drop (NaN without generations).
        knockout_rate / control_rate: preservation under knockout and the first control.
        n_pairs: pairs behind the first draw's decision.
        gen_effect: the preservation verdict (generation) when the call site decided.
        kl_after / p_top1_after: the secondary readout after the marker: median KL of the
            knockout there, and the median baseline top-1 probability (≥ 0.99: cannot move).
        call_power / call_n80: power of the paired t test at α_adj to detect a ``margin_nats``
            difference from the first draw's observed SD, and the prompts 80% would need.
    """

    scope: str
    effect: Effect
    words: str
    measure: str
    draws: tuple[DrawResult, ...]
    reach: Reach
    power: float
    knockout_rate: float
    control_rate: float
    n_pairs: int
    compared: tuple[DrawResult, ...] = ()
    vs_baseline: TestResult | None = None
    matched: float = float("nan")
    gen_effect: Effect | None = None
    call_power: float = float("nan")
    call_n80: float = float("nan")
    kl_after: float = float("nan")
    p_top1_after: float = float("nan")


@dataclass(frozen=True, kw_only=True)
class SteeringTest:
    """One steering condition against baseline (see :mod:`analysis.steering`)."""

    arm: str
    condition: str
    role: str
    intended: int
    manipulation: TestResult | None
    manipulation_p_adjusted: float
    manipulation_ok: bool
    d_z: float
    diff: PairedDifference | None
    p_adjusted: float | None
    effect: Effect | None
    words: str
    reach: Reach | None = None
    scope: str = ""
    call: CallDiff | None = None
    calls: PairedDifference | None = None


@dataclass(frozen=True, kw_only=True)
class SteeringOutcome:
    effect: Effect
    words: str
    tests: tuple[SteeringTest, ...]
    scope: str = ""


@dataclass(frozen=True, kw_only=True)
class TriangleOutcome:
    """The triangle of one model and language, by scope.

    Attributes:
        model, language; alpha, margin (preservation, share), margin_nats (call-site Δlog p);
        family_size: deciding tests the Bonferroni correction divided α by;
        knockouts: one verdict per knockout scope, in reading order;
        steering: the default scope's steering verdict (the first scope with steering);
        steering_by_scope: scope -> its steering verdict (scopes without steering absent);
        cells: scope -> interpretation of (knockout there, steering there);
        rule: the decision rule in words; notes: what an old run lacks.
    """

    model: str
    language: str
    alpha: float
    margin: float
    family_size: int
    knockouts: tuple[KnockoutOutcome, ...]
    steering: SteeringOutcome
    cells: dict[str, str] = field(default_factory=dict)
    rule: str = ""
    steering_by_scope: dict[str, SteeringOutcome] = field(default_factory=dict)
    margin_nats: float = 0.1
    notes: tuple[str, ...] = ()

    def knockout(self, scope: str) -> KnockoutOutcome | None:
        return next((k for k in self.knockouts if k.scope == scope), None)
