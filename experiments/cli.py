"""``plip-nn``: the command line. It only parses flags into configs and maps errors to exit codes.

An experiment's flags are derived from its ``Config`` dataclass, the one source of defaults and
help: one flag per field (``batch_size`` -> ``--batch-size``) with the field's default, a type
from its annotation (``tuple[X, ...]`` takes one or more values) and, as help, the field's entry
in the ``Attributes:`` section of the docstring; a boolean that is on by default is turned off
with ``--no-<name>``, whose help is what the entry says after ``--no-<name>:`` (required). Three flags do a little more than their field: ``--model`` repeats (one
sub-run per model, for commands that run several), ``--layer all`` means ``every_layer``, and
``--no-execute`` is ``--execute off``.

Exit codes: 0 ok; 2 bad input (one line on stderr saying what and how to fix it); 1 any other
failure (environment faults such as a read-only or full disk, a failed edit verification);
130 interrupted (Ctrl-C; finished chunks are kept, rerun with ``--resume``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import re
import sys
import types
import typing
from collections.abc import Callable, Collection, Sequence
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "Command", "build_parser", "config_flags", "config_from_args", "main"]


@dataclass(frozen=True)
class Command:
    """An experiment command: the module that holds its ``Config`` and ``main(cfg) -> Path``.

    Attributes:
        module: the module's import name (imported when the command runs or shows its help).
        help: one line for ``plip-nn --help``.
        several_models: name of the module's ``(cfg, models) -> Path`` function that takes
            several ``--model`` values (one sub-run each); ``None``: one model only.
    """

    module: str
    help: str
    several_models: str | None = None

    def load(self) -> types.ModuleType:
        return importlib.import_module(self.module)


COMMANDS: dict[str, Command] = {
    "scan": Command("experiments.scan", "marker->function attention at every layer"),
    "calibrate": Command(
        "experiments.calibrate", "SetValue / Scale that lift Rust to the Python level"
    ),
    "knockout": Command(
        "experiments.knockout", "knockout + random-edge control (--layer all: per layer)"
    ),
    "steer": Command("experiments.steer", "dose-response: Scale factors and calibrated SetValue"),
    "generate": Command("experiments.generate", "generation with edits at every step (KV cache)"),
    "heads": Command(
        "experiments.heads",
        "which heads carry it: per-head attribution and knockouts, held-out top-K heads",
    ),
    "triangle": Command(
        "experiments.triangle", "the whole study (the main job)", several_models="main_models"
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _layer(value: str) -> int | str:
    if value == "all":
        return "all"
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid layer {value!r}: use a layer index (0, 1, ...) or 'all'"
        ) from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"invalid layer {value!r}: use an index >= 0")
    return n


# The flags that do a little more than their field (see the module docstring).
_FLAG_OVERRIDES: dict[str, dict[str, Any]] = {
    "model": {"action": "append", "default": None},  # None: the field's default
    "layer": {"type": _layer},
}
_EXTRA_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "execute": (
        "--no-execute",
        {"action": "store_const", "const": "off", "help": "same as --execute off"},
    ),
}

_ENTRY = re.compile(r"(\w+)(?: \([^)]*\))?: (.+)")
_ROLE = re.compile(r":[\w:]+:`~?([^`]+)`")  # :func:`x.y` -> x.y
_LITERAL = re.compile(r"``([^`]+)``")  # ``x`` -> x


def _attributes(doc: str | None) -> dict[str, str]:
    """Name -> text of the ``Attributes:`` section of a Google-style docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    heads = [i for i, line in enumerate(lines) if line.strip() == "Attributes:"]
    if not heads:
        return {}
    head_indent = len(lines[heads[0]]) - len(lines[heads[0]].lstrip())
    entries: dict[str, list[str]] = {}
    entry_indent: int | None = None
    for line in lines[heads[0] + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= head_indent:
            break  # the next section
        entry_indent = indent if entry_indent is None else entry_indent
        if indent > entry_indent:
            entries[next(reversed(entries))].append(line.strip())
            continue
        match = _ENTRY.fullmatch(line.strip())
        if indent < entry_indent or match is None:
            raise ValueError(f"Attributes entry {line.strip()!r}: write it as 'name: text'")
        entries[match[1]] = [match[2]]
    return {name: " ".join(text) for name, text in entries.items()}


def _field_help(cfg_cls: type) -> dict[str, str]:
    """Field -> help text: its ``Attributes:`` entry in the class's or a base's docstring."""
    docs: dict[str, str] = {}
    for klass in reversed(cfg_cls.__mro__):  # a subclass's entry wins
        docs.update(_attributes(klass.__dict__.get("__doc__")))
    return {name: _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text)) for name, text in docs.items()}


def _shown(default: Any) -> str:
    if isinstance(default, tuple | list):
        return " ".join(map(str, default))
    return str(default)


def _value_type(annotation: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """(element type, extra add_argument keywords) for a field's annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if len(kept) == 1:
            return _value_type(kept[0], where)
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        element, extra = _value_type(args[0], where)
        return element, {**extra, "nargs": "+"}
    elif origin is typing.Literal:
        return type(args[0]), {"choices": args}
    elif annotation in (int, float, str):
        return annotation, {}
    raise TypeError(
        f"{where}: no flag for type {annotation!r}; use int, float, str, bool, "
        "X | None, tuple[X, ...] or Literal[...]"
    )


def _flag(
    field: Field[Any], annotation: Any, help_text: str, where: str
) -> tuple[str, dict[str, Any]]:
    """The option string and the add_argument keywords for one field."""
    dashed = field.name.replace("_", "-")
    if field.default is not MISSING:
        default: Any = field.default
    elif field.default_factory is not MISSING:
        default = field.default_factory()
    else:
        raise TypeError(f"{where} has no default; give it one (flags are optional)")
    help_text = help_text.rstrip(".")
    if annotation is bool and default:
        marker = f"--no-{dashed}:"
        if marker not in help_text:
            raise TypeError(
                f"{where}: a boolean that is on by default needs its Attributes entry to say "
                f"what {marker[:-1]} does, as '...; {marker} <what it does>'"
            )
        return f"--no-{dashed}", {
            "action": "store_false",
            "default": True,
            "help": help_text.split(marker, 1)[1].strip(),
        }
    if annotation is bool:
        return f"--{dashed}", {"action": "store_true", "default": False, "help": help_text}
    value_type, extra = _value_type(annotation, where)
    shown = "" if default is None else f" (default: {_shown(default)})"
    return f"--{dashed}", {
        "type": value_type,
        "default": default,
        "help": help_text + shown,
        **extra,
    }


def config_flags(parser: argparse.ArgumentParser, cfg_cls: type) -> dict[str, argparse.Action]:
    """Add one flag per ``cfg_cls`` field (see the module docstring); field -> its action.

    Raises:
        TypeError: a field has no ``Attributes:`` entry, or a type with no flag form.
    """
    from experiments.study import CommonConfig

    docs = _field_help(cfg_cls)
    hints = typing.get_type_hints(cfg_cls)
    common = {f.name for f in fields(CommonConfig)}
    groups = {
        True: parser.add_argument_group("common"),
        False: parser.add_argument_group(parser.prog.split()[-1]),
    }
    actions: dict[str, argparse.Action] = {}
    for field in fields(cfg_cls):
        if not field.init:
            continue
        where = f"{cfg_cls.__module__}.{cfg_cls.__qualname__}.{field.name}"
        if field.name not in docs:
            raise TypeError(
                f"{where} has no entry in the docstring's Attributes: section; add one "
                "(it is the flag's help)"
            )
        flag, spec = _flag(field, hints[field.name], docs[field.name], where)
        spec.update(_FLAG_OVERRIDES.get(field.name, {}), help=spec["help"].replace("%", "%%"))
        group = groups[field.name in common]
        actions[field.name] = group.add_argument(flag, dest=field.name, **spec)
        if field.name in _EXTRA_FLAGS:
            extra_flag, extra = _EXTRA_FLAGS[field.name]
            group.add_argument(extra_flag, dest=field.name, **extra)
    return actions


def config_from_args(args: argparse.Namespace) -> tuple[Callable[[Any], Path], Any]:
    """(the function to run, its Config) for parsed experiment flags."""
    from experiments.study import ConfigError

    command = COMMANDS[args.command]
    module = command.load()
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
    if values.get("layer") == "all":
        if "every_layer" not in names:
            every = [n for n, c in COMMANDS.items() if "every_layer" in _field_names(c)]
            raise ConfigError(
                f"--layer all is only for {', '.join(every)}, not {args.command}; "
                "give a layer index"
            )
        values.update(layer=None, every_layer=True)
    cfg = cfg_cls(**values)
    if len(models) > 1:
        run_several = getattr(module, str(command.several_models))
        return lambda c: run_several(c, list(models)), cfg
    return module.main, cfg


def _field_names(command: Command) -> set[str]:
    return {f.name for f in fields(command.load().Config)}


def build_parser(flags_for: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``plip-nn`` parser; ``flags_for``: the experiments whose flags it adds (None: all).

    :func:`main` passes only the command being run, so no other experiment module is imported.
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

    an = sub.add_parser("analyze", help="statistics, report and figures from run directories")
    an.add_argument("run_dir", nargs="+", help="one run directory, or one per model")
    an.add_argument("--out", default=None, help="output directory (required for several runs)")

    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if flags_for is not None and name not in flags_for:
            continue
        actions = config_flags(p, command.load().Config)
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
    if args.command == "corpus":
        from experiments import corpus_cmd

        handlers: dict[str, Callable[..., int]] = {
            "check": lambda: corpus_cmd.cli_check(args.file),
            "annotate": lambda: corpus_cmd.cli_annotate(args.file, args.output),
            "convert": lambda: corpus_cmd.cli_convert(args.file, args.output),
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
