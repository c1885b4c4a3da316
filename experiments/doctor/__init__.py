"""``plip-nn doctor``: whether this machine (and NDIF) can run the study, before an hour is spent.

One line per check, marked ``ok``, ``warn`` or ``FAIL``; every line that is not ok names the
fix. A ``FAIL`` is only ever given to something the chosen run needs (a missing package, a
device that was asked for and is not there, an edit site that is not found, a model NDIF does
not run, a remote trace that fails), so the exit code is 2 exactly when a line says ``FAIL``;
what the run can do without (bubblewrap, ``rustc``, a version other than the tested one) is a
``warn``.

The checks live in :mod:`experiments.doctor.environment` (versions, torch build, devices,
sandbox, rustc), :mod:`experiments.doctor.engine` (the embedded model's self-check, a model's
architecture on the meta device, the tiny verified knockout trace) and
:mod:`experiments.doctor.ndif` (key, server, versions, deployment). The NDIF key is read from
``NDIF_API_KEY`` into nnsight's in-memory config only (:func:`plip_nn.remote.configure_remote`);
the doctor prints its length, never the key.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_NDIF_MODEL",
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "add_arguments",
    "cli_doctor",
    "exit_code",
    "format_check",
    "run_checks",
]

OK, WARN, FAIL = "ok", "warn", "FAIL"
DEFAULT_NDIF_MODEL = "meta-llama/Llama-3.1-8B"
"""The model ``--remote ndif`` checks when no ``--model`` is given (NDIF hosts Llama-3.1)."""


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Attributes:
        name: what was checked (a short label).
        status: :data:`OK`, :data:`WARN` or :data:`FAIL` (the chosen run needs it).
        detail: what was found (one line).
        fix: what to do when the status is not ok.
    """

    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in (OK, WARN, FAIL):
            raise ValueError(f"Check.status={self.status!r}; use ok, warn or FAIL")


def format_check(check: Check) -> str:
    """One printed line: status, name, detail and (when not ok) the fix."""
    line = f"{check.status:<4}  {check.name:<16} {check.detail}"
    if check.status != OK and check.fix:
        line += f" -> fix: {check.fix}"
    return line.replace("\n", " ")


def exit_code(checks: Iterable[Check]) -> int:
    """0, or 2 when a check that the chosen run needs failed."""
    return 2 if any(c.status == FAIL for c in checks) else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``doctor`` subcommand's flags."""
    parser.add_argument(
        "--model",
        default=None,
        help="also check this model (HF name or local directory): architecture supported and "
        "attention edit site found, on a meta-device model built from its config (no weights)",
    )
    parser.add_argument(
        "--remote",
        choices=("none", "local", "ndif"),
        default="none",
        help="also check a remote run: 'local' runs the tiny verified trace through nnsight's "
        "offline simulation; 'ndif' checks the key, the server, its versions, the model's "
        f"deployment and runs the trace on NDIF (default model {DEFAULT_NDIF_MODEL})",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="the device the run will use (auto: cuda when visible, else cpu)",
    )


def run_checks(
    model: str | None,
    remote: str,
    device: str,
    emit: Callable[[Check], None] = lambda c: None,
) -> list[Check]:
    """Run every check for the chosen run, calling ``emit`` as each one finishes."""
    from experiments.doctor import engine, environment

    done: list[Check] = []

    def add(checks: Sequence[Check]) -> None:
        for c in checks:
            done.append(c)
            emit(c)

    add(environment.check_environment(device))
    if any(c.status == FAIL and c.name in environment.STACK for c in done):
        return done  # no model stack: nothing below can run
    handle, checks = engine.embedded_self_check(device)
    add(checks)
    if remote == "ndif":
        model = model or DEFAULT_NDIF_MODEL
    if model is not None:
        add(engine.check_architecture(model))
    if remote == "ndif":
        from experiments.doctor import ndif

        add(ndif.check_ndif(str(model)))
    if remote == "local" and handle is not None:
        add([engine.trace_check(handle, "local")])
    return done


def cli_doctor(args: argparse.Namespace) -> int:
    """``plip-nn doctor``: print one line per check; the exit code of :func:`exit_code`."""
    start = time.perf_counter()
    checks = run_checks(
        args.model, args.remote, args.device, emit=lambda c: print(format_check(c), flush=True)
    )
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    verdict = "the chosen run cannot start" if failed else "ready"
    print(
        f"doctor: {len(checks)} checks, {failed} FAIL, {warned} warn in "
        f"{time.perf_counter() - start:.1f} s: {verdict}"
    )
    return exit_code(checks)
