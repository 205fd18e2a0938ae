"""Fine-tuning (FT) baseline, docs/methods.md §2: all layers on defender data, NAD's augmentation.

Differences from the paper and the authors' release: docs/deviations.md#fine-tuning.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mendnet.models import Classifier
from mendnet.repair.context import RepairContext, RepairResult
from mendnet.train import TrainConfig, fit_in, train_config_from


@dataclass(frozen=True)
class Config:
    """SGD lr 0.01, momentum 0.9, weight decay 5e-4, 10 epochs, batch 64, constant lr (our choice: the
    papers give no schedule); random crop (pad 4), horizontal flip, Cutout 3×3 as in NAD."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 3

    def train_config(self) -> TrainConfig:
        """The training loop's settings from FT's own fields (a subclass, such as fine-pruning's Config,
        adds fields of its own)."""
        return train_config_from(self, Config, schedule="constant")


def run(
    model: Classifier,
    ctx: RepairContext,
    config: Config = Config(),
    *,
    after_backward: Callable[[nn.Module], None] | None = None,
) -> RepairResult:
    """Return a fine-tuned copy of `model` (the input model is not changed). after_backward: the training
    loop's hook, called after each backward (e.g. fine-pruning keeps pruned weights' gradients at zero)."""
    tuned = copy.deepcopy(model)
    history = fit_in(
        ctx,
        tuned,
        ctx.defender_train,
        config.train_config(),
        after_backward=after_backward,
        description="fine-tune",
    )
    return RepairResult(tuned, {"train_seconds": history.seconds})
