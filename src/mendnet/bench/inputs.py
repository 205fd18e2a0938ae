"""What a cell is computed from (`Inputs`) and what it gives back (`Done`), shared by every kind of cell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mendnet.artefact import Artefact
from mendnet.bench.taken_trigger import TakenTrigger
from mendnet.data.imageset import ImageSet
from mendnet.jobs.outcome import ModelOutcome


@dataclass
class Inputs:
    """What a cell works on: its base model, the (train, test) sets, the base a robustifier distils, the
    model of the cell's source and the reversed trigger taken from its trigger cell (None when it has
    none), where and how it runs."""

    art: Artefact
    sets: tuple[ImageSet, ImageSet]
    teacher: Artefact | None
    source: Artefact | None
    trigger: TakenTrigger | None
    seed: int
    device: torch.device
    progress: bool


REFUSED = "refused"
"""The info key of a repair cell whose method refused to run (`work.run_cell`): its error message."""


@dataclass
class Done:
    """A cell's result: its metrics (nested dicts allowed), its info, and what other cells may take from
    it: the job's outcome when the cell makes a model (repairs and mend), the files of its folder when it
    makes a reversed trigger (detect)."""

    metrics: dict[str, Any]
    info: dict[str, Any]
    outcome: ModelOutcome | None = None
    files: dict[str, bytes | str] | None = None
