"""What every robustness method receives besides the model and its config, and what it returns; the
training-loop settings they share.

Differences from the paper and the authors' release: docs/deviations.md#adversarial-training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.models import Classifier
from mendnet.threats.adversarial.registry import GREYSCALE_28_LINF_EPS
from mendnet.train import TrainConfig, fit_in, train_config_from


@dataclass
class RobustContext:
    """The method's training data (the target task, or its target half), device, seed, and the teacher
    (frozen; robust for Robust-KD and Shafahi, naturally trained for AGKD-BML; None for the others)."""

    train: ImageSet
    device: torch.device | str = "cpu"
    seed: int = 0
    progress: bool = True
    teacher: Classifier | None = None

    def require_teacher(self, method: str, kind: str) -> Classifier:
        """The teacher, or a MendnetError naming what the method needs."""
        if self.teacher is None:
            raise MendnetError(f"{method} needs a {kind} teacher (--teacher ARTEFACT)")
        return self.teacher


@dataclass
class RobustResult:
    """The trained model and what the method wants recorded (JSON-able), `train_seconds` among it."""

    model: Classifier
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    """Training-loop settings every method shares: SGD with momentum, cosine lr per step, no augmentation.

    The papers train CIFAR-10 for 100–200 epochs; these defaults are our choice for 28×28 images.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def train_config(self) -> TrainConfig:
        """The loop's settings from the fields declared here (a method's own fields, such as AGKD-BML's
        label_smoothing, do not reach the loop)."""
        return train_config_from(self, Schedule, schedule="cosine")


def train_student(
    student: Classifier,
    ctx: RobustContext,
    schedule: Schedule,
    description: str,
    info: dict[str, Any],
    **hooks: Any,
) -> RobustResult:
    """Train `student` in place on `ctx.train` with `schedule`'s loop settings and `hooks` (the loop's
    extra_loss or objective); the result's info is `info` and the training seconds."""
    history = fit_in(ctx, student, ctx.train, schedule.train_config(), description=description, **hooks)
    return RobustResult(student, {**info, "train_seconds": history.seconds})


def linf_budget(eps: float | None, input_shape: tuple[int, ...]) -> float:
    """The L∞ budget in pixel units: `eps`, else 0.1 for 1×28×28 images and 8/255 otherwise (§5).

    MendnetError unless it lies in (0, 1] (a larger ball contains every image).
    """
    value = eps
    if value is None:
        value = GREYSCALE_28_LINF_EPS if tuple(input_shape) == (1, 28, 28) else 8 / 255
    if not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise MendnetError(f"the L∞ budget eps must lie in (0, 1] pixel units, got {value!r}")
    return float(value)
