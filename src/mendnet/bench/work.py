"""The two units of work of a grid, the same functions locally and as Ray tasks: train a base model (with
its attacker's model, when it has one; a backdoored base is measured on the clean row's model too), and
compute one cell on it (`kinds` says how each kind of cell is computed). Both take and return plain data
(the recipe, artefact and detect folders' files as bytes, a JSON-able record), so a Ray worker on another
machine needs no shared folder."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mendnet.artefact import Artefact, write_artefact, write_files
from mendnet.bench.cells import BaseKey, Cell, attacker_of, base_spec, base_train, cell_spec, clean_row_of
from mendnet.bench.code import code_identity
from mendnet.bench.grid import CLEAN
from mendnet.bench.inputs import REFUSED, Done, Inputs
from mendnet.bench.kinds import KINDS
from mendnet.bench.recipe import Recipe
from mendnet.bench.robust_cells import robustify
from mendnet.bench.run_settings import TEST, VALIDATION
from mendnet.bench.stored import BENCH_KEY, CODE_KEY, RECIPE_KEY, load_files, output_digest, read_folder
from mendnet.bench.taken_trigger import REPORT, taken_trigger
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.data.tuning import carve_validation
from mendnet.device import device_label, resolve_device
from mendnet.errors import MendnetError
from mendnet.evaluate import accuracy, backdoor_metrics
from mendnet.jobs.outcome import ModelOutcome
from mendnet.jobs.train import train_model
from mendnet.robust.transfer import split_set
from mendnet.threats.backdoor.spec import PoisonSpec, backdoor_test_for, threat_of

ATTACKER_KEY = "bench_attacker"
"""The key of a Trojan or CL base's model.json that names the base whose model planted it (its id and
weights digest), when it has one (`cells.attacker_of`)."""

CLEAN_ROW_KEY = "bench_clean_row"
"""The key of a backdoored base's model.json that names the clean row's base its `clean_asr` was measured
on (its id and weights digest), when the grid has the clean row (`cells.clean_row_of`)."""

NOT_METRICS = ("eps_linf", "eval_images")
"""Numbers of a robustness report that describe the setting, kept in a record's info."""

_SPLITS: dict[tuple[str, str | None, str], ImageSet] = {}


def _split(name: str, data_dir: str | None, split: str) -> ImageSet:
    """One split of a data set ("train" or "test"), read once per process."""
    if (name, data_dir, split) not in _SPLITS:
        _SPLITS[(name, data_dir, split)] = DataRef(name, data_dir).split(split)
    return _SPLITS[(name, data_dir, split)]


def load_sets(
    name: str, data_dir: str | None, test_images: int | None, evaluate_on: str = TEST
) -> tuple[ImageSet, ImageSet]:
    """(training set, the first `test_images` evaluation images): with `evaluate_on` TEST the training
    and the test set; with VALIDATION the training set less the researcher's validation images and those
    images (`mendnet.data.tuning.carve_validation`), the test set never read."""
    train = _split(name, data_dir, "train")
    if evaluate_on == VALIDATION:
        train, evaluation = carve_validation(train)
    else:
        evaluation = _split(name, data_dir, "test")
    if test_images is not None and test_images < len(evaluation):
        evaluation = evaluation.subset(torch.arange(test_images))
    return train, evaluation


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


def train_base(
    recipe: Recipe,
    base: BaseKey,
    attacker_files: dict[str, bytes] | None = None,
    clean_files: dict[str, bytes] | None = None,
    progress: bool = False,
) -> dict[str, bytes]:
    """Train the base model (backdoored, clean, robust teacher, or natural; with its [base.NAME]'s
    training settings when it names one) and return its artefact files; a Trojan or CL base is planted
    with the model of `attacker_files` (its `cells.attacker_of` base, trained first) when it has one. A
    backdoored or clean base's metrics gain its `row_metrics`, a backdoored base's clean_asr measured on
    the model of `clean_files` (its `cells.clean_row_of` base, trained first) when it has one.
    model.json records the base spec under "bench", the code identity under "bench_code", the
    attacker base's id and weights digest under "bench_attacker" and the clean row's under
    "bench_clean_row"."""
    run = recipe.run
    with cell_environment(run.threads, base.seed), tempfile.TemporaryDirectory() as tmp:
        sets = load_sets(base.data, run.data_dir, run.test_images, run.evaluate_on)
        if base.teacher is not None:
            outcome: Any = robustify(
                recipe, base.teacher, base.model, base.seed, sets, None, run.teacher_split, progress
            )
        else:
            outcome = _trained(recipe, base, sets, attacker_files, Path(tmp) / "attacker", progress)
        if base.attack is not None:
            outcome.metrics.update(row_metrics(recipe, base, outcome, sets, clean_files, Path(tmp) / "clean"))
        outcome.meta[BENCH_KEY] = base_spec(recipe, base)
        outcome.meta[CODE_KEY] = code_identity()
        outcome.meta[RECIPE_KEY] = recipe.name
        write_artefact(Path(tmp) / "base", outcome.model, outcome.meta, outcome.metrics)
        return read_folder(Path(tmp) / "base")


def _trained(
    recipe: Recipe,
    base: BaseKey,
    sets: tuple[ImageSet, ImageSet],
    attacker_files: dict[str, bytes] | None,
    folder: Path,
    progress: bool,
) -> Any:
    """`jobs.train.train_model` of a backdoored, clean or natural base (the natural one on the
    robustifiers' half of the training set), planted with its attacker base's model when it has one."""
    run = recipe.run
    spec, clean = None, None
    if base.attack is None:
        sets = (split_set(sets[0], run.split, 0), sets[1])
    elif base.attack != CLEAN:
        p, params = recipe.poison, recipe.attack_params.get(base.attack, ())
        spec = PoisonSpec(base.attack, p.target, p.rate, p.mode, params)
    attacker = attacker_of(recipe, base)
    if attacker is not None:
        if attacker_files is None:
            raise MendnetError(
                f"base {base.id} is planted on base {attacker.id}'s model, which was not given"
            )
        clean = load_files(attacker_files, folder).model.to(resolve_device(run.device))
    outcome = train_model(
        DataRef(base.data, run.data_dir),
        base.model,
        base_train(recipe, base),
        poison_spec=spec,
        seed=base.seed,
        device=resolve_device(run.device),
        progress=progress,
        sets=sets,
        train_subset=run.train_subset,
        clean_model=clean,
    )
    if attacker is not None:
        outcome.meta[ATTACKER_KEY] = {"base": attacker.id, "weights": output_digest(attacker_files)}
    return outcome


def row_metrics(
    recipe: Recipe,
    base: BaseKey,
    outcome: ModelOutcome,
    sets: tuple[ImageSet, ImageSet],
    clean_files: dict[str, bytes] | None,
    folder: Path,
) -> dict[str, float]:
    """What a backdoored or clean base's row reports beyond ACC, ASR and RA (the attack zoo's
    columns), measured on the test images of `sets`: "target_acc", the trained model's accuracy on the
    test images of the recipe's poison target (a fraction in [0, 1]; absent when none is among them); for
    a backdoored base "poisoned", the number of poisoned training images (a count), and, when it has a
    clean row (`cells.clean_row_of`, its model given as `clean_files`), "clean_asr": the clean model's
    ASR (a fraction) on the base's triggered test images (`backdoor_test_for` of its threat record, as
    `jobs.train.train_model` measures the base's own ASR), the floor its ASR is compared with; the clean
    row's id and weights digest go into the outcome's meta under CLEAN_ROW_KEY."""
    train, test = sets
    device = resolve_device(recipe.run.device)
    metrics: dict[str, float] = {}
    wanted = torch.nonzero(test.labels == recipe.poison.target).flatten()
    if len(wanted):
        model = outcome.model.to(device)
        metrics["target_acc"] = accuracy(model, test.subset(wanted), device=device)
        model.cpu()
    threat = threat_of(outcome.meta)
    if threat is None:
        return metrics
    metrics["poisoned"] = outcome.meta["threat"]["poisoned_count"]
    clean = clean_row_of(recipe, base)
    if clean is not None:
        if clean_files is None:
            raise MendnetError(f"base {base.id} is measured on base {clean.id}'s model, which was not given")
        model = load_files(clean_files, folder).model.to(device)
        backdoor = backdoor_test_for(threat, test, train)
        metrics["clean_asr"] = backdoor_metrics(model, test, backdoor, device=device)["asr"]
        outcome.meta[CLEAN_ROW_KEY] = {"base": clean.id, "weights": output_digest(clean_files)}
    return metrics


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


def _loaded(files: dict[str, bytes] | None, folder: Path) -> Artefact | None:
    return load_files(files, folder) if files is not None else None


def _output(done: Done, spec: dict, folder: Path) -> dict[str, bytes] | None:
    """The files of what a cell made, stamped with its spec and the code identity (None: it made
    nothing another cell can take): its model as an artefact, or its detect folder with the stamp in
    detect.json."""
    stamp = {BENCH_KEY: spec, CODE_KEY: code_identity()}
    if done.outcome is not None:
        write_artefact(folder, done.outcome.model, {**done.outcome.meta, **stamp}, done.outcome.metrics)
        return read_folder(folder)
    if done.files is not None:
        report = {**json.loads(done.files[REPORT]), **stamp}
        write_files(folder, {**done.files, REPORT: json.dumps(report, indent=2) + "\n"})
        return read_folder(folder)
    return None


def run_cell(
    recipe: Recipe,
    cell: Cell,
    base_files: dict[str, bytes],
    teacher_files: dict[str, bytes] | None = None,
    source_files: dict[str, bytes] | None = None,
    trigger_files: dict[str, bytes] | None = None,
    keep_output: bool = False,
    progress: bool = False,
) -> tuple[dict, dict[str, bytes] | None]:
    """Compute one cell on its base, given as artefact files, with the base a robustifier distils
    (`teacher_files`), the model of its source cell (`source_files`) and the folder of its trigger cell
    (`trigger_files`). Return its JSON-able record (with the code identity of the process that computed
    it, the device it ran on, under "source" the source cell's id and weights digest, and under "trigger"
    the trigger cell's id, the reversed trigger's digest, the label handed to the method and whether it
    was flagged) and, with `keep_output`, the files of what the cell made (`_output`), else None. A repair
    whose method refuses to run (a MendnetError) is recorded with the error under info REFUSED, no metrics
    and no output; a cell whose source cell refused (`source_files` None) is recorded as refused too,
    without running."""
    run = recipe.run
    device = resolve_device(run.device)
    start = time.perf_counter()
    spec = cell_spec(recipe, cell)
    output = None
    taken = None
    with cell_environment(run.threads, cell.base.seed), tempfile.TemporaryDirectory() as tmp:
        if trigger_files is not None:
            taken = taken_trigger(trigger_files, Path(tmp) / "trigger")
        inputs = Inputs(
            art=load_files(base_files, Path(tmp) / "base"),
            sets=load_sets(cell.base.data, run.data_dir, run.test_images, run.evaluate_on),
            teacher=_loaded(teacher_files, Path(tmp) / "teacher"),
            source=_loaded(source_files, Path(tmp) / "source"),
            trigger=taken,
            seed=cell.base.seed,
            device=device,
            progress=progress,
        )
        if cell.source is not None and source_files is None:
            done = Done({}, {REFUSED: f"its source cell {cell.source.id} refused to run"})
        else:
            try:
                done = KINDS[cell.kind](recipe, cell, inputs)
            except MendnetError as e:  # e.g. AI-Lancet: the reversed trigger sends no image to its label
                if cell.kind != "repair":
                    raise
                done = Done({}, {REFUSED: str(e)})
        metrics, info = done.metrics, done.info
        for key in NOT_METRICS:
            if key in metrics:
                info[key] = metrics.pop(key)
        if keep_output and REFUSED not in info:
            output = _output(done, spec, Path(tmp) / "output")
    source = trigger = None
    if cell.source is not None and source_files is not None:
        source = {"cell": cell.source.id, "weights": output_digest(source_files)}
    if cell.trigger is not None and trigger_files is not None and taken is not None:
        config = recipe.columns[cell.method].config
        trigger = {"cell": cell.trigger.id, "digest": output_digest(trigger_files), **taken.record(config)}
    record = {
        "id": cell.id,
        "recipe": recipe.name,
        **cell.key(),
        "kind": cell.kind,
        "metrics": flat_metrics(metrics),
        "info": info,
        "source": source,
        "trigger": trigger,
        "spec": spec,
        "code": code_identity(),
        "device": device_label(device),
        "torch": torch.__version__,
        "cell_seconds": time.perf_counter() - start,
    }
    return record, output
