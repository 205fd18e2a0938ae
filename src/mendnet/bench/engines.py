"""Engines that compute a list of unfinished cells: in this process, or as Ray tasks. Both call the same
`train_base` and `run_cell` with the same thread count, so they give the same results; both save each
base and each cell as soon as it is done (and the model of a cell that other cells take, before its
record), so a stopped run loses only the work in flight. A cell that takes another cell's model (its
source) gets that model's files: from the source computed in the same run, else from the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mendnet.bench.cells import BaseKey, Cell
from mendnet.bench.recipe import Recipe
from mendnet.bench.store import BenchStore
from mendnet.bench.work import run_cell, train_base
from mendnet.errors import MendnetError

Report = Callable[[Cell, dict], None]


def stored_model(recipe: Recipe, store: BenchStore, cell: Cell) -> dict[str, bytes]:
    """The stored model of a finished source cell (`plan.plan_cells` computes any source without one)."""
    files = store.cell_model_files(recipe, cell)
    if files is None:
        raise MendnetError(f"the model of cell {cell.id} is missing from {store.root}; run the grid again")
    return files


def run_local(
    recipe: Recipe, store: BenchStore, todo: list[Cell], keep: set[Cell], report: Report, progress: bool
) -> None:
    """Compute `todo` in order in this process, training (or loading) each base once; the models of the
    cells in `keep` are stored (other cells take them)."""
    held: dict[BaseKey, dict[str, bytes]] = {}
    made: dict[Cell, dict[str, bytes]] = {}

    def files_of(base: BaseKey) -> dict[str, bytes]:
        if base not in held:
            files = store.base_files(recipe, base)
            if files is None:
                files = train_base(recipe, base, progress)
                store.write_base(base, files)
            held[base] = files
        return held[base]

    for cell in todo:
        for base in [b for b in held if b not in (cell.base, cell.teacher)]:
            del held[base]  # cells come grouped by base: keep only what this cell needs in memory
        for other in [c for c in made if c.base != cell.base]:
            del made[other]
        teacher = files_of(cell.teacher) if cell.teacher is not None else None
        source = None
        if cell.source is not None:
            source = made.get(cell.source) or stored_model(recipe, store, cell.source)
        record, model = run_cell(recipe, cell, files_of(cell.base), teacher, source, cell in keep, progress)
        if model is not None:
            store.write_cell_model(cell, model)
            made[cell] = model
        store.write_record(cell, record)
        report(cell, record)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise MendnetError("--ray needs Ray: pip install 'mendnet[ray]'") from e
    return ray


def run_ray(
    recipe: Recipe,
    store: BenchStore,
    todo: list[Cell],
    keep: set[Cell],
    report: Report,
    address: str | None = None,
) -> None:
    """Compute `todo` as Ray tasks (each with `recipe.run.threads` CPUs, one GPU on a CUDA device): one
    task per missing base, then one per cell, depending on its base's (and teacher's) task and on its
    source cell's task (or the source's stored model). Results come back to this process, which writes
    them (and the models of the cells in `keep`), so workers need no shared folder. Starts a local Ray
    instance unless one is running or `address` names a cluster, and stops only one it started."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        options = {
            "num_cpus": recipe.run.threads,
            "num_gpus": 1 if recipe.run.device.startswith("cuda") else 0,
            "max_retries": 0,
        }
        train_task = ray.remote(train_base).options(**options)
        cell_task = ray.remote(run_cell).options(**options, num_returns=2)
        jobs: dict[Any, tuple[str, Any, Any]] = {}
        base_refs: dict[BaseKey, Any] = {}
        for base in dict.fromkeys(b for c in todo for b in (c.base, c.teacher) if b is not None):
            files = store.base_files(recipe, base)
            if files is None:
                ref = train_task.remote(recipe, base)
                jobs[ref] = ("base", base, None)
            else:
                ref = ray.put(files)
            base_refs[base] = ref
        model_refs: dict[Cell, Any] = {}
        for cell in todo:
            teacher = base_refs[cell.teacher] if cell.teacher is not None else None
            source = None
            if cell.source is not None:
                if cell.source not in model_refs:
                    model_refs[cell.source] = ray.put(stored_model(recipe, store, cell.source))
                source = model_refs[cell.source]
            record_ref, model_ref = cell_task.remote(
                recipe, cell, base_refs[cell.base], teacher, source, cell in keep
            )
            model_refs[cell] = model_ref
            jobs[record_ref] = ("cell", cell, model_ref)
        pending = list(jobs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            kind, what, model_ref = jobs[ready[0]]
            try:
                value = ray.get(ready[0])
                model = ray.get(model_ref) if kind == "cell" and what in keep else None
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, MendnetError):
                    raise MendnetError(str(e.cause)) from None
                raise
            if kind == "base":
                store.write_base(what, value)
                continue
            if model is not None:
                store.write_cell_model(what, model)
            store.write_record(what, value)
            report(what, value)
    finally:
        if started:
            ray.shutdown()
