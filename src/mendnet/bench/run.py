"""`mendnet bench`: plan a recipe's grid against its output folder, compute the unfinished cells with an
engine, and write the results (results.csv, results.json, tables.md)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mendnet.artefact import atomic_write_bytes, atomic_write_json
from mendnet.bench.cells import Cell, enumerate_cells
from mendnet.bench.docs import write_section
from mendnet.bench.engines import run_local, run_ray
from mendnet.bench.recipe import Recipe
from mendnet.bench.results import markdown_tables, tidy_csv
from mendnet.bench.store import BenchStore
from mendnet.errors import MendnetError
from mendnet.progress import console


@dataclass
class BenchSummary:
    """What one run did: cells computed now, cells already finished, cells left (by --max-cells)."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def run_bench(
    recipe: Recipe,
    out: str | Path,
    *,
    engine: str = "local",
    ray_address: str | None = None,
    max_cells: int | None = None,
    progress: bool = True,
) -> BenchSummary:
    """Compute every unfinished cell of `recipe` into `out` (at most `max_cells` of them) and write the
    results of all finished cells. engine: "local" (this process) or "ray"."""
    if engine not in ("local", "ray"):
        raise MendnetError(f"unknown engine {engine!r}; choose local or ray")
    if max_cells is not None and max_cells < 0:
        raise MendnetError(f"--max-cells must be ≥ 0, got {max_cells}")
    start = time.perf_counter()
    store = BenchStore(Path(out))
    cells = enumerate_cells(recipe)
    summary = BenchSummary()
    todo: list[Cell] = []
    for cell in cells:
        if store.record(recipe, cell) is not None:
            summary.skipped.append(cell.id)
        else:
            todo.append(cell)
    if max_cells is not None:
        todo, rest = todo[:max_cells], todo[max_cells:]
        summary.missing = [c.id for c in rest]
    total = len(todo)

    def report(cell: Cell, record: dict) -> None:
        summary.computed.append(cell.id)
        if progress:
            m = record["metrics"]
            shown = ", ".join(f"{k} {100 * m[k]:.2f}%" for k in ("acc", "asr") if k in m)
            seconds = record["cell_seconds"]
            console.print(f"[{len(summary.computed)}/{total}] {cell.id}: {shown} ({seconds:.0f} s)")

    if todo:
        if engine == "ray":
            run_ray(recipe, store, todo, report, ray_address)
        else:
            run_local(recipe, store, todo, report, progress)
    summary.records = [r for c in cells if (r := store.record(recipe, c)) is not None]
    summary.seconds = time.perf_counter() - start
    write_results(recipe, store.root, summary.records, len(cells))
    return summary


def section_text(recipe: Recipe, records: list[dict], total: int) -> str:
    """The Markdown of a recipe's results: heading, description, settings line, tables."""
    run = recipe.run
    lines = [f"## {recipe.title}", ""]
    if recipe.description:
        lines += [recipe.description, ""]
    lines += [
        f"`mendnet bench`, recipe `{recipe.name}`, {time.strftime('%Y-%m-%d')}, device {run.device}, "
        f"{run.threads} thread(s) per cell, torch {torch.__version__}; {len(records)} of {total} cells; "
        f"training subset {run.train_subset or 'all'}, test images {run.test_images or 'all'}, "
        f"defender data {run.clean_fraction:.0%}. Percent.",
        "",
        markdown_tables(recipe, records) if records else "(no finished cells)",
    ]
    return "\n".join(lines)


def write_results(recipe: Recipe, root: Path, records: list[dict], total: int) -> None:
    """results.json (every finished record), results.csv (tidy) and tables.md in `root`."""
    atomic_write_json(
        root / "results.json",
        {
            "recipe": recipe.name,
            "title": recipe.title,
            "cells": total,
            "finished": len(records),
            "records": records,
        },
    )
    atomic_write_bytes(root / "results.csv", tidy_csv(records).encode())
    atomic_write_bytes(root / "tables.md", (section_text(recipe, records, total) + "\n").encode())


def write_doc_section(recipe: Recipe, root: Path, doc: Path, section: str | None = None) -> None:
    """Write the results in `root` as section `section` (default: the recipe's name) of `doc`."""
    data = json.loads((root / "results.json").read_text())
    write_section(section or recipe.name, section_text(recipe, data["records"], data["cells"]), doc)
