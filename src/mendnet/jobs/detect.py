"""Neural Cleanse detection on an artefact: every label's reversed trigger and the flagged labels."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import torch

from mendnet.artefact import Artefact, provenance
from mendnet.data.imageset import ImageSet
from mendnet.detect.neural_cleanse import Config as NCConfig
from mendnet.detect.neural_cleanse import reverse_engineer
from mendnet.detect.reversed_trigger import TRIGGER_FILE, TRIGGER_PNG
from mendnet.jobs.defender import defender_data
from mendnet.report.trigger_grid import reversed_trigger_png
from mendnet.threats.backdoor.spec import backdoor_test_for


@dataclass
class DetectOutcome:
    """A detection's report (JSON-able, also in `files` as detect.json) and the files of its folder."""

    report: dict[str, Any]
    files: dict[str, bytes | str]


def detect_artefact(
    art: Artefact,
    config: NCConfig,
    *,
    clean_fraction: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    sets: tuple[ImageSet, ImageSet] | None = None,
) -> DetectOutcome:
    """Neural Cleanse on an artefact's model: reverse every label's trigger on seeded clean defender data,
    flag the outlier labels. The test set is used only for the figure's true/reversed trigger pair
    (when the artefact records a threat). Files: detect.json, the reversed trigger and its PNG."""
    data = defender_data(art, clean_fraction, seed, sets)
    test, threat = data.test, data.threat
    triggers, log = reverse_engineer(
        art.model, data.d_train, config, seed=seed, device=device, progress=progress
    )
    flagged = triggers.flagged(config.threshold)
    report = {
        "model": str(art.path) if art.path else None,
        "method": "neural-cleanse",
        "config": asdict(config),
        "clean_fraction": clean_fraction,
        "labels": [{**row, "class": test.classes[row["label"]]} for row in triggers.table(config.threshold)],
        "flagged": flagged,
        "threat_target": threat.target if threat else None,
        "epochs": log.epochs,
        "seconds": log.seconds,
        "defender": data.split.to_json(),
        "provenance": provenance(seed),
    }
    comparison = []
    backdoor = backdoor_test_for(threat, test, data.train)
    if backdoor is not None and len(backdoor.data):
        x = backdoor.data.float_images(torch.arange(1))
        shown = flagged[0] if flagged else int(triggers.norms.argmin())
        comparison = [
            (x[0], "test image"),
            (backdoor.trigger.apply(x)[0], f"true trigger ({threat.attack})"),
            (
                triggers.stamp(x, torch.tensor([shown]))[0],
                f"reversed, label {shown}" + ("" if flagged else " (not flagged)"),
            ),
        ]
    files: dict[str, bytes | str] = {
        "detect.json": json.dumps(report, indent=2) + "\n",
        TRIGGER_FILE: triggers.to_bytes(),
        TRIGGER_PNG: reversed_trigger_png(triggers, test.classes, config.threshold, comparison),
    }
    return DetectOutcome(report, files)
