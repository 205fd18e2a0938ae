"""FGSM: the fast gradient sign method (Goodfellow, Shlens & Szegedy, ICLR 2015)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mendnet.threats.adversarial.base import Attack, Tracker


@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    """One signed-gradient step of size ε (Goodfellow et al. 2015, §4: η = ε·sign(∇ₓJ(θ, x, y))).

    x' = clip₀¹(x + ε·sign ∇ₓ CE(f(x), y)); targeted: x' = clip₀¹(x − ε·sign ∇ₓ CE(f(x), t)).
    Units: pixel space [0, 1], L∞ budget ε (default 8/255, for 32×32 colour images).

    Example:
        attack = FGSM(eps=8 / 255)
        x_adv = attack(model, images, labels)
        accuracy = (model(x_adv).argmax(1) == labels).float().mean()
    """

    slug: ClassVar[str] = "fgsm"
    norm: ClassVar[str] = "linf"

    eps: float = 8 / 255

    def _perturb(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, tracker: Tracker) -> None:
        idx = tracker.active()
        if len(idx) == 0:
            return
        xs = x[idx]
        g, _ = self.grad(model, xs, goal[idx])
        x_adv = self.project(xs + self.eps * g.sign(), xs)
        with torch.no_grad():
            tracker.update(x_adv, model(x_adv), idx)
