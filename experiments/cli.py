"""``plip-nn``: the command line. It only parses flags into configs and maps errors to exit codes.

Exit codes: 0 ok; 2 bad input (one line on stderr saying what and how to fix it); 1 any other
failure (environment faults such as a read-only or full disk, a failed edit verification);
130 interrupted (Ctrl-C; finished chunks are kept, rerun with ``--resume``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

EXPERIMENTS = ("scan", "calibrate", "knockout", "steer", "generate", "triangle")

# Architectures (HF ``model_type``) whose attention sites resolve structurally and whose edits
# are checked against a hand-written attention reference in tests/test_engine.py.
VERIFIED_ARCHITECTURES = (
    "qwen2",
    "qwen3",
    "llama",
    "mistral",
    "starcoder2",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "gpt2",
    "gpt_neox",
    "olmo2",
    "granite",
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"plip-nn {self.prog.split()[-1]}: error: {message} (see --help)\n")


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


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("common")
    g.add_argument(
        "--model",
        action="append",
        default=None,
        help="HF name or local path (default: embedded); triangle takes several, one sub-run each",
    )
    g.add_argument("--corpus", default=None, help="corpus JSON (default: the shipped corpus)")
    g.add_argument("--out", default=None, help="run directory (default: runs/<cmd>-<time>)")
    g.add_argument("--remote", default="none", help="none | local | ndif (key: NDIF_API_KEY)")
    g.add_argument("--device", default="auto", help="torch device; auto = cuda when present")
    g.add_argument("--dtype", default="float32", help="float32 | float16 | bfloat16 | auto")
    g.add_argument("--batch-size", type=int, default=8, help="rows per forward pass")
    g.add_argument("--layer", type=_layer, default=None, help="layer (default: scan peak)")
    g.add_argument("--seed", type=int, default=0, help="seed for controls and sampling")
    g.add_argument("--resume", action="store_true", help="continue an existing run directory")
    g.add_argument(
        "--allow-code-change",
        action="store_true",
        help="with --resume: continue a run started by another git commit / version (recorded)",
    )
    g.add_argument("--limit", type=int, default=None, help="samples per language and kind")
    g.add_argument("--languages", nargs="+", default=["python", "rust"], help="python and/or rust")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g.add_argument(
        "--device-map", default=None, help="transformers device_map (auto: spread over GPUs)"
    )
    g.add_argument(
        "--chat-template",
        action="store_true",
        help="wrap samples in the tokenizer's chat template (instruct models)",
    )
    g.add_argument(
        "--skip-masked",
        action="store_true",
        help="drop samples whose edges are causally masked (listed in manifest and report)",
    )


def _gen_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--source-policy", default="markers", help="markers | continuation")
    p.add_argument(
        "--execute",
        choices=("auto", "sandbox", "off", "unsafe"),
        default="auto",
        help="run generated tests: auto = in the bubblewrap sandbox when available, else not "
        "(noted); sandbox = required; off; unsafe = without a sandbox (explicit opt-in)",
    )
    p.add_argument("--no-execute", action="store_true", help="same as --execute off")


def build_parser() -> argparse.ArgumentParser:
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

    p = sub.add_parser("scan", help="marker->function attention at every layer")
    _common(p)
    p.add_argument("--kinds", nargs="+", default=["test", "baseline"])

    p = sub.add_parser("calibrate", help="SetValue / Scale that lift Rust to the Python level")
    _common(p)

    p = sub.add_parser("knockout", help="knockout + random-edge control (--layer all: per layer)")
    _common(p)
    p.add_argument("--window", type=int, default=1, help="half-width of the window condition")
    p.add_argument("--kinds", nargs="+", default=["test", "baseline"])

    p = sub.add_parser("steer", help="dose-response: Scale factors and calibrated SetValue")
    _common(p)
    p.add_argument("--factors", type=float, nargs="+", default=[0.5, 1, 2, 3, 4, 6])
    p.add_argument("--no-set-value", action="store_true")

    p = sub.add_parser("generate", help="generation with edits at every step (KV cache)")
    _common(p)
    _gen_flags(p)
    p.add_argument("--conditions", nargs="+", default=None, help="condition names")
    p.add_argument("--sample", action="store_true", help="seeded sampling instead of greedy")
    p.add_argument("--temperature", type=float, default=1.0)

    p = sub.add_parser("triangle", help="the whole study (the main job)")
    _common(p)
    _gen_flags(p)
    p.add_argument("--no-generation", action="store_true", help="single passes only")
    p.add_argument("--no-dose-response", action="store_true")
    return parser


def _config(args: argparse.Namespace) -> Any:
    """Build the experiment's Config from parsed flags."""
    import importlib

    module = importlib.import_module(f"experiments.{args.command}")
    cfg_cls = module.Config
    layer = args.layer
    extra: dict[str, Any] = {}
    if layer == "all":
        if args.command != "knockout":
            from experiments.study import ConfigError

            raise ConfigError(f"--layer all is only for knockout, not {args.command}")
        layer = None
        extra["every_layer"] = True
    models = args.model or ["embedded"]
    if len(models) > 1 and args.command != "triangle":
        from experiments.study import ConfigError

        raise ConfigError(f"several --model values are for triangle only, not {args.command}")
    common = {
        "model": models[0],
        "corpus": args.corpus,
        "out": args.out,
        "remote": args.remote,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "layer": layer,
        "seed": args.seed,
        "resume": args.resume,
        "limit": args.limit,
        "languages": tuple(args.languages),
        "progress": not args.no_progress,
        "chat_template": args.chat_template,
        "allow_code_change": args.allow_code_change,
        "skip_masked": args.skip_masked,
        "device_map": args.device_map,
    }
    if args.command in ("scan", "knockout"):
        extra["kinds"] = tuple(args.kinds)
    if args.command == "knockout":
        extra["window"] = args.window
    if args.command == "steer":
        extra["factors"] = tuple(args.factors)
        extra["set_value"] = not args.no_set_value
    if args.command in ("generate", "triangle"):
        extra["max_new_tokens"] = args.max_new_tokens
        extra["source_policy"] = args.source_policy
        extra["execute"] = "off" if args.no_execute else args.execute
    if args.command == "generate":
        if args.conditions is not None:
            extra["conditions"] = tuple(args.conditions)
        extra["sample"] = args.sample
        extra["temperature"] = args.temperature
    if args.command == "triangle":
        extra["generation"] = not args.no_generation
        extra["dose_response"] = not args.no_dose_response
        if len(models) > 1:
            cfg = cfg_cls(**common, **extra)
            return lambda c: module.main_models(c, models), cfg
    return module.main, cfg_cls(**common, **extra)


def _models() -> int:
    from plip_nn.embedded import EMBEDDED_MODEL_DIR, EMBEDDED_MODEL_NAME

    print("Embedded model (default --model):")
    status = "present" if (EMBEDDED_MODEL_DIR / "config.json").exists() else "MISSING"
    print(f"  {EMBEDDED_MODEL_NAME}  ({status}: {EMBEDDED_MODEL_DIR})")
    card = EMBEDDED_MODEL_DIR.parent / "MODEL_CARD.md"
    if card.exists():
        print(f"  model card: {card}")
    print("Architectures verified against a hand-written attention reference (HF model_type):")
    for arch in VERIFIED_ARCHITECTURES:
        print(f"  {arch}")
    print(
        "Other decoder-only HF models work when their attention sites resolve structurally; "
        "loading checks this and fails with a clear error otherwise."
    )
    return 0


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from experiments.study import ConfigError
    from plip_nn.edits import EditSpecError
    from plip_nn.models import ModelLoadError, UnsupportedArchitectureError
    from plip_nn.runs import RunDirError
    from plip_nn.trace import RemoteConfigError

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
    if args.command == "analyze":
        from analysis.report import cli_analyze

        return cli_analyze([Path(p) for p in args.run_dir], out=args.out)
    run_main, cfg = _config(args)
    out = run_main(cfg)
    print(out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``plip-nn`` console script; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="plip-nn: %(levelname)s: %(message)s")
    _quiet_libraries()
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a flag error (2, message already printed)
        return int(exc.code) if isinstance(exc.code, int) else 2
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
