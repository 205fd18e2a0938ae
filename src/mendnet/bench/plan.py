"""Which cells of a grid a run computes: those without a finished record of their settings, those
computed by other code (unless stale cells are kept), those whose source cell's model is computed again
or differs from the one they took, and those whose model another cell takes but which is not stored."""

from __future__ import annotations

from dataclasses import dataclass

from mendnet.bench.cells import Cell
from mendnet.bench.recipe import Recipe
from mendnet.bench.store import BenchStore


@dataclass
class Plan:
    """The cells to compute (in grid order: each source before the cells that take its model), the ids
    of those finished with the current code, and of the stale ones kept."""

    todo: list[Cell]
    skipped: list[str]
    stale: list[str]


def plan_cells(recipe: Recipe, store: BenchStore, cells: list[Cell], keep_stale: bool) -> Plan:
    """Judge each of `cells` (module docstring) against `store`. A stale cell whose model a computed cell
    needs is computed again even with `keep_stale`, so every cell computed runs on the current code."""
    records = {cell: store.record(recipe, cell) for cell in cells}
    sources = {cell.source for cell in cells if cell.source is not None}
    digests = {cell: store.model_digest(recipe, cell) for cell in sources}
    todo: set[Cell] = set()

    def must_run(cell: Cell) -> bool:
        record = records[cell]
        if record is None:
            return True
        if not store.is_current(record):
            return not keep_stale or any(c.source == cell for c in todo)
        if cell.source is not None:
            taken = (record.get("source") or {}).get("weights")
            if cell.source in todo or taken != digests[cell.source]:
                return True
        return cell in sources and digests[cell] is None

    changed = True
    while changed:  # a cell computed again can require its source (kept stale) or its takers again
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
