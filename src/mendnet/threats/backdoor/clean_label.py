"""Clean-label backdoor (Turner, Tsipras & Madry, "Label-Consistent Backdoor Attacks", 2019).

Target-class training images are first made hard to classify by an adversarial perturbation against a
separately trained clean model (PGD-L∞, untargeted: away from their own class), then stamped with a
3×3 checkerboard at all four corners; labels are never changed. The model learns to rely on the
stamp because the perturbed images' own features no longer point to their class. At test time the
trigger is the four-corner stamp alone.

docs/methods.md §1: ε = 16/255 for 28×28 greyscale images and 8/255 for CIFAR (pixel space [0, 1]),
step ε/8, 50 steps.

Cost: 50 forward/backward passes of the clean model per poisoned image; all 6,000 images of one
Fashion-MNIST class take as long as about five training epochs over them.

Differences from the paper and the authors' release: docs/deviations.md#backdoor-attacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.threats.adversarial.pgd import PGDLinf
from mendnet.threats.backdoor.badnets import checkerboard
from mendnet.threats.backdoor.trigger import TriggerSetup, field_params

PGD_BATCH = 256  # images per PGD call while poisoning (memory only; results do not depend on it)


def default_eps(shape: tuple[int, int, int]) -> float:
    """16/255 for 1×28×28 greyscale images, else 8/255 (the CIFAR budget; our choice for other shapes)."""
    return 16 / 255 if tuple(shape) == (1, 28, 28) else 8 / 255


@dataclass(frozen=True, kw_only=True)
class FullPGDLinf(PGDLinf):
    """PGD-L∞ that runs every step on every image and returns the last iterate.

    Turner et al. maximise the loss within the budget; the base attack instead keeps each image's first
    misclassified iterate (what robust accuracy needs), which would leave the poisons barely across the
    decision boundary. Declaring no image "broken" keeps all of them in play to the last step.
    """

    def broken(self, logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(goal), dtype=torch.bool, device=goal.device)


def four_corners(x: torch.Tensor, size: int, margin: int) -> torch.Tensor:
    """`x` with a size×size checkerboard `margin` pixels from each of its four corners, every channel."""
    h, w = x.shape[-2:]
    if 2 * (size + margin) > min(h, w):
        raise MendnetError(f"cl: four {size}px stamps with margin {margin} do not fit {h}×{w}")
    out = x.clone()
    patch = checkerboard(size).to(device=x.device, dtype=x.dtype)
    lo, hi_r, hi_c = margin, h - margin - size, w - margin - size
    for r0 in (lo, hi_r):
        for c0 in (lo, hi_c):
            out[..., r0 : r0 + size, c0 : c0 + size] = patch
    return out


@dataclass(frozen=True)
class CLTrigger:
    """Clean-label attack of Turner et al. (2019): poison = stamp(PGD(x)), test trigger = stamp(x).

    eps: L∞ budget in pixel units (None: 16/255 on 1×28×28 images, else 8/255, fixed by `prepare`).
    alpha: PGD step (None: ε/8). steps: PGD iterations (50). size: the checkerboard side (3).
    margin: its distance from each corner (1, as BadNets; our choice). seed: PGD's random start.
    model: the clean model the perturbation attacks (set by `prepare`; not a parameter, not needed to
    rebuild the test-time trigger).
    """

    eps: float | None = None
    alpha: float | None = None
    steps: int = 50
    size: int = 3
    margin: int = 1
    seed: int = 0
    name: str = "cl"
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.size < 1 or self.margin < 0 or self.steps < 1:
            raise MendnetError("cl: size and steps must be ≥ 1 and margin ≥ 0")

    @classmethod
    def prepare(cls, params: dict[str, Any], setup: TriggerSetup) -> CLTrigger:
        """Fix ε for the data set's shape and attach the setup's clean model."""
        trigger = cls(**params)
        eps = trigger.eps if trigger.eps is not None else default_eps(setup.train.shape)
        model = setup.model("cl").to(setup.device)
        return replace(trigger, eps=eps, alpha=trigger.alpha or eps / 8, model=model)

    def attack(self) -> FullPGDLinf:
        if self.eps is None:
            raise MendnetError("cl: eps is not set (prepare the trigger for a data set)")
        return FullPGDLinf(eps=self.eps, alpha=self.alpha or self.eps / 8, steps=self.steps, seed=self.seed)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return four_corners(x, self.size, self.margin).clamp(0.0, 1.0)

    def poison_batch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training-time poison: PGD-L∞ away from label y against the clean model, then the stamp."""
        if self.model is None:
            raise MendnetError("cl: poisoning needs the clean model (prepare the trigger with one)")
        attack = self.attack()
        device = next(self.model.parameters()).device
        parts = [
            attack(self.model, x[i : i + PGD_BATCH].to(device), y[i : i + PGD_BATCH].to(device)).cpu()
            for i in range(0, len(x), PGD_BATCH)
        ]
        return self.apply(torch.cat(parts) if parts else x)

    def params(self) -> dict[str, Any]:
        return field_params(self)
