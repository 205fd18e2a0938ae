"""The cells of the robust rows, as thin adapters over `robust.job.robustify_model` and
`robust.evaluation.robust_metrics`: a robustifier column, the natural base's robustness report, and the
robust teacher's training."""

from __future__ import annotations

from typing import Any

from mendnet.bench.cells import Cell
from mendnet.bench.inputs import Done, Inputs
from mendnet.bench.masking import report_metrics
from mendnet.bench.recipe import Recipe
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.device import resolve_device
from mendnet.robust.evaluation import robust_metrics
from mendnet.robust.job import robustify_model


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
        aa_check=run.aa_check,
        seed=seed,
        device=resolve_device(run.device),
        progress=progress,
        sets=sets,
    )


def natural_report(recipe: Recipe, x: Inputs) -> Done:
    """The natural base's metrics with its robustness report (`masking.report_metrics`)."""
    run = recipe.run
    report = robust_metrics(
        x.art.model.to(x.device),
        x.sets[1],
        eps=run.eval_eps,
        device=x.device,
        seed=x.seed,
        progress=x.progress,
        aa_images=run.aa_images,
        aa_check=run.aa_check,
    )
    metrics, info = report_metrics(report)
    return Done({**x.art.metrics, **metrics}, info)


def robustify_cell(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """A robustifier column on its split, distilling the cell's teacher base when it has one. Its
    train_seconds are the student's alone: the teacher base's (trained once for every taker) are in the
    info's `teacher`, beside its base id, and counted nowhere."""
    run = recipe.run
    result = robustify(recipe, cell.method, cell.base.model, x.seed, x.sets, x.teacher, run.split, x.progress)
    train_seconds = result.metrics.pop("train_seconds")
    metrics, info = report_metrics(result.metrics)
    info.update(result.meta["robustify"]["info"])
    if x.teacher is not None and cell.teacher is not None:
        info["teacher"] = {"base": cell.teacher.id, "train_seconds": x.teacher.metrics.get("train_seconds")}
    return Done({**metrics, "train_seconds": train_seconds}, info)
