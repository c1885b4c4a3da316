"""Command-line flags from a config dataclass: the one helper the CLI and the scripts share.

One flag per field (``batch_size`` -> ``--batch-size``) with the field's default, a type from its
annotation (``tuple[X, ...]`` takes one or more values, ``Literal[...]`` gives choices) and, as
help, the field's entry in the ``Attributes:`` section of the docstring; a boolean that is on
by default is turned off with ``--no-<name>``, whose help is what the entry says after
``--no-<name>:`` (required). A config class may name a parser for a flag whose annotation is not
enough (``FLAG_TYPES``: field -> ``str -> value``; knockout's ``--layer`` also takes ``all``).
Stdlib only: importing it loads no model.
"""

from __future__ import annotations

import argparse
import inspect
import re
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

__all__ = ["config_flags", "field_help"]

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


def field_help(cfg_cls: type) -> dict[str, str]:
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
    elif annotation in (int, float, str, Path):
        return annotation, {}
    raise TypeError(
        f"{where}: no flag for type {annotation!r}; use int, float, str, Path, bool, "
        "X | None, tuple[X, ...] or Literal[...] (or set the field another way: exclude)"
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


def config_flags(
    parser: argparse.ArgumentParser,
    cfg_cls: type,
    *,
    common: Collection[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    exclude: Collection[str] = (),
) -> dict[str, argparse.Action]:
    """Add one flag per ``cfg_cls`` field (see the module docstring); field -> its action.

    Args:
        parser: where the flags go: fields named in ``common`` in a group "common", the
            others in a group named after the parser's last word of ``prog``.
        cfg_cls: the config dataclass.
        common: fields shared by several commands.
        overrides: field -> ``add_argument`` keywords that replace the derived ones.
        exclude: fields with no flag of their own (the caller sets them from other flags).

    Raises:
        TypeError: a field has no ``Attributes:`` entry, or a type with no flag form.
    """
    docs = field_help(cfg_cls)
    hints = typing.get_type_hints(cfg_cls)
    parsers: Mapping[str, Any] = getattr(cfg_cls, "FLAG_TYPES", {})
    overrides = overrides or {}
    groups: dict[bool, Any] = {}
    actions: dict[str, argparse.Action] = {}
    for field in fields(cfg_cls):
        if not field.init or field.name in exclude:
            continue
        where = f"{cfg_cls.__module__}.{cfg_cls.__qualname__}.{field.name}"
        if field.name not in docs:
            raise TypeError(
                f"{where} has no entry in the docstring's Attributes: section; add one "
                "(it is the flag's help)"
            )
        flag, spec = _flag(field, hints[field.name], docs[field.name], where)
        if field.name in parsers:
            spec["type"] = parsers[field.name]
        spec.update(overrides.get(field.name, {}), help=spec["help"].replace("%", "%%"))
        shared = field.name in common
        if shared not in groups:  # "common" first when the first field is common
            title = "common" if shared else parser.prog.split()[-1]
            groups[shared] = parser.add_argument_group(title)
        actions[field.name] = groups[shared].add_argument(flag, dest=field.name, **spec)
    return actions
