"""Which cells of a grid a run computes: those without a finished record of their settings, those
computed by other code (unless stale cells are kept), those whose source or trigger cell is computed
again or made another output than the one they took, and those whose output (a model, a reversed trigger)
another cell takes but which is not stored (unless they refused to run, and so made none)."""

from __future__ import annotations

from dataclasses import dataclass

from mendnet.bench.cells import Cell
from mendnet.bench.inputs import REFUSED
from mendnet.bench.recipe import Recipe
from mendnet.bench.store import BenchStore


@dataclass
class Plan:
    """The cells to compute (in grid order: each cell before the cells that take its output), the ids
    of those finished with the current code, and of the stale ones kept."""

    todo: list[Cell]
    skipped: list[str]
    stale: list[str]


def taken_digest(record: dict, cell: Cell, taken: Cell) -> str | None:
    """The digest of `taken`'s output that `cell`'s record says it took (its source's weights, its
    trigger cell's reversed trigger), or None."""
    if taken == cell.source:
        return (record.get("source") or {}).get("weights")
    return (record.get("trigger") or {}).get("digest")


def plan_cells(recipe: Recipe, store: BenchStore, cells: list[Cell], keep_stale: bool) -> Plan:
    """Judge each of `cells` (module docstring) against `store`. A stale cell whose output a computed cell
    needs is computed again even with `keep_stale`, so every cell computed runs on the current code."""
    records = {cell: store.record(recipe, cell) for cell in cells}
    givers = {taken for cell in cells for taken in cell.takes}
    digests = {cell: store.digest(recipe, cell) for cell in givers}
    todo: set[Cell] = set()

    def must_run(cell: Cell) -> bool:
        record = records[cell]
        if record is None:
            return True
        if not store.is_current(record):
            return not keep_stale or any(cell in c.takes for c in todo)
        for taken in cell.takes:
            if taken in todo or taken_digest(record, cell, taken) != digests[taken]:
                return True
        return cell in givers and digests[cell] is None and REFUSED not in record["info"]

    changed = True
    while changed:  # a cell computed again can require its givers (kept stale) or its takers again
        changed = False
        for cell in cells:
            if cell not in todo and must_run(cell):
                todo.add(cell)
                changed = True
    current = [c for c in cells if c not in todo and store.is_current(records[c])]
    return Plan(
        todo=[c for c in cells if c in todo],
        skipped=[c.id for c in current],
        stale=[c.id for c in cells if c not in todo and c not in current],
    )
