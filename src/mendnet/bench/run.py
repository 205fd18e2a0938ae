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
from mendnet.bench.code import short_code
from mendnet.bench.docs import Provenance, write_section
from mendnet.bench.engines import needed_bases, run_local, run_ray
from mendnet.bench.inputs import REFUSED
from mendnet.bench.markdown import STALE
from mendnet.bench.plan import plan_cells
from mendnet.bench.recipe import Recipe
from mendnet.bench.results import markdown_tables, tidy_csv
from mendnet.bench.run_settings import VALIDATION, RunSettings
from mendnet.bench.store import BenchStore
from mendnet.data.tuning import TUNING_SEED, VALIDATION_IMAGES
from mendnet.device import resolve_device
from mendnet.errors import MendnetError
from mendnet.progress import console


@dataclass
class BenchSummary:
    """What one run did: cells computed now (stale ones included), cells already finished with the
    current code, stale cells kept (by keep_stale), cells left (by max_cells), cells that failed (id →
    the cause: the base or cell that failed first, and its error; `engines`)."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def run_bench(
    recipe: Recipe,
    out: str | Path,
    *,
    engine: str = "local",
    ray_address: str | None = None,
    max_cells: int | None = None,
    keep_stale: bool = False,
    progress: bool = True,
) -> BenchSummary:
    """Compute every unfinished cell of `recipe` into `out` (at most `max_cells` of them) and write the
    results of all finished cells. engine: "local" (this process) or "ray". A finished cell computed by
    other code (mendnet.bench.code) is recomputed, or with `keep_stale` kept and marked stale; a cell
    whose source cell is computed again is recomputed too (mendnet.bench.plan). A cell that fails, or
    needs a base or cell that failed, is left out and listed in the summary's `failed`; the others are
    computed (mendnet.bench.engines)."""
    if engine not in ("local", "ray"):
        raise MendnetError(f"unknown engine {engine!r}; choose local or ray")
    if max_cells is not None and max_cells < 0:
        raise MendnetError(f"--max-cells must be ≥ 0, got {max_cells}")
    start = time.perf_counter()
    store = BenchStore(Path(out))
    cells = enumerate_cells(recipe)
    plan = plan_cells(recipe, store, cells, keep_stale)
    summary = BenchSummary(skipped=plan.skipped, stale=plan.stale)
    todo = plan.todo
    clash = store.clash(recipe, todo, needed_bases(recipe, todo))
    if clash is not None:
        raise MendnetError(
            f"{out} holds the {clash} with other settings; running {recipe.name} there would overwrite "
            "it: use another --out"
        )
    if max_cells is not None:
        todo, rest = todo[:max_cells], todo[max_cells:]
        summary.missing = [c.id for c in rest]
    total = len(todo)

    def counted() -> str:
        return f"[{len(summary.computed) + len(summary.failed)}/{total}]"

    def report(cell: Cell, record: dict) -> None:
        summary.computed.append(cell.id)
        if progress:
            m = record["metrics"]
            shown = ", ".join(f"{k} {100 * m[k]:.2f}%" for k in ("acc", "asr", "retune_asr") if k in m)
            refused = record["info"].get(REFUSED)
            shown = shown or (f"refused: {refused}" if refused is not None else "done")
            seconds = record["cell_seconds"]
            console.print(f"{counted()} {cell.id}: {shown} ({seconds:.0f} s)")

    def fail(cell_id: str, cause: str) -> None:
        summary.failed[cell_id] = cause
        if progress:
            console.print(f"{counted()} {cell_id}: not computed ({cause})")

    keep = {taken for c in cells for taken in c.takes}  # models and triggers other cells take
    if todo:
        resolve_device(recipe.run.device)  # an unknown or absent device is refused before any cell
    if progress:
        left = f", {len(summary.missing)} left for a later run (--max-cells)" if summary.missing else ""
        console.print(f"{recipe.name}: {total} cells to compute, {len(plan.skipped)} already finished{left}")
    if todo:
        if engine == "ray":
            run_ray(recipe, store, todo, keep, report, fail, ray_address, progress)
        else:
            run_local(recipe, store, todo, keep, report, fail, progress)
    summary.records = [r for c in cells if (r := store.record(recipe, c)) is not None]
    stale = [r["id"] for r in summary.records if not store.is_current(r)]
    summary.seconds = time.perf_counter() - start
    write_results(recipe, store.root, summary.records, len(cells), store.code, stale)
    return summary


def evaluated_on(run: RunSettings) -> str:
    """The images every figure is measured on, as the settings line names them."""
    if run.evaluate_on != VALIDATION:
        return f"test images {run.test_images or 'all'}"
    first = run.test_images or VALIDATION_IMAGES
    count = f"the first {first:,} of the" if first < VALIDATION_IMAGES else "the"
    return (
        f"figures measured on {count} {VALIDATION_IMAGES:,} validation images carved from the training set "
        f"(`mendnet.data.tuning`, carving seed {TUNING_SEED}; no model trained on them, the test set was "
        "never loaded)"
    )


def autoattack_images(recipe: Recipe) -> str:
    """The images AutoAttack runs on in a robust grid's reports (", AutoAttack on the first N of them"),
    or nothing."""
    if not recipe.grid.robustifiers or not recipe.run.aa_images:
        return ""
    return f", AutoAttack on the first {recipe.run.aa_images} of them"


def settings_line(
    recipe: Recipe, records: list[dict], total: int, code: dict[str, str], provenance: Provenance | None
) -> str:
    """Where the numbers come from (the provenance, or the recipe's name, the code and today's date), the
    devices the cells ran on, threads, the torch versions they ran (as their records name them), how many
    cells are finished and the run's sizes."""
    run = recipe.run
    if provenance is not None:
        origin = provenance.line()
    else:
        origin = f"`mendnet bench`, recipe `{recipe.name}`, {short_code(code)}, {time.strftime('%Y-%m-%d')}"
    devices = sorted({r.get("device", run.device) for r in records}) or [run.device]
    torches = sorted({r.get("torch", "not recorded") for r in records}) or [torch.__version__]
    return (
        f"{origin}, device {', '.join(devices)}, {run.threads} thread(s) per cell, "
        f"torch {', '.join(torches)}; {len(records)} of {total} cells; training subset "
        f"{run.train_subset or 'all'}, {evaluated_on(run)}{autoattack_images(recipe)}, defender data "
        f"{100 * run.clean_fraction:g}%. Percent."
    )


def section_text(
    recipe: Recipe,
    records: list[dict],
    total: int,
    code: dict[str, str],
    stale: list[str],
    provenance: Provenance | None = None,
) -> str:
    """The Markdown of a recipe's results: heading, description, settings line, tables (STALE on table
    cells that include one of the `stale` record ids, and a note saying what that means)."""
    lines = [f"## {recipe.title}", ""]
    if recipe.description:
        lines += [recipe.description, ""]
    lines += [
        settings_line(recipe, records, total, code, provenance),
        "",
        markdown_tables(recipe, records, set(stale)) if records else "(no finished cells)",
    ]
    if stale:
        lines += [
            f"{STALE} includes stale cells: {len(stale)} of the {len(records)} were computed by other code "
            f"than {short_code(code)} and kept by `--keep-stale` (their ids: results.json, `stale`).",
        ]
    return "\n".join(lines)


def write_results(
    recipe: Recipe, root: Path, records: list[dict], total: int, code: dict[str, str], stale: list[str]
) -> None:
    """results.json (the grid's seeds, every finished record, the current code identity, the stale record
    ids), results.csv (tidy) and tables.md in `root`."""
    atomic_write_json(
        root / "results.json",
        {
            "recipe": recipe.name,
            "title": recipe.title,
            "smoke": recipe.smoke,
            "seeds": list(recipe.grid.seeds),
            "cells": total,
            "finished": len(records),
            "code": code,
            "stale": stale,
            "records": records,
        },
    )
    atomic_write_bytes(root / "results.csv", tidy_csv(records).encode())
    text = section_text(recipe, records, total, code, stale)
    atomic_write_bytes(root / "tables.md", (text + "\n").encode())


def write_doc_section(
    recipe: Recipe, root: Path, doc: Path, provenance: Provenance, section: str | None = None
) -> None:
    """Write the results in `root` as section `section` (default: the recipe's name) of `doc`, opening
    with `provenance`."""
    data = json.loads((root / "results.json").read_text())
    text = section_text(recipe, data["records"], data["cells"], data["code"], data["stale"], provenance)
    write_section(section or recipe.name, text, doc)
