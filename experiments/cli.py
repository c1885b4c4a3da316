"""``plip-nn``: the command line. It only parses flags into configs and maps errors to exit codes.

An experiment's flags are derived from its ``Config`` dataclass by
:func:`experiments.flags.config_flags`, the one source of defaults and help: one flag per field
(``batch_size`` -> ``--batch-size``) with the field's default, a type from its annotation and,
as help, the field's entry in the ``Attributes:`` section of the docstring; a boolean that is on
by default is turned off with ``--no-<name>``. The config reads the values
(``Config.from_flags``: knockout's ``--layer all`` is ``every_layer``). Two flags do a little
more here: ``--model`` repeats (one sub-run per model, for commands that run several) and
``--no-execute`` is ``--execute off``.

The experiment modules load neither torch nor pandas at import (those imports sit in the
functions that run), so ``plip-nn analyze`` and every ``--help`` start without the model stack.

Exit codes: 0 ok; 2 bad input (one line on stderr saying what and how to fix it); 1 any other
failure (environment faults such as a read-only or full disk, a failed edit verification);
130 interrupted (Ctrl-C; finished chunks are kept, rerun with ``--resume``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

from experiments import calibrate, generate, heads, knockout, scan, steer, triangle
from experiments.flags import config_flags
from experiments.study import CommonConfig

__all__ = [
    "COMMANDS",
    "Command",
    "build_parser",
    "config_from_args",
    "experiment_flags",
    "given_flags",
    "main",
]


@dataclass(frozen=True)
class Command:
    """An experiment command: the module that holds its ``Config`` and ``main(cfg) -> Path``.

    Attributes:
        module: the experiment's module.
        help: one line for ``plip-nn --help``.
        several_models: name of the module's ``(cfg, models) -> Path`` function that takes
            several ``--model`` values (one sub-run each); ``None``: one model only.
    """

    module: types.ModuleType
    help: str
    several_models: str | None = None


COMMANDS: dict[str, Command] = {
    "scan": Command(scan, "marker->function attention at every layer"),
    "calibrate": Command(calibrate, "SetValue / Scale that lift Rust to the Python level"),
    "knockout": Command(knockout, "knockout + random-edge control (--layer all: per layer)"),
    "steer": Command(steer, "dose-response: Scale factors and calibrated SetValue"),
    "generate": Command(generate, "generation with edits at every step (KV cache)"),
    "heads": Command(
        heads, "which heads carry it: per-head attribution and knockouts, held-out top-K heads"
    ),
    "triangle": Command(triangle, "the whole study (the main job)", several_models="main_models"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


_COMMON = frozenset(f.name for f in fields(CommonConfig))
_MODEL_REPEATS = {"model": {"action": "append", "default": None}}  # None: the field's default


def experiment_flags(parser: argparse.ArgumentParser, cfg_cls: type) -> dict[str, argparse.Action]:
    """An experiment's flags (:func:`experiments.flags.config_flags`, the common ones grouped),
    plus ``--model`` repeating and ``--no-execute``; field -> its action."""
    actions = config_flags(parser, cfg_cls, common=_COMMON, overrides=_MODEL_REPEATS)
    if "execute" in actions:
        group = cast(Any, actions["execute"]).container  # its argument group
        group.add_argument(
            "--no-execute", dest="execute", action="store_const", const="off",
            help="same as --execute off",
        )  # fmt: skip
    return actions


def config_from_args(args: argparse.Namespace) -> tuple[Callable[[Any], Path], Any]:
    """(the function to run, its Config) for parsed experiment flags."""
    from experiments.study import ConfigError

    command = COMMANDS[args.command]
    module = command.module
    cfg_cls = module.Config
    names = {f.name for f in fields(cfg_cls) if f.init}
    values: dict[str, Any] = {}
    for name in names:
        value = getattr(args, name)
        values[name] = tuple(value) if isinstance(value, list) else value
    models: tuple[str, ...] = values.pop("model", None) or ()  # (): the field's default
    if len(models) > 1 and command.several_models is None:
        several = [n for n, c in COMMANDS.items() if c.several_models]
        raise ConfigError(
            f"several --model values are for {', '.join(several)} only, not {args.command}"
        )
    if models:
        values["model"] = models[0]
    cfg = cfg_cls.from_flags(values)
    preset = getattr(module, "QUICK", None)
    if preset and getattr(cfg, "quick", False):
        # --quick sets its fields where they hold their defaults; a flag given on the command
        # line keeps its value even when that value is the default (--quick --samples 3)
        for name in set(getattr(args, "given_flags", ())) & set(preset):
            object.__setattr__(cfg, name, values[name])
    if len(models) > 1:
        run_several = getattr(module, str(command.several_models))
        return lambda c: run_several(c, list(models)), cfg
    return module.main, cfg


def build_parser(flags_for: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``plip-nn`` parser; ``flags_for``: the experiments whose flags it adds (None: all).

    :func:`main` passes only the command being run, so only its flags are built.
    """
    parser = _Parser(prog="plip-nn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("models", help="list supported architectures and the embedded model")

    corpus = sub.add_parser("corpus", help="check, annotate or convert a corpus file")
    csub = corpus.add_subparsers(dest="corpus_command", required=True, parser_class=_Parser)
    c = csub.add_parser("check", help="validate a corpus; exit 2 naming masked/bad samples")
    c.add_argument("file")
    a = csub.add_parser("annotate", help="find markers and targets in {id, code} samples")
    a.add_argument("file")
    a.add_argument("-o", "--output", required=True)
    v = csub.add_parser("convert", help="convert PLIP-rs files to the plip-nn format")
    v.add_argument("file")
    v.add_argument("-o", "--output", required=True)
    from experiments.mine_cmd import add_mine_parser

    add_mine_parser(csub)

    an = sub.add_parser("analyze", help="statistics, report and figures from run directories")
    an.add_argument("run_dir", nargs="+", help="one run directory, or one per model")
    an.add_argument("--out", default=None, help="output directory (required for several runs)")

    from experiments import doctor

    doctor.add_arguments(sub.add_parser("doctor", help="check this machine (and NDIF) first"))

    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if flags_for is not None and name not in flags_for:
            continue
        actions = experiment_flags(p, command.module.Config)
        if command.several_models and "model" in actions:
            actions["model"].help = f"{actions['model'].help}; repeat it for several models"
    return parser


def _models() -> int:
    from plip_nn.embedded import EMBEDDED_MODEL_DIR, EMBEDDED_MODEL_NAME
    from plip_nn.models import VERIFIED_ARCHITECTURES

    print("Embedded model (default --model):")
    status = "present" if (EMBEDDED_MODEL_DIR / "config.json").exists() else "MISSING"
    print(f"  {EMBEDDED_MODEL_NAME}  ({status}: {EMBEDDED_MODEL_DIR})")
    card = EMBEDDED_MODEL_DIR.parent / "MODEL_CARD.md"
    if card.exists():
        print(f"  model card: {card}")
    print("Architectures verified against a hand-written attention reference:")
    for arch, model_types in VERIFIED_ARCHITECTURES.items():
        note = "" if model_types == (arch,) else f"  (HF model_type: {', '.join(model_types)})"
        print(f"  {arch}{note}")
    print(
        "Other decoder-only HF models work when their attention sites resolve structurally; "
        "loading checks this and fails with a clear error otherwise."
    )
    return 0


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from experiments.study import ConfigError
    from plip_nn.edits import EditSpecError
    from plip_nn.models import ModelLoadError, UnsupportedArchitectureError
    from plip_nn.remote import RemoteConfigError
    from plip_nn.runs import RunDirError

    errors: list[type[BaseException]] = [
        ConfigError,
        EditSpecError,
        ModelLoadError,
        UnsupportedArchitectureError,
        RunDirError,
        RemoteConfigError,
    ]
    from plip_nn.corpus import CorpusError
    from plip_nn.positions import PositionError

    errors += [CorpusError, PositionError]
    from analysis.sandbox import SandboxUnavailable

    errors.append(SandboxUnavailable)
    return tuple(errors)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "models":
        return _models()
    if args.command == "doctor":
        from experiments.doctor import cli_doctor

        return cli_doctor(args)
    if args.command == "corpus":
        from experiments import corpus_cmd

        handlers: dict[str, Callable[..., int]] = {
            "check": lambda: corpus_cmd.cli_check(args.file),
            "annotate": lambda: corpus_cmd.cli_annotate(args.file, args.output),
            "convert": lambda: corpus_cmd.cli_convert(args.file, args.output),
            "mine": lambda: __import__("experiments.mine_cmd").mine_cmd.cli_mine(args),
        }
        return handlers[args.corpus_command]()
    run_main, cfg = config_from_args(args)
    out = run_main(cfg)
    report = Path(out) / "report.md"
    if report.exists():  # the study: its findings, then where to read the rest
        from analysis.report import report_findings

        print("Findings:")
        for line in report_findings(report):
            print(f"- {line}")
        print(f"Report: {report}")
    from analysis.report import execute_notes

    for note in execute_notes(out):  # e.g. no bubblewrap: say it last, not mid-progress
        print(f"Note: {note}")
    print(out)
    return 0


def given_flags(parser: argparse.ArgumentParser, command: str, argv: Sequence[str]) -> set[str]:
    """The destinations of ``command``'s flags that ``argv`` names (``--samples 0``,
    ``--samples=0``, ``--no-plip-scope``), whatever their values."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    sub = subs[0].choices.get(command) if subs else None
    if sub is None:
        return set()
    words = {w.split("=", 1)[0] for w in argv if w.startswith("-")}
    return {a.dest for a in sub._actions if words & set(a.option_strings)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``plip-nn`` console script; returns the exit code.

    ``analyze`` (its help included) loads neither torch nor transformers: it reads records only.
    """
    logging.basicConfig(level=logging.WARNING, format="plip-nn: %(levelname)s: %(message)s")
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv[:1] != ["analyze"]:
        _quiet_libraries()
    parser = build_parser(flags_for=argv[:1])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a flag error (2, message already printed)
        return int(exc.code) if isinstance(exc.code, int) else 2
    args.given_flags = given_flags(parser, args.command, argv)
    if args.command == "analyze":  # torch-free: analysis reads records only
        from analysis.report import cli_analyze

        return cli_analyze([Path(p) for p in args.run_dir], out=args.out)
    bad_input = _bad_input_errors()
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print(
            "plip-nn: interrupted; finished chunks are saved, rerun with --resume to continue",
            file=sys.stderr,
        )
        return 130
    except bad_input as exc:
        print(f"plip-nn {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"plip-nn {args.command}: environment error: {_one_line(exc)} "
            "(check the output path, permissions and free disk space)",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        print(
            f"plip-nn {args.command}: failed: {type(exc).__name__}: {_one_line(exc)}",
            file=sys.stderr,
        )
        return 1


def _quiet_libraries() -> None:
    """Library progress bars and advice would bury our one-line messages."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
