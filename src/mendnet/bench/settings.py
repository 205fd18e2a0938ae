"""Read a recipe's TOML tables: a sub-table with a one-line error when it is not one, and a method's
frozen `Config` dataclass built from a table with one-line errors naming the table."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from mendnet.errors import MendnetError


def _convert(kind: Any, value: Any, where: str) -> Any:
    """`value` (as TOML gives it) as the field type `kind` wants: lists become tuples, ints floats."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return _convert(options[0], value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise MendnetError(f"{where} must be a list, got {value!r}")
        inner = typing.get_args(kind)[0]
        return tuple(_convert(inner, v, where) for v in value)
    if kind is bool:
        if not isinstance(value, bool):
            raise MendnetError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise MendnetError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MendnetError(f"{where} must be an integer, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise MendnetError(f"{where} must be a string, got {value!r}")
        return value
    raise MendnetError(f"{where}: settings of type {kind} cannot be given in a recipe")


def config_from_table(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """`cls(**table)` with each value checked against the field's type.

    where: the table's name in messages, e.g. "repair.nad". Unknown keys are one error that lists the
    valid ones; the Config's own validation errors (ValueError, TypeError, MendnetError) keep their text.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise MendnetError(
            f"{where}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid: {', '.join(names)}"
        )
    values = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in table.items()}
    try:
        return cls(**values)
    except MendnetError as e:
        raise MendnetError(f"{where}: {e}") from e
    except (TypeError, ValueError) as e:
        raise MendnetError(f"{where}: invalid settings: {e}") from e


def table(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The sub-table `key` of a TOML document or table (empty when absent; an error when not a table)."""
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise MendnetError(f"[{key}] must be a table")
    return value
