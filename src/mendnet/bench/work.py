"""The two units of work of a grid, the same functions locally and as Ray tasks: train a base model, and
compute one cell on it (`kinds` says how each kind of cell is computed). Both take and return plain data
(the recipe, artefact files as bytes, a JSON-able record), so a Ray worker on another machine needs no
shared folder."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mendnet.artefact import WEIGHTS, Artefact, load_artefact, write_artefact, write_files
from mendnet.bench.cells import BaseKey, Cell, base_spec, cell_spec
from mendnet.bench.code import code_identity
from mendnet.bench.grid import CLEAN
from mendnet.bench.kinds import KINDS, Inputs, robustify
from mendnet.bench.recipe import Recipe
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.device import resolve_device
from mendnet.jobs.train import train_model
from mendnet.robust.transfer import split_set
from mendnet.threats.backdoor.spec import PoisonSpec

BENCH_KEY = "bench"
"""The key of a base artefact's model.json that holds its `base_spec` (a cell's model: its `cell_spec`)."""

CODE_KEY = "bench_code"
"""The key of a stored artefact's model.json that holds the code identity it was made with."""

NOT_METRICS = ("eps_linf", "eval_images")
"""Numbers of a robustness report that describe the setting, kept in a record's info."""

_SETS: dict[tuple[str, str | None], tuple[ImageSet, ImageSet]] = {}


def load_sets(name: str, data_dir: str | None, test_images: int | None) -> tuple[ImageSet, ImageSet]:
    """(train, first `test_images` test images), read once per process."""
    if (name, data_dir) not in _SETS:
        _SETS[(name, data_dir)] = DataRef(name, data_dir).load()
    train, test = _SETS[(name, data_dir)]
    if test_images is not None and test_images < len(test):
        test = test.subset(torch.arange(test_images))
    return train, test


@contextlib.contextmanager
def cell_environment(threads: int, seed: int) -> Iterator[None]:
    """Run with `threads` torch threads and seeded global generators; restore the thread count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def device_label(device: torch.device) -> str:
    """The device a cell ran on, as its record and the docs name it ("cpu", "cuda:0 (NVIDIA H200)")."""
    if device.type == "cuda":
        return f"{device.type}:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return device.type


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative name → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_base(recipe: Recipe, base: BaseKey, progress: bool = False) -> dict[str, bytes]:
    """Train the base model (backdoored, robust teacher, or natural) and return its artefact files;
    model.json records the base spec under "bench" and the code identity under "bench_code"."""
    run = recipe.run
    device = resolve_device(run.device)
    ref = DataRef(base.data, run.data_dir)
    with cell_environment(run.threads, base.seed), tempfile.TemporaryDirectory() as tmp:
        sets = load_sets(base.data, run.data_dir, run.test_images)
        if base.teacher is not None:
            outcome: Any = robustify(
                recipe, base.teacher, base.model, base.seed, sets, None, run.teacher_split
            )
        else:
            spec = None
            if base.attack is None:  # the natural model: on the robustifiers' half of the training set
                sets = (split_set(sets[0], run.split, 0), sets[1])
            elif base.attack != CLEAN:
                p, params = recipe.poison, recipe.attack_params.get(base.attack, ())
                spec = PoisonSpec(base.attack, p.target, p.rate, p.mode, params)
            outcome = train_model(
                ref,
                base.model,
                recipe.train,
                poison_spec=spec,
                seed=base.seed,
                device=device,
                progress=progress,
                sets=sets,
                train_subset=run.train_subset,
            )
        outcome.meta[BENCH_KEY] = base_spec(recipe, base)
        outcome.meta[CODE_KEY] = code_identity()
        write_artefact(Path(tmp), outcome.model, outcome.meta, outcome.metrics)
        return read_folder(Path(tmp))


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric metrics of a nested dict as one level (key "a.b" for {"a": {"b": x}}); other values (text,
    lists) are dropped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(flat_metrics(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def load_files(files: dict[str, bytes], folder: Path) -> Any:
    """The artefact made of `files`, written into `folder` and loaded."""
    write_files(folder, files)
    return load_artefact(folder)


def weights_digest(files: dict[str, bytes]) -> str:
    """SHA-256 (hex) of an artefact's weights file: which model a cell took from its source."""
    return hashlib.sha256(files[WEIGHTS]).hexdigest()


def _loaded(files: dict[str, bytes] | None, folder: Path) -> Artefact | None:
    return load_files(files, folder) if files is not None else None


def run_cell(
    recipe: Recipe,
    cell: Cell,
    base_files: dict[str, bytes],
    teacher_files: dict[str, bytes] | None = None,
    source_files: dict[str, bytes] | None = None,
    keep_model: bool = False,
    progress: bool = False,
) -> tuple[dict, dict[str, bytes] | None]:
    """Compute one cell on its base, given as artefact files, with the base a robustifier distils
    (`teacher_files`) and the model of its source cell (`source_files`). Return its JSON-able record
    (with the code identity of the process that computed it, the device it ran on and, under "source",
    the source cell's id and weights digest) and, with `keep_model`, the artefact files of the model the
    cell made (model.json holding the cell's spec and the code identity), else None."""
    run = recipe.run
    device = resolve_device(run.device)
    start = time.perf_counter()
    spec = cell_spec(recipe, cell)
    model_files = None
    with cell_environment(run.threads, cell.base.seed), tempfile.TemporaryDirectory() as tmp:
        inputs = Inputs(
            art=load_files(base_files, Path(tmp) / "base"),
            sets=load_sets(cell.base.data, run.data_dir, run.test_images),
            teacher=_loaded(teacher_files, Path(tmp) / "teacher"),
            source=_loaded(source_files, Path(tmp) / "source"),
            seed=cell.base.seed,
            device=device,
            progress=progress,
        )
        done = KINDS[cell.kind](recipe, cell, inputs)
        metrics, info = done.metrics, done.info
        for key in NOT_METRICS:
            if key in metrics:
                info[key] = metrics.pop(key)
        if keep_model and done.outcome is not None:
            meta = {**done.outcome.meta, BENCH_KEY: spec, CODE_KEY: code_identity()}
            write_artefact(Path(tmp) / "model", done.outcome.model, meta, done.outcome.metrics)
            model_files = read_folder(Path(tmp) / "model")
    source = None
    if cell.source is not None and source_files is not None:
        source = {"cell": cell.source.id, "weights": weights_digest(source_files)}
    record = {
        "id": cell.id,
        **cell.key(),
        "kind": cell.kind,
        "metrics": flat_metrics(metrics),
        "info": info,
        "source": source,
        "spec": spec,
        "code": code_identity(),
        "device": device_label(device),
        "cell_seconds": time.perf_counter() - start,
    }
    return record, model_files
