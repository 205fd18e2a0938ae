"""Generate argparse flags from a frozen config dataclass, and parse them back into that dataclass.

Field `batch_size` becomes `--batch-size`; bools get `--x/--no-x`; tuples take several values;
numbers accept fractions such as `8/255`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any

from mendnet.errors import MendnetError


def parse_number(text: str) -> float:
    """A float from `0.03`, `8/255` or `1e-3`; anything else is an argparse error."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError) as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


METAVARS: dict[Any, str] = {int: "N", float: "X", str: "NAME"}  # as the attack flags of `mendnet attack`


def metavar(kind: Any, name: str = "") -> str:
    """What --help shows for a value of field `name` of type `kind` (N, X, NAME, or PATH for a text
    field that names a file or folder) instead of the dest's CFG_FIELD."""
    if kind is str and name.endswith(("trigger", "path", "dir", "file")):
        return "PATH"
    return METAVARS.get(kind, "VALUE")


def field_doc(cls: type, name: str) -> str:
    default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
    return f"(default: {default})"


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, group_title: str | None = None) -> None:
    """One flag per field of the dataclass `cls`, defaults taken from the class."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(group_title or f"{cls.__module__.rsplit('.', 1)[-1]} settings")
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        origin = typing.get_origin(kind)
        dest = f"cfg_{f.name}"
        doc = field_doc(cls, f.name)
        if kind is bool:
            group.add_argument(
                flag(f.name),
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=doc,
            )
        elif origin is tuple:
            inner = typing.get_args(kind)[0]
            group.add_argument(
                flag(f.name),
                dest=dest,
                nargs="*",
                default=f.default,
                type=parse_number if inner is float else inner,
                metavar=metavar(inner, f.name),
                help=doc,
            )
        elif kind is float:
            group.add_argument(
                flag(f.name), dest=dest, type=parse_number, default=f.default, metavar=metavar(kind), help=doc
            )
        elif kind in (int, str):
            group.add_argument(
                flag(f.name), dest=dest, type=kind, default=f.default, metavar=metavar(kind, f.name), help=doc
            )
        elif origin in (typing.Union, types.UnionType):
            inner = next(a for a in typing.get_args(kind) if a is not type(None))
            group.add_argument(
                flag(f.name),
                dest=dest,
                type=parse_number if inner is float else inner,
                default=f.default,
                metavar=metavar(inner, f.name),
                help=doc,
            )
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported config type {kind}")


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """Build the dataclass from parsed flags (tuples converted back from lists)."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f"cfg_{f.name}")
        values[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise MendnetError(f"invalid settings: {e}") from e
