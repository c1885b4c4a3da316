"""Generation with the condition's edits applied at every step (KV cache on).

For each generation prompt (a function followed by a marker: ``>>>`` in its docstring, or
``#[test]`` and its line break after it) and each condition, the model continues the prompt; the edits act on
the marker's row at prefill and on generated rows per the source policy
(:mod:`plip_nn.generate`). The continuation is trimmed at an end-of-test heuristic or EOS and
scored for preservation by :mod:`analysis.preservation` (``generations.parquet``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import conditions
from experiments.calibrate import needs_scan, resolve_layer
from experiments.conditions import Arm, Unit
from experiments.control import match_controls
from experiments.records import GEN_KEYS, GEN_ORDER, generation_row
from experiments.study import CommonConfig, ConfigError, Prepared, Study, open_study, run_chunks
from plip_nn.codesrc import MARKERS, generation_suffix, rust_test_end
from plip_nn.scope import BASELINE, CHOSEN, Scope

if TYPE_CHECKING:
    import pandas as pd

    from analysis.execution import ExecuteMode
    from analysis.preservation import Preservation

__all__ = [
    "DECODINGS",
    "Config",
    "Decoded",
    "GenerationFlags",
    "check_execute",
    "decodings_of",
    "gen_seed",
    "main",
    "resolve_execute",
    "run_generation",
    "trim_continuation",
]

log = logging.getLogger(__name__)

# A generation batch costs max_new_tokens decoding steps, so its parts hold fewer batches.
GENERATION_BATCHES_PER_PART = 2


@dataclass(frozen=True, kw_only=True)
class GenerationFlags(CommonConfig):
    """The common flags plus how continuations are made and scored (generate and triangle).

    Which rows a condition edits during generation follows its scope's rows (``--rows``):
    ``marker``/``marker_span`` edit the prompt's marker rows and every generated marker,
    ``to_call`` every row from the marker on until the test's first call of the function has
    been written (or the first test ends), ``continuation`` every row from the marker on,
    generated rows included.

    Attributes:
        max_new_tokens: tokens generated per prompt before trimming.
        gen_batch_size: (prompt, condition) rows per KV-cached generation loop: one
            ``generate`` call serves them all, each row with its own edits (``--batch-size``
            stays the rows per single forward pass).
        execute: where generated tests run for the ``executes`` column: ``auto`` (in the
            bubblewrap sandbox when available, else not run, noted), ``sandbox`` (required),
            ``off``, or ``unsafe`` (without a sandbox, an explicit opt-in); see
            :func:`analysis.preservation.resolve_execute`.
        stop_at_first_test: end each generation once its first test is complete
            (:func:`analysis.preservation.first_test_complete`: scoring reads only that test,
            so the scores are those of the whole --max-new-tokens generation); a batch ends
            when all its rows have; --no-stop-at-first-test: always make --max-new-tokens
            tokens (local runs only; a remote run always makes them all).
    """

    max_new_tokens: int = 40
    gen_batch_size: int = 64
    execute: str = "auto"
    stop_at_first_test: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens {self.max_new_tokens!r}: use an integer >= 1")
        if not isinstance(self.gen_batch_size, int) or self.gen_batch_size < 1:
            raise ConfigError(f"--gen-batch-size {self.gen_batch_size!r}: use an integer >= 1")
        check_execute(self.execute)

    @property
    def decoding(self) -> tuple[bool, float]:
        """(sample, temperature) of generation: greedy; ``plip-nn generate`` has flags for it."""
        return False, 1.0


@dataclass(frozen=True, kw_only=True)
class Config(GenerationFlags):
    """Generation config.

    Attributes:
        conditions: the arms to generate under, each in the default scope (--rows, --targets)
            at the chosen layer: baseline, knockout, random_control (mass-matched, one draw),
            scale_<factor>, scale_calibrated, scale_calibrated_x2, set_value_calibrated.
        sample: seeded sampling instead of greedy decoding (one sampled decoding per row).
        temperature: sampling temperature.
        samples: K sampled decodings per prompt and condition besides the greedy one (each
            row records decoding, sample_index and gen_seed); 0: greedy only.
    """

    conditions: tuple[str, ...] = (
        "baseline", "knockout", "random_control", "scale_2", "set_value_calibrated",
    )  # fmt: skip
    sample: bool = False
    temperature: float = 1.0
    samples: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            for name in self.conditions:
                conditions.check_arm(name)
        except ValueError as exc:
            raise ConfigError(f"--conditions: {exc}") from None
        object.__setattr__(self, "conditions", tuple(self.conditions))
        calibrated = {conditions.SCALE_CALIBRATED, conditions.SCALE_CALIBRATED_X2,
                      conditions.SET_VALUE_CALIBRATED}  # fmt: skip
        if calibrated & set(self.conditions) and set(self.languages) != {"python", "rust"}:
            raise ConfigError(
                "set_value_calibrated lifts Rust to the Python level and needs both languages; "
                "pass --languages python rust or leave that condition out (--conditions ...)"
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"--temperature {self.temperature!r}: use a number > 0")
        if not isinstance(self.samples, int) or self.samples < 0:
            raise ConfigError(f"--samples {self.samples!r}: use an integer >= 0 (0: greedy only)")
        if self.samples and self.sample:
            raise ConfigError("--sample replaces greedy decoding; --samples K adds K sampled "
                              "decodings to it: pass one of them")  # fmt: skip

    @property
    def decoding(self) -> tuple[bool, float]:
        """(sample, temperature): ``--sample`` and ``--temperature``."""
        return self.sample, self.temperature


DECODINGS = ("greedy", "sampled")
"""The ``decoding`` column's values (:mod:`analysis.rates` reads them)."""


def gen_seed(seed: int, sample_id: str, sample_index: int) -> int:
    """The sampling seed of a prompt's ``sample_index``-th sampled decoding in a run seeded
    ``seed``: the first 63 bits of SHA-256 of ``"seed|sample_id|sample_index"``. It does not
    depend on the condition, so a prompt's baseline and its knockouts draw with the same seed
    (paired: common random numbers)."""
    digest = hashlib.sha256(f"{seed}|{sample_id}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class Decoded:
    """One generation row: a unit under one decoding.

    Attributes:
        unit: the prompt under its condition.
        decoding: ``greedy`` or ``sampled``.
        sample_index: 0 for greedy; 0..K-1 for the K sampled decodings.
        gen_seed: the sampling seed (:func:`gen_seed`); -1 for greedy.
    """

    unit: Unit
    decoding: str
    sample_index: int
    gen_seed: int

    @property
    def key(self) -> str:
        """The row key: the unit's plus the decoding and its index (resume, uniqueness)."""
        return f"{self.unit.key}|{self.decoding}#{self.sample_index}"


def decodings_of(
    units: list[Unit],
    seed: int,
    *,
    sample: bool = False,
    samples: int = 0,
    sampled: Collection[str] = (),
) -> list[Decoded]:
    """The generation rows of ``units``: with ``sample`` one sampled decoding each (``plip-nn
    generate --sample``); otherwise the greedy one, plus ``samples`` sampled decodings for the
    units whose arm name (:attr:`Arm.name`) is in ``sampled``. Each unit's rows are consecutive (one batch mixes
    greedy and sampled rows: the engine samples per row, :class:`plip_nn.generate.RowSampler`)."""
    out = []
    for u in units:
        pid = u.sample.id
        if sample:
            out.append(Decoded(u, "sampled", 0, gen_seed(seed, pid, 0)))
            continue
        out.append(Decoded(u, "greedy", 0, -1))
        if u.arm.name in sampled:
            out += [Decoded(u, "sampled", i, gen_seed(seed, pid, i)) for i in range(samples)]
    return out


def generation_batches_per_part(batch_size: int, gen_batch_size: int) -> int:
    """Parts of :func:`experiments.study.run_chunks` (sized in ``--batch-size`` units) that hold
    :data:`GENERATION_BATCHES_PER_PART` generation loops of ``--gen-batch-size`` rows."""
    return GENERATION_BATCHES_PER_PART * math.ceil(gen_batch_size / batch_size)


def trim_continuation(language: str, prompt: str, text: str, eos: str | None) -> tuple[str, str]:
    """Cut a continuation at EOS or where the generated test ends; returns (text, reason).

    A heuristic for *stopping*, not for scoring (preservation parses properly):
    Python stops before the first non-empty line that is not indented (the function and its
    docstring are over); Rust stops after the brace that closes the generated test function,
    found on tree-sitter tokens of the prompt's ending + the continuation, as preservation does
    (:func:`plip_nn.codesrc.rust_test_end`).
    """
    reason = "max_new_tokens"
    if eos and eos in text:
        text = text[: text.index(eos)]
        reason = "eos"
    if language == "python":
        lines = text.split("\n")
        for i, line in enumerate(lines[1:], start=1):
            if line.strip() and not line[0].isspace():
                return "\n".join(lines[:i]), "end_of_function"
        return text, reason
    header = generation_suffix(prompt, "rust") or ""
    end = rust_test_end(header + text)
    if end is None or end <= len(header):
        return text, reason
    return text[: end - len(header)], "end_of_function"


class StopAtFirstTest:
    """A generation row's stop rule (``GenerationRequest.stop``): its first test is complete
    (:func:`analysis.preservation.first_test_complete` on the prompt and the new text)."""

    CHARS = "\n}\"'"
    """A test can only become complete on a token holding a newline (Python: the line that
    ends the expected output), a ``}`` (Rust: the test's closing brace) or a quote (Python:
    the docstring's closing delimiter)."""

    def __init__(self, language: str, prompt: str) -> None:
        self.language = language
        self.prompt = prompt

    def __call__(self, text: str) -> bool:
        from analysis.preservation import first_test_complete

        return first_test_complete(self.language, self.prompt, text)


SCORE_THREADS = 8
"""Threads that score a chunk's distinct continuations (each sandboxed test run is a
subprocess; the threads mostly wait on them)."""


def check_execute(value: str) -> None:
    """``--execute`` must name a policy (ConfigError otherwise)."""
    from analysis.preservation import EXECUTE_REQUESTS

    if value not in EXECUTE_REQUESTS:
        raise ConfigError(
            f"--execute {value!r}: use one of {', '.join(EXECUTE_REQUESTS)} (auto = the sandbox "
            "when available, else not run)"
        )


def resolve_execute(requested: str) -> tuple[ExecuteMode, str]:
    """(mode, note) for ``--execute``; raises SandboxUnavailable (exit 2) before any work."""
    from analysis.preservation import resolve_execute as resolve

    return resolve(requested)


def _preservation(p: Prepared, text: str, execute: ExecuteMode) -> Preservation:
    from analysis.preservation import score

    fn = p.sample.function
    language: Any = p.language  # "python" | "rust": the corpus loader checked it
    return score(
        language,
        p.sample.code,
        text,
        function_name=fn.name,
        arity=fn.arity,
        function_source=fn.source,
        execute=execute,
    )


def function_name(p: Prepared) -> str:
    """The name of the function a prompt tests (read from the code for PLIP-rs files)."""
    from plip_nn.codesrc import function_name_at

    fn = p.sample.function
    return (
        str(fn.name)
        if fn is not None
        else function_name_at(p.sample.code, p.sample.target_char_positions)
    )


def policy_of(unit: Unit) -> str:
    """The engine's source policy for a unit: ``continuation`` rows edit every generated row,
    ``to_call`` rows every generated row until the test's first call of the function has been
    written or the first test ends, the marker scopes the prompt's marker rows and every
    generated marker."""
    from plip_nn.generate import resolve_source_policy
    from plip_nn.kernels import POLICY_MARKERS

    scope = unit.arm.scope
    return POLICY_MARKERS if scope is None else resolve_source_policy(scope.rows, "rows")


def run_generation(
    study: Study[GenerationFlags],
    units: list[Unit],
    *,
    experiment: str = "generate",
    table: str = "generations",
    samples: int = 0,
    sampled: Collection[str] = (),
) -> pd.DataFrame:
    """Generate every unit (a generation prompt under a condition) into ``generations`` (or
    ``table``; experiments.heads keeps its own).

    Each unit's edits apply at every step, with the rows of its scope (:func:`policy_of`).
    The flags are the study's: ``--max-new-tokens``, ``--execute``, ``--gen-batch-size`` and
    the decoding (:attr:`GenerationFlags.decoding`: greedy, or one sampled decoding per unit).
    A greedy study adds ``samples`` sampled decodings at that temperature to the units whose
    condition is in ``sampled`` (:func:`decodings_of`); each row records ``decoding``,
    ``sample_index`` and ``gen_seed``. Returns the assembled table.
    """
    import pandas as pd

    # torch loads when the experiment runs, not with the CLI
    from plip_nn.generate import GenerationRequest, generate, marker_token_sequences

    handle = study.handle
    tok = handle.tokenizer
    marker_seqs = {lang: marker_token_sequences(tok, m) for lang, m in MARKERS.items()}
    cfg = study.cfg
    mode, note = resolve_execute(cfg.execute)
    if note:
        log.warning(note)
    study.run.update_manifest(execute={"requested": cfg.execute, "mode": mode, "note": note})
    eos = tok.eos_token
    seed = cfg.seed
    sample, temperature = cfg.decoding
    rows_todo = decodings_of(units, seed, sample=sample, samples=samples, sampled=sampled)
    # Scoring is a function of (sample, scored text). Most conditions leave most continuations
    # as baseline's, so each distinct text is scored once, and a chunk's distinct texts are
    # scored in parallel: a test run in the sandbox takes ~0.2 s, mostly spent waiting on
    # bwrap, the interpreter and rustc in subprocesses.
    scored: dict[tuple[str, str], Preservation] = {}
    stop = cfg.stop_at_first_test and cfg.remote == "none"
    stops: dict[str, StopAtFirstTest] = {}

    def stop_of(p: Prepared) -> StopAtFirstTest | None:
        if stop and p.id not in stops:
            stops[p.id] = StopAtFirstTest(p.language, p.sample.code)
        return stops.get(p.id)

    def score_all(pairs: list[tuple[Prepared, str]]) -> None:
        todo = {(p.id, text): (p, text) for p, text in pairs if (p.id, text) not in scored}
        if mode == "off" or len(todo) < 2:
            scored.update({k: _preservation(p, text, mode) for k, (p, text) in todo.items()})
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(SCORE_THREADS) as pool:
            got = pool.map(lambda pt: _preservation(pt[0], pt[1], mode), todo.values())
            scored.update(zip(todo, got, strict=True))

    def work(chunk: list[Decoded]) -> pd.DataFrame:
        reqs = [
            GenerationRequest(
                key=d.key,
                sample_id=u.sample.id,
                input_ids=u.sample.input_ids,
                condition=u.condition,
                marker_token_seqs=marker_seqs[u.sample.language],
                source_policy=policy_of(u),
                call_name=function_name(u.sample),
                language=u.sample.language,
                sample_seed=None if d.decoding == "greedy" else d.gen_seed,
                stop=stop_of(u.sample),
                stop_chars=StopAtFirstTest.CHARS if stop else None,
            )
            for d in chunk
            for u in (d.unit,)
        ]
        results = generate(
            handle,
            reqs,
            max_new_tokens=cfg.max_new_tokens,
            temperature=temperature,
            batch_size=cfg.gen_batch_size,
            remote=cfg.remote,
        )
        trimmed = [
            trim_continuation(d.unit.sample.language, d.unit.sample.sample.code, res.text, eos)
            for d, res in zip(chunk, results, strict=True)
        ]
        score_all([(d.unit.sample, text) for d, (text, _) in zip(chunk, trimmed, strict=True)])
        rows = []
        for d, res, (text, reason) in zip(chunk, results, trimmed, strict=True):
            u, p = d.unit, d.unit.sample
            row = generation_row(
                experiment=experiment,
                model=study.model_name,
                seed=seed,
                unit=u,
                result=res,
                text=text,
                stop_reason=reason,
                preservation=scored[(p.id, text)],
            )
            if res.stopped and reason == "max_new_tokens":
                row["stop_reason"] = "first_test_complete"
            row.update(decoding=d.decoding, sample_index=d.sample_index, gen_seed=d.gen_seed)
            row["temperature"] = math.nan if d.decoding == "greedy" else float(temperature)
            rows.append(row)
        return pd.DataFrame(rows)

    run_chunks(
        study,
        table,
        rows_todo,
        lambda d: d.key,
        work,
        desc="generate",
        batches_per_part=generation_batches_per_part(cfg.batch_size, cfg.gen_batch_size),
    )
    return study.run.assemble(table, GEN_ORDER, GEN_KEYS)


def arms_for(names: tuple[str, ...], cfg: CommonConfig) -> list[Arm]:
    """The arms named by ``--conditions``, in the default scope at the chosen layer."""
    scope = Scope(cfg.rows, cfg.targets, CHOSEN)
    return [
        Arm(n) if n == BASELINE else Arm(n, scope, 0 if n == conditions.CONTROL else None)
        for n in names
    ]


def main(cfg: Config) -> Path:
    """Run generation under each condition; return the run directory."""
    resolve_execute(cfg.execute)  # --execute sandbox without a sandbox: exit 2, nothing written
    calibrated = bool({conditions.SCALE_CALIBRATED, conditions.SCALE_CALIBRATED_X2,
                       conditions.SET_VALUE_CALIBRATED} & set(cfg.conditions))  # fmt: skip
    # The scan reads test samples: load them only when resolve_layer will scan.
    scans = needs_scan(cfg.layer, calibration=calibrated)
    kinds = ("generation", "test") if scans else ("generation",)
    study = open_study(cfg, "generate", kinds, cfg.to_dict())
    choice = resolve_layer(study, ("test",), calibration=calibrated)
    prompts = study.select("generation")
    arms = arms_for(cfg.conditions, cfg)
    controls = None
    if conditions.CONTROL in cfg.conditions:
        controls = match_controls(study, prompts, [(cfg.rows, cfg.targets)], draws=1)
    units = conditions.plan_units(
        prompts, arms, layer_of=choice.layers_of([p.id for p in prompts]),
        n_layers=study.handle.n_layers, calibration=choice.calibrations, controls=controls,
    )  # fmt: skip
    run_generation(study, units, samples=cfg.samples, sampled={u.arm.name for u in units})
    study.run.finish()
    return study.run.path
