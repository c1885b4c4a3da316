"""The CLI's flags come from the Config dataclasses: every field is a flag with the field's
default and its docstring help; the few flags that do more; one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import typing
from pathlib import Path

import pytest

from experiments import cli
from experiments.study import CommonConfig

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("scan", "calibrate", "knockout", "steer", "generate", "heads", "triangle")


def _config_cls(cmd: str) -> type:
    return importlib.import_module(f"experiments.{cmd}").Config


def _parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def _doc_entries(cls: type) -> dict[str, str]:
    """Field -> its ``Attributes:`` text in the docstrings of cls and its bases (subclass wins),
    read with a regex of its own, markup removed, whitespace collapsed."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = klass.__dict__.get("__doc__") or ""
        section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
        for name, text in re.findall(r"^ {8}(\w+): (.*?)(?=^ {8}\w+: |\Z)", section, re.M | re.S):
            text = re.sub(r":\w+:`([^`]+)`", r"\1", text).replace("``", "")
            found[name] = " ".join(text.split()).rstrip(".")
    return found


def test_the_command_table_names_every_experiment():
    assert tuple(cli.COMMANDS) == EXPERIMENTS
    for cmd, command in cli.COMMANDS.items():
        module = command.module
        assert module.__name__ == f"experiments.{cmd}" and callable(module.main)


@pytest.mark.parametrize("cmd", EXPERIMENTS)
def test_no_flags_give_the_default_config(cmd):
    run, cfg = cli.config_from_args(_parse(cmd))
    assert cfg == _config_cls(cmd)()  # the dataclass's own defaults
    assert run is importlib.import_module(f"experiments.{cmd}").main


def _example(field: dataclasses.Field, annotation) -> tuple[list[str], object]:
    """Flags that set ``field`` to something other than its default, and the parsed value."""
    name = "--" + field.name.replace("_", "-")
    if annotation is bool:
        return ([f"--no-{name[2:]}"] if field.default else [name]), not field.default
    if typing.get_origin(annotation) is tuple:
        if typing.get_args(annotation)[0] is float:
            return [name, "0.25", "8"], [0.25, 8.0]
        if typing.get_args(annotation)[0] is int:
            return [name, "4", "7"], [4, 7]
        return [name, "a", "b"], ["a", "b"]
    base = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if base[0] is int:
        return [name, str((field.default or 0) + 3)], (field.default or 0) + 3
    if base[0] is float:
        return [name, "0.25"], 0.25
    return [name, "x-value"], "x-value"


@pytest.mark.parametrize("cmd", EXPERIMENTS)
def test_every_field_is_a_flag_of_its_type(cmd):
    cls = _config_cls(cmd)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        argv, expected = _example(field, hints[field.name])
        value = getattr(_parse(cmd, *argv), field.name)
        if field.name == "model":  # repeats: one entry per --model
            expected = [expected]
        assert value == expected, (cmd, argv, value)


def test_flags_build_the_config():
    from experiments import conditions

    def cfg(*argv):
        return cli.config_from_args(_parse(*argv))[1]

    knockout = _config_cls("knockout")
    assert cfg("knockout", "--layer", "all", "--window", "2", "--kinds", "test") == knockout(
        every_layer=True, window=2, kinds=("test",)
    )
    assert cfg("knockout", "--every-layer").every_layer
    scan = cfg("scan", "--kinds", "generation", "--seed", "3", "--remote", "local", "--dtype",
               "bfloat16", "--limit", "2", "--corpus", "c.json", "--out", "o", "--resume",
               "--allow-code-change", "--chat-template", "--skip-masked", "--device-map", "auto",
               "--no-progress", "--batch-size", "5", "--languages", "rust", "--layer", "1",
               "--device", "cpu", "--model", "m")  # fmt: skip
    assert scan == _config_cls("scan")(
        kinds=("generation",), seed=3, remote="local", dtype="bfloat16", limit=2,
        corpus="c.json", out="o", resume=True, allow_code_change=True, chat_template=True,
        skip_masked=True, device_map="auto", progress=False, batch_size=5,
        languages=("rust",), layer=1, device="cpu", model="m",
    )  # fmt: skip
    steer = cfg("steer", "--factors", "0.5", "2", "--no-calibrated", "--languages", "python")
    assert steer == _config_cls("steer")(
        factors=(0.5, 2.0), calibrated=False, languages=("python",)
    )
    gen = cfg("generate", "--conditions", "baseline", "scale_2", "--sample", "--temperature",
              "0.5", "--max-new-tokens", "7", "--no-execute", "--rows", "continuation",
              "--targets", "plip")  # fmt: skip
    assert gen == _config_cls("generate")(
        conditions=("baseline", "scale_2"), sample=True, temperature=0.5, max_new_tokens=7,
        execute="off", rows="continuation", targets="plip",
    )  # fmt: skip
    assert cfg("triangle", "--execute", "unsafe").execute == "unsafe"
    tri = cfg("triangle", "--no-generation", "--no-plip-scope", "--no-execute", "--draws", "2",
              "--knockout-rows", "marker", "continuation", "--layer-scopes", "all", "window",
              "--window", "3", "--margin", "0.05", "--alpha", "0.01")  # fmt: skip
    assert tri == _config_cls("triangle")(
        generation=False, plip_scope=False, execute="off", draws=2,
        knockout_rows=("marker", "continuation"), layer_scopes=("all", "window"), window=3,
        margin=0.05, alpha=0.01,
    )  # fmt: skip
    assert cfg("generate").conditions[:2] == ("baseline", conditions.KNOCKOUT)


def test_several_models_run_one_sub_run_each(monkeypatch):
    import experiments.triangle as triangle

    calls = []
    monkeypatch.setattr(triangle, "main_models", lambda cfg, models: calls.append((cfg, models)))
    run, cfg = cli.config_from_args(_parse("triangle", "--model", "a", "--model", "b"))
    assert cfg == triangle.Config(model="a")
    run(cfg)
    assert calls == [(cfg, ["a", "b"])]


@pytest.mark.parametrize("cmd", EXPERIMENTS)
def test_help_is_the_docstring(cmd, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag
    with pytest.raises(SystemExit) as exit_:
        _parse(cmd, "--help")
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    cls = _config_cls(cmd)
    docs = _doc_entries(cls)
    for field in dataclasses.fields(cls):
        if field.default is True:  # --no-X: the help says what the flag does
            flag = "--no-" + field.name.replace("_", "-")
            said = docs[field.name].split(f"{flag}:", 1)[1].strip().rstrip(".")
            assert f"{flag} {said}" in text, (cmd, field.name)
            assert "on by default" not in text
            continue
        assert docs[field.name] in text, (cmd, field.name)
        if field.default not in (None, True, False):
            shown = (
                " ".join(map(str, field.default))
                if isinstance(field.default, tuple)
                else field.default
            )
            assert f"{docs[field.name]} (default: {shown})" in text, (cmd, field.name)  # fmt: skip
    assert "HF name or local path" in text and "rows per forward pass (default: 32)" in text
    assert "--no-progress hide the progress bars" in text


def test_hand_picked_help_lines(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    for cmd in ("knockout", "steer", "triangle"):
        with pytest.raises(SystemExit):
            _parse(cmd, "--help")
    out = capsys.readouterr().out
    assert "--window WINDOW       width of the windows of the layer sweep (0: no sweep) (default: 2)" in out  # fmt: skip
    assert "Scale factors of the dose-response curve (default: 0.5 2.0 3.0 4.0 6.0)" in out
    assert "--margin MARGIN       the smallest preservation change of interest" in out
    assert "--no-execute          same as --execute off" in out
    assert "repeat it for several models" in out  # triangle's --model


def test_a_new_documented_field_becomes_a_flag():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithParts(CommonConfig):
        """A config with one more field.

        Attributes:
            part_rows: rows per part file;
                a second line.
        """

        part_rows: int = 64

    parser = argparse.ArgumentParser(prog="plip-nn x")
    actions = cli.experiment_flags(parser, WithParts)
    assert actions["part_rows"].option_strings == ["--part-rows"]
    assert actions["part_rows"].help == "rows per part file; a second line (default: 64)"
    assert parser.parse_args([]).part_rows == 64
    assert parser.parse_args(["--part-rows", "9"]).part_rows == 9


def test_an_undocumented_field_is_refused():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Undocumented(CommonConfig):
        """No entry for the new field."""

        secret: int = 1

    with pytest.raises(TypeError, match=r"Undocumented\.secret has no entry"):
        cli.experiment_flags(argparse.ArgumentParser(prog="plip-nn x"), Undocumented)


BAD = [
    ("knockout", ["--batch-size", "x"], "--batch-size"),
    ("steer", ["--factors", "0"], "--factors"),
    ("steer", ["--factors"], "--factors"),
    ("knockout", ["--window", "-1"], "--window"),
    ("knockout", ["--every-layer", "--layer", "1"], "--layer all and --layer N"),
    ("generate", ["--max-new-tokens", "0"], "--max-new-tokens"),
    ("generate", ["--temperature", "0"], "--temperature"),
    ("generate", ["--source-policy", "nope"], "--source-policy"),
    ("triangle", ["--source-policy", "bad"], "--source-policy"),  # shared GenerationFlags
    ("scan", ["--kinds", "nope"], "--kinds"),
    ("steer", ["--layer", "all"], "every layer separately is `plip-nn knockout --layer all`"),
    ("knockout", ["--model", "a", "--model", "b"], "for triangle only, not knockout"),
    ("triangle", ["--execute", "yes"], "--execute"),
    ("triangle", ["--languages", "python"], "--languages"),
    ("scan", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ("calibrate", ["--window", "2"], "unrecognized arguments: --window"),
]


@pytest.mark.parametrize(("cmd", "argv", "says"), BAD, ids=[" ".join(b[1]) for b in BAD])
def test_bad_values_exit_2_with_one_line(cmd, argv, says, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main([cmd, "--out", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert says in err and err.startswith(("plip-nn: error", f"plip-nn {cmd}: error")), err
    assert not out.exists()


def test_readme_lists_the_verified_architectures():
    from plip_nn.models import VERIFIED_ARCHITECTURES

    readme = (ROOT / "README.md").read_text()
    [listed] = re.findall(r"Supported and tested: ([^.]*)\.", readme)
    assert [a.strip() for a in listed.split(",")] == list(VERIFIED_ARCHITECTURES)


def test_when_to_scan_is_decided_once():
    """resolve_layer and generate's choice of corpus kinds share experiments.calibrate.needs_scan."""
    from experiments import generate
    from experiments.calibrate import needs_scan

    assert needs_scan(None, calibration=False)  # no --layer: the scan's peak
    assert not needs_scan(1, calibration=False)
    assert needs_scan(1, calibration=True) and needs_scan(1, calibration=False, always_scan=True)
    assert generate.needs_scan is needs_scan
