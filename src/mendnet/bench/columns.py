"""The method columns of a recipe: every name of grid.repairs and grid.robustifiers (and the robust
teacher) as a `Column`: the registered method it runs, its Config, the repair column whose model is its
teacher, and whether its reversed trigger is the detect cell's.

A column is a registered method under its own name, set by `[repair.NAME]` or `[robustify.NAME]`, or a
named variant, set by `[variant.NAME]` with `method = "REGISTERED"`; both take the Config's fields and,
for a method whose registry entry says its teacher is optional (NAD's attention teacher, MCR's second
endpoint), `teacher = "COLUMN"`: that repair column's model on the same base and seed is the teacher; for
a method that repairs with a reversed trigger (registry `uses_trigger`: Neural Cleanse's unlearning,
AI-Lancet), `trigger = "detect"`: the reversed trigger of the base's detect cell (grid.detect), not one
the method reverses itself. The Config's `trigger` field (a file) takes no other value in a recipe: a
file's content would not be part of the cells' identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mendnet.bench.grid import DETECT, RESERVED, Grid
from mendnet.bench.settings import config_from_table, table
from mendnet.errors import MendnetError
from mendnet.registry import REPAIRS, ROBUSTIFIERS, Method

VARIANT_NAME = re.compile(r"[A-Za-z0-9]+([._-][A-Za-z0-9]+)*")
"""A variant's name: letters and digits joined by single '-', '_' or '.' (cell ids join names by '--')."""


@dataclass(frozen=True)
class Column:
    """A column of the grid: the registered method `method` run with `config`; teacher: the repair column
    whose model (same base, same seed) is the method's teacher, None for the method's own or none;
    trigger: DETECT when the method repairs with the base's detect cell's reversed trigger, None when it
    reverses its own (or uses none)."""

    method: str
    config: Any
    teacher: str | None = None
    trigger: str | None = None


def variant_methods(doc: dict[str, Any]) -> dict[str, str]:
    """Each `[variant.NAME]` of the recipe and the registered method it runs."""
    out = {}
    for name, settings in table(doc, "variant").items():
        where = f"[variant.{name}]"
        if not isinstance(settings, dict):
            raise MendnetError(f"{where} must be a table")
        if name in REPAIRS or name in ROBUSTIFIERS or name in RESERVED:
            raise MendnetError(
                f"{where}: {name!r} is already a method or column name; give the variant its own"
            )
        if not VARIANT_NAME.fullmatch(name):
            raise MendnetError(
                f"{where}: a variant's name is letters and digits joined by single '-', '_' or '.'"
            )
        method = settings.get("method")
        if method not in REPAIRS and method not in ROBUSTIFIERS:
            known = ", ".join([*REPAIRS, *ROBUSTIFIERS])
            raise MendnetError(f"{where}: unknown method {method!r} (give method = one of {known})")
        out[name] = method
    return out


def _trigger(method: Method, settings: dict[str, Any], where: str, detect: bool) -> str | None:
    """The `trigger` key of a column's settings (popped): DETECT, or None when absent."""
    trigger = settings.pop("trigger", None)
    if trigger is None:
        return None
    if not method.uses_trigger:
        users = ", ".join(n for n, m in REPAIRS.items() if m.uses_trigger)
        raise MendnetError(f"[{where}]: {method.name} uses no reversed trigger; only {users} do")
    if trigger != DETECT:
        raise MendnetError(
            f'[{where}]: trigger must be "{DETECT}" (the detect cell\'s reversed trigger), got {trigger!r}; '
            "a file's content would not be part of the cells' identity"
        )
    if not detect:
        raise MendnetError(f'[{where}]: trigger = "{DETECT}" needs grid.detect = true')
    if "label" in settings:
        raise MendnetError(
            f'[{where}]: with trigger = "{DETECT}" the detect cell chooses the label; drop label'
        )
    return trigger


def _column(
    registry: dict[str, Method], method: str, settings: dict[str, Any], where: str, detect: bool
) -> Column:
    """The column running `method` with the Config fields of `settings` and its `teacher` and `trigger`
    keys, if any; detect: whether the grid has detect cells."""
    settings = dict(settings)
    trigger = _trigger(registry[method], settings, where, detect)
    teacher = settings.pop("teacher", None)
    if teacher is not None:
        optional = [n for n, m in {**REPAIRS, **ROBUSTIFIERS}.items() if m.teacher == "optional"]
        if registry[method].teacher != "optional":
            raise MendnetError(
                f"[{where}]: {method} takes no teacher from a column; only methods whose teacher is "
                f"optional do ({', '.join(optional)})"
            )
        if not isinstance(teacher, str):
            raise MendnetError(f"[{where}]: teacher must name a repair column, got {teacher!r}")
    return Column(method, config_from_table(registry[method].config, settings, where), teacher, trigger)


def _check_teachers(columns: dict[str, Column], grid: Grid, variants: dict[str, str]) -> None:
    """Each teacher names another repair column of the grid, one that takes no teacher from a column."""
    for name, column in columns.items():
        teacher = column.teacher
        if teacher is None:
            continue
        where = f"[variant.{name}]" if name in variants else f"[repair.{name}]"
        if teacher not in grid.repairs:
            raise MendnetError(
                f"{where}: teacher {teacher!r} is not a column of grid.repairs ({', '.join(grid.repairs)})"
            )
        if teacher == name:
            raise MendnetError(f"{where}: a column cannot be its own teacher")
        if columns[teacher].teacher is not None:
            raise MendnetError(
                f"{where}: teacher {teacher!r} takes its own teacher from a column; chains are not supported"
            )


def _robust_teacher(columns: dict[str, Column], robust_teacher: str) -> None:
    """Add the robust teacher's column when a robustifier of the grid distils a robust teacher."""
    needs = [
        n
        for n, c in columns.items()
        if c.method in ROBUSTIFIERS and ROBUSTIFIERS[c.method].teacher == "robust"
    ]
    if not needs:
        return
    if robust_teacher not in columns:
        if robust_teacher not in ROBUSTIFIERS:
            raise MendnetError(f"run.robust_teacher: unknown robustifier {robust_teacher!r} (for {needs[0]})")
        columns[robust_teacher] = Column(robust_teacher, ROBUSTIFIERS[robust_teacher].config())
    method = columns[robust_teacher].method
    if method not in ROBUSTIFIERS or ROBUSTIFIERS[method].teacher is not None:
        raise MendnetError(f"run.robust_teacher: {robust_teacher!r} is not a robustifier that trains alone")


def method_columns(
    doc: dict[str, Any], grid: Grid, variants: dict[str, str], robust_teacher: str
) -> dict[str, Column]:
    """Column name → Column for every repair and robustifier of the grid and the robust teacher (when a
    robustifier needs one), from the recipe's [repair.*], [robustify.*] and [variant.*] tables."""
    columns: dict[str, Column] = {}
    for section, axis, chosen, registry in (
        ("repair", "repairs", grid.repairs, REPAIRS),
        ("robustify", "robustifiers", grid.robustifiers, ROBUSTIFIERS),
    ):
        tables = table(doc, section)
        for name, settings in tables.items():
            if name in variants:
                raise MendnetError(f"[{section}.{name}]: {name!r} is a variant; set it in [variant.{name}]")
            if name not in chosen and not (section == "robustify" and name == robust_teacher):
                raise MendnetError(f"[{section}.{name}]: {name!r} is not in grid.{axis}")
            if not isinstance(settings, dict):
                raise MendnetError(f"[{section}.{name}] must be a table")
        for name in dict.fromkeys([*chosen, *tables]):
            if name not in variants:
                columns[name] = _column(
                    registry, name, tables.get(name, {}), f"{section}.{name}", grid.detect
                )
    variant_tables = table(doc, "variant")
    for name, method in variants.items():
        registry, axis = (REPAIRS, "repairs") if method in REPAIRS else (ROBUSTIFIERS, "robustifiers")
        if name not in getattr(grid, axis) and name != robust_teacher:
            raise MendnetError(f"[variant.{name}]: {name!r} is not in grid.{axis}")
        settings = {k: v for k, v in variant_tables[name].items() if k != "method"}
        columns[name] = _column(registry, method, settings, f"variant.{name}", grid.detect)
    _check_teachers(columns, grid, variants)
    _robust_teacher(columns, robust_teacher)
    return columns
