"""The pieces the distillation methods share: a frozen teacher, and the feature-distance loss term."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from mendnet.models import Classifier
from mendnet.models.taps import FeatureTap


def frozen_copy(teacher: Classifier, device: torch.device | str) -> Classifier:
    """A copy of `teacher` on `device`, in eval mode, every parameter frozen (the caller's is untouched)."""
    frozen = copy.deepcopy(teacher).to(device, memory_format=torch.channels_last).eval()
    for prm in frozen.parameters():
        prm.requires_grad_(False)
    return frozen


class FeatureDistillation:
    """The training loop's `LossTerm` weight · Σ_l distance(F_S^l(x), F_T^l(x)) on the clean batch, the
    teacher's features taken under no_grad. `taps` are module names present in both models."""

    def __init__(
        self,
        teacher: Classifier,
        taps: tuple[str, ...],
        distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        weight: float,
    ) -> None:
        self.teacher = teacher
        self.taps = taps
        self.distance = distance
        self.weight = weight

    def teacher_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad(), FeatureTap(self.teacher, self.taps) as feats:
            self.teacher(x)
        return feats

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        t_feats = self.teacher_features(x)
        total = sum(self.distance(features[name], t_feats[name]) for name in self.taps)
        return self.weight * total  # type: ignore[return-value]
