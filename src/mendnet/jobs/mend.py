"""`mendnet mend` on an artefact (or a model loaded by `jobs.load`): mend (docs/methods.md §10) on the
seeded clean defender split, then, only when asked and only after the decision, the test-set figures of
the untouched and the kept model for the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from mendnet.artefact import Artefact, provenance
from mendnet.data.imageset import ImageSet
from mendnet.detect.reversed_trigger import TRIGGER_FILE, TRIGGER_PNG
from mendnet.evaluate import backdoor_metrics, compared
from mendnet.jobs.defender import defender_data
from mendnet.jobs.outcome import ModelOutcome
from mendnet.mend.report import render_pages
from mendnet.mend.run import MendConfig, mend
from mendnet.report.trigger_grid import reversed_trigger_png
from mendnet.threats.backdoor.spec import backdoor_test_for

DEFAULT_CONFIG = MendConfig()


def mend_artefact(
    art: Artefact,
    config: MendConfig = DEFAULT_CONFIG,
    *,
    clean_fraction: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    sets: tuple[ImageSet, ImageSet] | None = None,
    evaluate: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> ModelOutcome:
    """Mend `art`'s model from its defender data. evaluate: afterwards, measure ACC (and ASR/RA of a
    recorded backdoor) of the untouched, the kept and every candidate model on the test set, for the
    report only (metrics["candidates"]: each candidate's)."""
    data = defender_data(art, clean_fraction, seed, sets)
    clean = data.train.subset(torch.cat([data.split.train, data.split.val]))  # every defender image
    result = mend(art.model, clean, config, seed=seed, device=device, progress=progress, say=say)
    record = result.record()
    metrics: dict[str, Any] = {"chosen": result.decision.chosen, "seconds": result.seconds["total"]}
    if evaluate:
        backdoor = backdoor_test_for(data.threat, data.test)
        test = result.measured(
            art.model, lambda m: backdoor_metrics(m.to(device), data.test, backdoor, device=device)
        )
        record["test"] = test
        metrics.update(compared(test["original"], test["kept"]))
        metrics["candidates"] = test["candidates"]
    meta = {
        "data": data.ref.to_json(),
        "threat": art.meta.get("threat"),
        "oracle": False,
        "mend": {
            "config": asdict(config),
            "clean_fraction": clean_fraction,
            "parent": str(art.path) if art.path else art.meta.get("source"),
            **{k: v for k, v in record.items() if k != "test"},
        },
        "defender": data.split.to_json(),
        "provenance": provenance(seed),
    }
    classes = list(clean.classes)
    files: dict[str, bytes | str] = {
        TRIGGER_FILE: result.scan.triggers.to_bytes(),
        TRIGGER_PNG: reversed_trigger_png(result.scan.triggers, classes, config.scan_config().threshold, []),
    }
    subtitle = (
        f"Model `{meta['mend']['parent'] or 'in memory'}` on {data.ref.name}; {clean_fraction:.0%} clean "
        f"defender data; seed {seed}; {result.seconds['total']:.0f} s."
    )
    html, md = render_pages(record, files, classes, subtitle)
    files["report.html"], files["report.md"] = html, md
    return ModelOutcome(result.model.cpu(), meta, metrics, files)
