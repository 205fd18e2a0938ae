"""Repair an artefact's model with a registered method on seeded clean defender data, and measure it
before and after."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import torch

from mendnet.artefact import Artefact, provenance
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import backdoor_metrics, compared
from mendnet.jobs.defender import defender_data, oracle_trigger
from mendnet.jobs.outcome import ModelOutcome
from mendnet.models import Classifier
from mendnet.registry import REPAIRS
from mendnet.repair.context import RepairContext, asks_for_oracle
from mendnet.threats.backdoor.spec import backdoor_test_for


def repair_model(
    art: Artefact,
    method: str,
    config: Any,
    *,
    clean_fraction: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    teacher: Classifier | None = None,
    sets: tuple[ImageSet, ImageSet] | None = None,
    before: dict[str, float] | None = None,
) -> ModelOutcome:
    """Run a registered repair on an artefact's model with seeded clean defender data, and measure
    ACC/ASR/RA before and after, DER and wall-clock seconds."""
    if method not in REPAIRS:
        raise MendnetError(f"unknown repair {method!r}; known: {', '.join(REPAIRS)}")
    expected = REPAIRS[method].config
    if type(config) is not expected:  # exact: fineprune.Config subclasses finetune.Config
        raise MendnetError(
            f"repair {method!r} takes a {expected.__module__}.{expected.__qualname__}, "
            f"got {type(config).__module__}.{type(config).__qualname__}"
        )
    data = defender_data(art, clean_fraction, seed, sets)
    test, threat = data.test, data.threat
    backdoor = backdoor_test_for(threat, test)
    if before is None:
        before = backdoor_metrics(art.model.to(device), test, backdoor, device=device)
    oracle = asks_for_oracle(config)
    known = oracle_trigger(threat, backdoor) if oracle else None
    ctx = RepairContext(
        data.d_train,
        data.d_val,
        device=device,
        seed=seed,
        progress=progress,
        teacher=teacher,
        known_trigger=known,
    )
    start = time.perf_counter()
    result = REPAIRS[method].run(art.model.to(device), ctx, config)
    seconds = time.perf_counter() - start
    after = backdoor_metrics(result.model, test, backdoor, device=device)
    metrics: dict[str, Any] = {**compared(before, after), "seconds": seconds}
    meta = {
        "data": data.ref.to_json(),
        "threat": art.meta.get("threat"),
        "oracle": oracle,
        "repair": {
            "method": method,
            "config": asdict(config),
            "clean_fraction": clean_fraction,
            "parent": str(art.path) if art.path else None,
            "info": result.info,
        },
        "defender": data.split.to_json(),
        "provenance": provenance(seed),
    }
    return ModelOutcome(result.model.cpu(), meta, metrics, result.files)
