"""What every repair receives besides the model and its config, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mendnet.data.imageset import ImageSet
from mendnet.models import Classifier


@dataclass
class RepairContext:
    """Defender data (clean; `val` is the 10% held out for every stopping rule), device, seed, and an
    optional teacher model given by the user."""

    defender_train: ImageSet
    defender_val: ImageSet
    device: torch.device | str = "cpu"
    seed: int = 0
    progress: bool = True
    teacher: Classifier | None = None


@dataclass
class RepairResult:
    """The repaired model and what the method wants recorded (JSON-able)."""

    model: Classifier
    info: dict[str, Any] = field(default_factory=dict)
