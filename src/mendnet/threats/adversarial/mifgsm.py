"""MI-FGSM: momentum iterative FGSM (Dong et al., CVPR 2018).

Differences from the paper and the authors' release: docs/deviations.md#adversarial-attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mendnet.threats.adversarial.base import (
    Attack,
    Tracker,
    check_count,
    check_nonnegative,
    check_positive,
    per_sample,
)


@dataclass(frozen=True, kw_only=True)
class MIFGSM(Attack):
    """MI-FGSM (Dong et al. 2018, Algorithm 1): momentum over L1-normalised gradients.

    g ← μ·g + ∇ₓ CE(f(x), y) / ‖∇ₓ CE(f(x), y)‖₁ (per sample), x ← Π(x + α·sign g), starting at
    x₀ with g = 0; Π is the L∞ ε-ball and [0, 1] clip. Targeted: descends CE of the target.
    Units: pixel space [0, 1]. Defaults (32×32 colour): μ = 1.0, ε = 8/255, α = ε/10, 10 steps.

    Example:
        attack = MIFGSM(eps=8 / 255, steps=10)
        x_adv = attack(model, images, labels)
        accuracy = (model(x_adv).argmax(1) == labels).float().mean()
    """

    slug: ClassVar[str] = "mi-fgsm"
    norm: ClassVar[str] = "linf"

    eps: float = 8 / 255
    alpha: float | None = None
    steps: int = 10
    mu: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha is not None:
            check_positive("alpha", self.alpha)
        check_count("steps", self.steps)
        check_nonnegative("mu", self.mu)

    @property
    def step_size(self) -> float:
        """α, defaulting to ε/10."""
        return self.eps / 10 if self.alpha is None else self.alpha

    def _perturb(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, tracker: Tracker) -> None:
        idx = tracker.active()
        if len(idx) == 0:
            return
        xs, gs = x[idx], goal[idx]
        x_adv, momentum = xs, torch.zeros_like(xs)
        for _ in range(self.steps):
            g, logits = self.grad(model, x_adv, gs)
            tracker.update(x_adv, logits, idx)
            l1 = g.flatten(1).abs().sum(dim=1).clamp(min=1e-12)
            momentum = self.mu * momentum + g / per_sample(l1, g)
            x_adv = self.project(x_adv + self.step_size * momentum.sign(), xs)
        with torch.no_grad():
            tracker.update(x_adv, model(x_adv), idx)
