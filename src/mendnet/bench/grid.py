"""A recipe's [grid]: the axes of its cells (data sets, models, attacks, method columns, seeds) and the
cells added on each backdoored or clean model (Neural Cleanse detection, mend, the retuning attack, and
on a clean model AI-Lancet's general-defect experiment), checked against the registries and the recipe's
variants; and the names the grid reserves."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from mendnet.data.catalog import dataset_names
from mendnet.errors import MendnetError
from mendnet.models import architecture_names
from mendnet.registry import REPAIRS, ROBUSTIFIERS
from mendnet.threats.backdoor import TRIGGERS

CLEAN = "none"
"""The attack of a clean row: a base model trained without poisoning (its cells report no ASR)."""
NO_REPAIR = "none"
"""The method column of a backdoored (or clean) base model itself."""
NATURAL = "natural"
"""The method column (and attack) of the naturally trained base model of the robustifiers."""
DETECT = "detect"
"""The column of a base's Neural Cleanse detection cell."""
MEND = "mend"
"""The column of a base's `mendnet mend` cell."""
RETUNE = "retune"
"""The kind of a retuning-attack cell (its column is the repaired column it retunes)."""
DEFECTS = "defects"
"""The column of a clean base's general-defect cell (mendnet.bench.defects)."""
RESERVED = (NO_REPAIR, NATURAL, DETECT, MEND, RETUNE, DEFECTS, "all")
"""Names no variant may take."""

GRID_KEYS = (
    "data",
    "models",
    "attacks",
    "repairs",
    "robustifiers",
    "seeds",
    "detect",
    "mend",
    "retune",
    "defects",
)


@dataclass(frozen=True)
class Grid:
    """The axes of the grid. Repair cells: data × models × attacks × (none + repairs) × seeds, where
    "none" is the backdoored model itself (attack "none": a clean model). Robustifier cells: data × models
    × (natural + robustifiers) × seeds, where "natural" is the naturally trained model (also the teacher
    of methods that distil a natural teacher; methods that distil a robust one get the
    `run.robust_teacher` method's model). repairs and robustifiers name registered methods or variants.
    On each base of the attacks: a Neural Cleanse cell (detect), a `mendnet mend` cell (mend), and a
    retuning-attack cell for each column named in `retune` (repairs, or "mend"; backdoored rows only);
    on each clean base, AI-Lancet's general-defect cell (defects; mendnet.bench.defects)."""

    data: tuple[str, ...]
    models: tuple[str, ...]
    attacks: tuple[str, ...]
    repairs: tuple[str, ...]
    robustifiers: tuple[str, ...]
    seeds: tuple[int, ...]
    detect: bool = False
    mend: bool = False
    retune: tuple[str, ...] = ()
    defects: bool = False


def _names(
    value: Any, where: str, known: Collection[str] | None, every: Sequence[str] = ()
) -> tuple[str, ...]:
    """A list of names, each checked against `known` (None: not checked), or "all" for `every` (when
    given)."""
    if value == "all" and every:
        return tuple(every)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MendnetError(f"grid.{where} must be a list of names" + (' or "all"' if every else ""))
    if len(set(value)) != len(value):
        raise MendnetError(f"grid.{where} names a method twice: {value}")
    if known is not None:
        for name in value:
            if name not in known:
                raise MendnetError(f"grid.{where}: unknown {name!r}; known: {', '.join(known)}")
    return tuple(value)


def _flag(table: dict[str, Any], key: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise MendnetError(f"grid.{key} must be true or false, got {value!r}")
    return value


def _retune(table: dict[str, Any], repairs: tuple[str, ...], mend: bool) -> tuple[str, ...]:
    """The columns whose models the retuning attack is applied to: repair columns, or mend's."""
    chosen = _names(table.get("retune", []), "retune", None)
    for name in chosen:
        if name not in repairs and not (name == MEND and mend):
            columns = ", ".join([*repairs, *([MEND] if mend else [])]) or "none"
            raise MendnetError(
                f"grid.retune: {name!r} is not a repair column of the grid (columns: {columns})"
            )
    return chosen


def parse_grid(table: dict[str, Any], variants: dict[str, str]) -> Grid:
    """The Grid of a recipe's [grid] table; `variants` maps each variant to its registered method."""
    unknown = sorted(set(table) - set(GRID_KEYS))
    if unknown:
        raise MendnetError(f"grid: unknown key {', '.join(unknown)}; valid: {', '.join(GRID_KEYS)}")
    for key in ("data", "models", "seeds"):
        if key not in table:
            raise MendnetError(f"grid.{key} is missing")
    models = _names(table["models"], "models", None)
    for model in models:  # a user factory "module:factory" is checked when it is built
        if ":" not in model and model not in architecture_names():
            raise MendnetError(f"grid.models: unknown {model!r}; known: {', '.join(architecture_names())}")
    seeds = table["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise MendnetError("grid.seeds must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise MendnetError(f"grid.seeds repeats a seed: {seeds}")
    known = {
        registry_name: [*registry, *(v for v, m in variants.items() if m in registry)]
        for registry_name, registry in (("repairs", REPAIRS), ("robustifiers", ROBUSTIFIERS))
    }
    repairs = _names(table.get("repairs", []), "repairs", known["repairs"], tuple(REPAIRS))
    mend = _flag(table, "mend")
    grid = Grid(
        data=_names(table["data"], "data", dataset_names(), dataset_names()),
        models=models,
        attacks=_names(table.get("attacks", []), "attacks", [*TRIGGERS, CLEAN], tuple(TRIGGERS)),
        repairs=repairs,
        robustifiers=_names(
            table.get("robustifiers", []), "robustifiers", known["robustifiers"], tuple(ROBUSTIFIERS)
        ),
        seeds=tuple(seeds),
        detect=_flag(table, "detect"),
        mend=mend,
        retune=_retune(table, repairs, mend),
        defects=_flag(table, "defects"),
    )
    if not grid.data or not grid.models:
        raise MendnetError("grid.data and grid.models must name at least one each")
    if not grid.attacks and not grid.robustifiers:
        raise MendnetError("the grid has no cells: give grid.attacks (with repairs) or grid.robustifiers")
    for key, wanted in (("repairs", grid.repairs), ("detect", grid.detect), ("mend", grid.mend)):
        if wanted and not grid.attacks:
            raise MendnetError(f"grid.{key} needs grid.attacks (a backdoored or clean model to work on)")
    if grid.defects and CLEAN not in grid.attacks:
        raise MendnetError(f'grid.defects needs the clean row: add "{CLEAN}" to grid.attacks')
    if grid.retune and not [a for a in grid.attacks if a != CLEAN]:
        raise MendnetError("grid.retune needs a backdoor attack in grid.attacks (its trigger is retuned)")
    return grid
