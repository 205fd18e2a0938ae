"""What each kind of cell computes, as thin adapters over the job functions: the base's own metrics,
a repair (`jobs.repair.repair_model`, with a source cell's model as its teacher or a detect cell's
reversed trigger), a robustifier (`bench.robust_cells`), Neural Cleanse detection
(`jobs.detect.detect_artefact`), mend (`jobs.mend.mend_artefact`), the retuning attack
(`threats.backdoor.retune.retune`) on a source cell's model, and AI-Lancet's general-defect experiment
(`bench.defects.defect_figures`) on a clean model."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from mendnet.bench.cells import Cell
from mendnet.bench.defects import defect_figures
from mendnet.bench.grid import DEFECTS, DETECT, MEND, RETUNE
from mendnet.bench.inputs import REFUSED, Done, Inputs
from mendnet.bench.recipe import Recipe
from mendnet.bench.robust_cells import natural_report, robustify_cell
from mendnet.bench.taken_trigger import smallest_norm_label
from mendnet.errors import MendnetError
from mendnet.evaluate import backdoor_metrics
from mendnet.jobs.defender import defender_data
from mendnet.jobs.detect import detect_artefact
from mendnet.jobs.mend import mend_artefact
from mendnet.jobs.repair import repair_model
from mendnet.threats.backdoor.retune import retune
from mendnet.threats.backdoor.spec import backdoor_test_for

CHANGES = {"weights_changed": "weights_changed", "fraction_of_layer": "changed_share"}
"""A repair's info that is a metric of its cell (AI-Lancet's changed weights): info key → metric."""


def _base(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """The base model's own metrics, measured when it was trained (a backdoored or clean base's with its
    `work.row_metrics`; the natural model's with its robustness report)."""
    if cell.base.attack is None:
        return natural_report(recipe, x)
    return Done(dict(x.art.metrics), {})


def _repair(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """The repair column on the base, with its source cell's model as the teacher when it names one and
    its trigger cell's reversed trigger (and chosen label) when it takes one. The weights a repair
    changed in one layer (AI-Lancet) are metrics too; their indices are left out of the record."""
    column = recipe.columns[cell.method]
    config = x.trigger.config_for(column.config) if x.trigger is not None else column.config
    outcome = repair_model(
        x.art,
        column.method,
        config,
        clean_fraction=recipe.run.clean_fraction,
        seed=x.seed,
        device=x.device,
        progress=x.progress,
        teacher=x.source.model if x.source is not None else None,
        sets=x.sets,
        before={k: x.art.metrics[k] for k in ("acc", "asr", "ra") if k in x.art.metrics},
    )
    metrics = {k: v for k, v in outcome.metrics.items() if k != "before"}
    info = {k: v for k, v in outcome.meta["repair"]["info"].items() if k != "changed_indices"}
    if cell.trigger is not None and "trigger" in info:  # not the temporary folder it was read from
        info["trigger"] = f"reversed by {cell.trigger.id}"
    metrics.update({metric: info[key] for key, metric in CHANGES.items() if key in info})
    return Done(metrics, info, outcome)


def _detect(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """Neural Cleanse on the base: the flagged labels, the smallest-norm label, the largest anomaly index
    among the labels below the median norm (a clean model's margin to being flagged), the target's
    anomaly index (when the base records a backdoor and the index is finite) and whether it is flagged."""
    detected = detect_artefact(
        x.art,
        recipe.detect,
        clean_fraction=recipe.run.clean_fraction,
        seed=x.seed,
        device=x.device,
        progress=x.progress,
        sets=x.sets,
    )
    report = detected.report
    labels, flagged, target = report["labels"], report["flagged"], report["threat_target"]
    smallest = smallest_norm_label(labels)
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
    return Done(metrics, info, files=detected.files)


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
    metrics = {k: v for k, v in outcome.metrics.items() if k not in ("before", "chosen", "candidates")}
    record = outcome.meta["mend"]
    keys = ("chosen", "reason", "flagged", "suspects", "scores", "seconds", "parts", "scan")
    info = {k: record[k] for k in keys}
    # every candidate's validation scores and its measured figures: selection rules compared offline
    info["candidates_measured"] = outcome.metrics.get("candidates", {})
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


def _defects(recipe: Recipe, cell: Cell, x: Inputs) -> Done:
    """AI-Lancet's general-defect experiment on the clean base, N_o its defender split; an experiment that
    cannot run (no misclassified image in test half 1, no companion found, no pair corrected) is
    recorded as refused, with its message and no metrics, as a repair that refuses."""
    data = defender_data(x.art, recipe.run.clean_fraction, x.seed, x.sets)
    try:
        metrics, info = defect_figures(
            x.art.model, data.d_train, data.test, recipe.defects, x.seed, x.device, x.progress
        )
    except MendnetError as e:
        return Done({}, {REFUSED: str(e)})
    return Done(metrics, info)


KINDS: dict[str, Callable[[Recipe, Cell, Inputs], Done]] = {
    "base": _base,
    "repair": _repair,
    "robustify": robustify_cell,
    DETECT: _detect,
    MEND: _mend,
    RETUNE: _retune,
    DEFECTS: _defects,
}
"""Cell kind → the function that computes a cell of that kind."""
