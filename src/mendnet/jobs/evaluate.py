"""Evaluate an artefact: ACC, and ASR and RA for its recorded backdoor."""

from __future__ import annotations

import torch

from mendnet.artefact import Artefact
from mendnet.data.ref import DataRef, data_of
from mendnet.evaluate import backdoor_metrics
from mendnet.models import check_fits
from mendnet.threats.backdoor.spec import backdoor_test_for, threat_of


def evaluate_artefact(
    art: Artefact, device: torch.device | str = "cpu", data: DataRef | None = None
) -> dict[str, float]:
    """ACC (and ASR, RA for the recorded threat) of a loaded artefact on its data set's test split."""
    test = (data or data_of(art.meta)).split("test")
    check_fits(art.model, test)
    return backdoor_metrics(
        art.model.to(device), test, backdoor_test_for(threat_of(art.meta), test), device=device
    )
