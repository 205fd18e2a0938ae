"""The retuning attack (Min et al., NeurIPS 2024, "Uncovering, Explaining, and Mitigating the Superficial
Safety of Backdoor Defense"; docs/methods.md §1): does a repaired model regain its backdoor when
fine-tuned on a handful of poisoned images?

The repaired model is fine-tuned on clean images of which the first `poisoned` are replaced by training
images stamped with the attacker's trigger and labelled as its target (the release's `ft_poison.py`:
5 poisoned images, the clean part 2% of the training set, SGD lr 0.01, momentum 0.9, constant lr, 5
epochs, batch 128). The ASR measured afterwards is the "retune ASR". It uses the attacker's trigger: a
benchmark check, never a step of a repair.

Differences from the paper and the authors' release: docs/deviations.md#backdoor-attacks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mendnet.data.imageset import ImageSet, to_uint8
from mendnet.errors import MendnetError
from mendnet.threats.backdoor.trigger import Trigger
from mendnet.train import TrainConfig, fit, train_config_from


@dataclass(frozen=True)
class RetuneConfig:
    """The release's settings (`fine_tune/ft_poison.py` and its README command)."""

    poisoned: int = 5
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.poisoned < 1:
            raise MendnetError(f"the retuning attack needs at least 1 poisoned image, got {self.poisoned}")

    def train_config(self) -> TrainConfig:
        return train_config_from(self, weight_decay=0.0, schedule="constant")


def retune_set(clean: ImageSet, source: ImageSet, trigger: Trigger, target: int, count: int) -> ImageSet:
    """`clean` with its first `count` images replaced by the first `count` images of `source` whose label
    is not `target`, stamped with `trigger` and labelled `target` (pixel space [0, 1], stored uint8)."""
    pick = torch.nonzero(source.labels != target).flatten()[:count]
    if len(pick) < count or len(clean) < count:
        raise MendnetError(f"the retuning attack needs {count} images of other labels than {target}")
    stamped = to_uint8(trigger.apply(source.float_images(pick)))
    images = torch.cat([stamped, clean.images[count:]])
    labels = torch.cat([torch.full((count,), target, dtype=clean.labels.dtype), clean.labels[count:]])
    return clean.with_data(images, labels)


def retune(
    model: nn.Module,
    clean: ImageSet,
    source: ImageSet,
    trigger: Trigger,
    target: int,
    config: RetuneConfig = RetuneConfig(),
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> nn.Module:
    """A copy of `model` after the retuning attack (the input model is not changed)."""
    data = retune_set(clean, source, trigger, target, config.poisoned)
    tuned = copy.deepcopy(model)
    fit(tuned, data, config.train_config(), seed=seed, device=device, progress=progress, description="retune")
    return tuned.eval()
