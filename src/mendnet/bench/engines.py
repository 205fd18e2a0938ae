"""Engines that compute a list of unfinished cells: in this process, or as Ray tasks. Both call the same
`train_base` and `run_cell` with the same thread count, so they give the same results; both save each
base and each cell as soon as it is done (and the output of a cell that other cells take, before its
record), so a stopped run loses only the work in flight. A base made with other bases' models (its
attacker, which plants it; the clean row's, which its clean_asr is measured on: `cells.given_bases`) is
trained after them and gets their files. A cell that takes another cell's output (its source's
model, its trigger cell's reversed trigger) gets those files: from the cell computed in the same run,
else from the store.

A base or cell that fails with a MendnetError (a trigger that cannot be planted on one seed's model)
does not stop the run: it is reported to `fail` with its cause, the cells that need it are reported
with the same cause and not run, and every other cell is computed. Nothing of the failed ones is
stored, so a later run tries them again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mendnet.bench.cells import BaseKey, Cell, attacker_of, clean_row_of, given_bases
from mendnet.bench.recipe import Recipe
from mendnet.bench.store import BenchStore
from mendnet.bench.work import run_cell, train_base
from mendnet.errors import MendnetError
from mendnet.progress import console

Report = Callable[[Cell, dict], None]
Failure = Callable[[str, str], None]
"""Called with a failed cell's id and the cause (the id of the base or cell that failed first, and its
error)."""


def stored_output(recipe: Recipe, store: BenchStore, cell: Cell) -> dict[str, bytes] | None:
    """The stored output of a finished cell that others take (`plan.plan_cells` computes any such cell
    without one), or None when the cell refused to run (its takers are recorded as refused)."""
    files = store.cell_output_files(recipe, cell)
    if files is None:
        if store.refused(recipe, cell):
            return None
        raise MendnetError(f"the output of cell {cell.id} is missing from {store.root}; run the grid again")
    return files


def needed_bases(recipe: Recipe, todo: list[Cell]) -> list[BaseKey]:
    """The bases (and teachers) of `todo`, each after the bases whose models it is made with (its attacker,
    the clean row's: `cells.given_bases`)."""
    out: dict[BaseKey, None] = {}

    def add(base: BaseKey) -> None:
        for given in given_bases(recipe, base):
            add(given)
        out[base] = None

    for cell in todo:
        for base in (cell.base, cell.teacher):
            if base is not None:
                add(base)
    return list(out)


class Blocked(Exception):
    """A cell cannot run: a base or cell it needs failed (`cause` names which, and its error)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def run_local(
    recipe: Recipe,
    store: BenchStore,
    todo: list[Cell],
    keep: set[Cell],
    report: Report,
    fail: Failure,
    progress: bool,
) -> None:
    """Compute `todo` in order in this process, training (or loading) each base once (an attacker's or
    the clean row's base before the bases made with its model); the outputs of the cells in `keep` are
    stored (other cells take them). A base that fails is not tried again in this run."""
    held: dict[BaseKey, dict[str, bytes]] = {}
    made: dict[Cell, dict[str, bytes]] = {}
    failed: dict[BaseKey | Cell, str] = {}  # what failed in this run → the cause

    def files_of(base: BaseKey) -> dict[str, bytes]:
        if base in failed:
            raise Blocked(failed[base])
        if base not in held:
            files = store.base_files(recipe, base)
            if files is None:
                attacker, clean = attacker_of(recipe, base), clean_row_of(recipe, base)
                try:
                    given = [files_of(b) if b is not None else None for b in (attacker, clean)]
                    files = train_base(recipe, base, *given, progress)
                except Blocked as e:
                    failed[base] = e.cause
                    raise
                except MendnetError as e:
                    failed[base] = f"base {base.id}: {e}"
                    raise Blocked(failed[base]) from None
                store.write_base(base, files)
            held[base] = files
        return held[base]

    def taken(cell: Cell | None) -> dict[str, bytes] | None:
        if cell is None:
            return None
        if cell in failed:
            raise Blocked(failed[cell])
        return made[cell] if cell in made else stored_output(recipe, store, cell)

    for cell in todo:
        for base in [b for b in held if b not in (cell.base, cell.teacher)]:
            del held[base]  # cells come grouped by base: keep only what this cell needs in memory
        for other in [c for c in made if c.base != cell.base]:
            del made[other]
        try:
            teacher = files_of(cell.teacher) if cell.teacher is not None else None
            record, output = run_cell(
                recipe,
                cell,
                files_of(cell.base),
                teacher,
                taken(cell.source),
                taken(cell.trigger),
                cell in keep,
                progress,
            )
        except Blocked as e:
            failed[cell] = e.cause
        except MendnetError as e:
            failed[cell] = f"cell {cell.id}: {e}"
        if cell in failed:
            fail(cell.id, failed[cell])
            continue
        if output is not None:
            store.write_cell_output(cell, output)
        if cell in keep:
            made[cell] = output  # None: it refused
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
    fail: Failure,
    address: str | None = None,
    progress: bool = False,
) -> None:
    """Compute `todo` as Ray tasks (each with `recipe.run.threads` CPUs, one GPU on a CUDA device): one
    task per missing base (depending on the tasks or stored files of its attacker's and clean row's
    bases), then one per cell, depending on its base's (and teacher's) task and on the tasks of the cells
    whose output it takes (or their stored outputs).
    Results come back to this process, which writes them (and the outputs of the cells in `keep`), so
    workers need no shared folder. Starts a local Ray instance unless one is running or `address` names a
    cluster, and stops only one it started. With `progress`, a line when the run starts and as each base
    model is trained (the workers' own progress stays in Ray's logs)."""

    def say(text: str) -> None:
        if progress:
            console.print(text)

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
        for base in needed_bases(recipe, todo):
            files = store.base_files(recipe, base)
            if files is None:
                attacker, clean = attacker_of(recipe, base), clean_row_of(recipe, base)
                ref = train_task.remote(
                    recipe,
                    base,
                    base_refs[attacker] if attacker is not None else None,
                    base_refs[clean] if clean is not None else None,
                )
                jobs[ref] = ("base", base, None)
            else:
                ref = ray.put(files)
            base_refs[base] = ref
        output_refs: dict[Cell, Any] = {}

        def taken(cell: Cell | None) -> Any:
            if cell is None:
                return None
            if cell not in output_refs:
                output_refs[cell] = ray.put(stored_output(recipe, store, cell))
            return output_refs[cell]

        for cell in todo:
            teacher = base_refs[cell.teacher] if cell.teacher is not None else None
            record_ref, output_ref = cell_task.remote(
                recipe,
                cell,
                base_refs[cell.base],
                teacher,
                taken(cell.source),
                taken(cell.trigger),
                cell in keep,
            )
            output_refs[cell] = output_ref
            jobs[record_ref] = ("cell", cell, output_ref)
        pending = list(jobs)
        bases = sum(kind == "base" for kind, _, _ in jobs.values())
        cpus = int(ray.cluster_resources().get("CPU", 0))
        say(
            f"ray: {bases} base models to train and {len(todo)} cells, "
            f"{recipe.run.threads} CPU each, {cpus} CPUs"
        )
        start = time.perf_counter()
        broken: dict[BaseKey | Cell, str] = {}  # what failed → the cause
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            kind, what, output_ref = jobs[ready[0]]
            try:
                value = ray.get(ready[0])
                output = ray.get(output_ref) if kind == "cell" and what in keep else None
            except ray.exceptions.RayTaskError as e:
                if not isinstance(e.cause, MendnetError):
                    raise
                # its own error, or that of a base or cell it needs (Ray passes it on): name the first
                if kind == "base":
                    needs = [broken.get(d) for d in (attacker_of(recipe, what), clean_row_of(recipe, what))]
                    broken[what] = next((n for n in needs if n), f"base {what.id}: {e.cause}")
                    say(f"ray: base {what.id} failed ({broken[what]})")
                else:
                    needs = [broken.get(d) for d in (what.base, what.teacher, what.source, what.trigger)]
                    broken[what] = next((n for n in needs if n), f"cell {what.id}: {e.cause}")
                    fail(what.id, broken[what])
                continue
            if kind == "base":
                store.write_base(what, value)
                say(f"ray: base {what.id} trained ({time.perf_counter() - start:.0f} s into the run)")
                continue
            if output is not None:
                store.write_cell_output(what, output)
            store.write_record(what, value)
            report(what, value)
    finally:
        if started:
            ray.shutdown()
