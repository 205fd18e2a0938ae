"""What each kind of cell computes, as thin adapters over the job functions: the base's own metrics,
a repair (`jobs.repair.repair_model`), a robustifier (`robust.job.robustify_model`), Neural Cleanse
detection (`jobs.detect.detect_artefact`), mend (`jobs.mend.mend_artefact`) and the retuning attack
(`threats.backdoor.retune.retune`) on a source cell's model."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mendnet.artefact import Artefact
from mendnet.bench.cells import Cell
from mendnet.bench.grid import DETECT, MEND, RETUNE
from mendnet.bench.recipe import Recipe
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.device import resolve_device
from mendnet.evaluate import backdoor_metrics
from mendnet.jobs.defender import defender_data
from mendnet.jobs.detect import detect_artefact
from mendnet.jobs.mend import mend_artefact
from mendnet.jobs.outcome import ModelOutcome
from mendnet.jobs.repair import repair_model
from mendnet.robust.evaluation import robust_metrics
from mendnet.robust.job import robustify_model
from mendnet.threats.backdoor.retune import retune
from mendnet.threats.backdoor.spec import backdoor_test_for


@dataclass
class Inputs:
    """What a cell works on: its base model, the (train, test) sets, the base a robustifier distils and
    the model of the cell's source (None when it has none), where and how it runs."""

    art: Artefact
    sets: tuple[ImageSet, ImageSet]
    teacher: Artefact | None
    source: Artefact | None
    seed: int
    device: torch.device
    progress: bool


@dataclass
class Done:
    """A cell's result: its metrics (nested dicts allowed), its info, and the job's outcome when the
    cell makes a model (repairs and mend: a source for other cells)."""

    metrics: dict[str, Any]
    info: dict[str, Any]
    outcome: ModelOutcome | None = None


def robustify(
    recipe: Recipe,
    column: str,
    arch: str,
    seed: int,
    sets: tuple[ImageSet, ImageSet],
    teacher: Any,
    split: str,
    progress: bool = False,
) -> Any:
    """`mendnet.robust.job.robustify_model` with the recipe's settings of robustifier column `column` (a
    fresh `arch` unless the method distils `teacher`), measured on the recipe's test images."""
    run, chosen = recipe.run, recipe.columns[column]
    return robustify_model(
        chosen.method,
        chosen.config,
        data=DataRef(sets[0].name, run.data_dir),
        teacher=teacher,
        arch=arch,
        split=split,
        split_seed=0,
        train_subset=run.train_subset,
        eval_images=len(sets[1]),
        eval_eps=run.eval_eps,
        aa_images=run.aa_images,
        seed=seed,
        device=resolve_device(run.device),
        progress=progress,
        sets=sets,
    )


def _base(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """The base model's own metrics (the natural model's with its robustness report)."""
    metrics = dict(x.art.metrics)
    if cell.base.attack is None:
        run = recipe.run
        model = x.art.model.to(x.device)
        metrics.update(
            robust_metrics(
                model,
                x.sets[1],
                eps=run.eval_eps,
                device=x.device,
                seed=x.seed,
                progress=x.progress,
                aa_images=run.aa_images,
            )
        )
    return Done(metrics, {})


def _repair(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """The repair column on the base, with its source cell's model as the teacher when it names one."""
    column = recipe.columns[cell.method]
    outcome = repair_model(
        x.art,
        column.method,
        column.config,
        clean_fraction=recipe.run.clean_fraction,
        seed=x.seed,
        device=x.device,
        progress=x.progress,
        teacher=x.source.model if x.source is not None else None,
        sets=x.sets,
        before={k: x.art.metrics[k] for k in ("acc", "asr", "ra") if k in x.art.metrics},
    )
    metrics = {k: v for k, v in outcome.metrics.items() if k != "before"}
    return Done(metrics, outcome.meta["repair"]["info"], outcome)


def _robustify(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    run = recipe.run
    result = robustify(recipe, cell.method, cell.base.model, x.seed, x.sets, x.teacher, run.split, x.progress)
    return Done(result.metrics, result.meta["robustify"]["info"])


def _detect(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """Neural Cleanse on the base: the flagged labels, the smallest-norm label, the largest anomaly index
    among the labels below the median norm (a clean model's margin to being flagged), the target's
    anomaly index (when the base records a backdoor and the index is finite) and whether it is flagged."""
    report = detect_artefact(
        x.art,
        recipe.detect,
        clean_fraction=recipe.run.clean_fraction,
        seed=x.seed,
        device=x.device,
        progress=x.progress,
        sets=x.sets,
    ).report
    labels, flagged, target = report["labels"], report["flagged"], report["threat_target"]
    smallest = min(labels, key=lambda row: row["norm"])["label"]
    median = statistics.median(row["norm"] for row in labels)
    below = [
        row["anomaly_index"] or 0.0 for row in labels if row["norm"] < median
    ]  # only these can be flagged
    metrics: dict[str, Any] = {
        "flagged": len(flagged),
        "smallest_norm_label": smallest,
        "max_below_median_index": max(below, default=0.0),
    }
    if target is not None:
        metrics["target_flagged"] = float(target in flagged)
        if labels[target]["anomaly_index"] is not None:
            metrics["target_anomaly_index"] = labels[target]["anomaly_index"]
    metrics["seconds"] = report["seconds"]
    info = {
        "flagged": flagged,
        "smallest_norm_label": smallest,
        "target": target,
        "labels": labels,
        "epochs": report["epochs"],
    }
    return Done(metrics, info)


def _mend(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """`mendnet mend` on the base, measured on the test set after its decision."""
    outcome = mend_artefact(
        x.art,
        recipe.mend,
        clean_fraction=recipe.run.clean_fraction,
        seed=x.seed,
        device=x.device,
        progress=x.progress,
        sets=x.sets,
    )
    metrics = {k: v for k, v in outcome.metrics.items() if k not in ("before", "chosen")}
    record = outcome.meta["mend"]
    info = {k: record[k] for k in ("chosen", "reason", "flagged", "suspects", "seconds", "parts")}
    return Done(metrics, info, outcome)


def _retune(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """The retuning attack on the source cell's model: fine-tuned on the base's defender images with the
    first few replaced by training images stamped with the base's trigger; ACC and ASR afterwards."""
    assert x.source is not None  # enumerate_cells gives every retune cell its source
    data = defender_data(x.art, recipe.run.clean_fraction, x.seed, x.sets)
    backdoor = backdoor_test_for(data.threat, data.test, data.train)
    clean = data.train.subset(data.split.all)
    start = time.perf_counter()
    tuned = retune(
        x.source.model,
        clean,
        data.train,
        backdoor.trigger,
        data.threat.target,
        recipe.retune,
        seed=x.seed,
        device=x.device,
        progress=x.progress,
    )
    seconds = time.perf_counter() - start
    after = backdoor_metrics(tuned, data.test, backdoor, device=x.device)
    metrics = {"retune_acc": after["acc"], "retune_asr": after["asr"], "retune_seconds": seconds}
    return Done(metrics, {"clean_images": len(clean), "poisoned": recipe.retune.poisoned})


KINDS: dict[str, Callable[[Recipe, Cell, Inputs], Done]] = {
    "base": _base,
    "repair": _repair,
    "robustify": _robustify,
    DETECT: _detect,
    MEND: _mend,
    RETUNE: _retune,
}
"""Cell kind → the function that computes a cell of that kind."""
