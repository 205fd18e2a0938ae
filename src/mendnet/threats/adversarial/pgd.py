"""PGD: projected gradient descent under an L∞ or L2 budget (Madry et al., ICLR 2018).

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
    check_positive,
    per_sample,
)


@dataclass(frozen=True, kw_only=True)
class _PGD(Attack):
    """The PGD loop shared by the L∞ and L2 variants (and CW-L∞, which swaps the loss).

    Each restart attacks only the samples no earlier step or restart has broken.
    """

    alpha: float | None = None
    steps: int = 10
    restarts: int = 1
    random_start: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha is not None:
            check_positive("alpha", self.alpha)
        check_count("steps", self.steps)
        check_count("restarts", self.restarts)

    @property
    def step_size(self) -> float:
        """α, defaulting to ε/4."""
        return self.eps / 4 if self.alpha is None else self.alpha  # type: ignore[operator]

    def random_point(self, xs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A uniformly random point of the ball around `xs` (unprojected)."""
        raise NotImplementedError

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent direction of unit `norm` for gradient `g`."""
        raise NotImplementedError

    def _perturb(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, tracker: Tracker) -> None:
        gen = self.generator(x.device)
        for _ in range(self.restarts):
            idx = tracker.active()
            if len(idx) == 0:
                return
            xs, gs = x[idx], goal[idx]
            x_adv = self.project(self.random_point(xs, gen), xs) if self.random_start else xs
            for _ in range(self.steps):
                g, logits = self.grad(model, x_adv, gs)
                tracker.update(x_adv, logits, idx)
                x_adv = self.project(x_adv + self.step_size * self.direction(g), xs)
            with torch.no_grad():
                tracker.update(x_adv, model(x_adv), idx)


@dataclass(frozen=True, kw_only=True)
class PGDLinf(_PGD):
    """PGD-L∞ (Madry et al. 2018, Eq. 2): x ← Π_{B∞(x₀, ε) ∩ [0,1]}(x + α·sign ∇ₓ CE(f(x), y)).

    Starts at a uniform random point of the ε-ball (`random_start`); targeted: descends CE of the
    target. Units: pixel space [0, 1]. Defaults (32×32 colour): ε = 8/255, α = ε/4 (= 2/255),
    10 steps (use 20 for evaluation), 1 restart; `restarts` > 1 re-attacks only unbroken samples.

    Example:
        attack = PGDLinf(eps=8 / 255, steps=20)
        x_adv = attack(model, images, labels)
        accuracy = (model(x_adv).argmax(1) == labels).float().mean()
    """

    slug: ClassVar[str] = "pgd-linf"
    norm: ClassVar[str] = "linf"

    eps: float = 8 / 255

    def random_point(self, xs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand(xs.shape, generator=gen, device=xs.device, dtype=xs.dtype)
        return xs + (2 * u - 1) * self.eps

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return g.sign()


@dataclass(frozen=True, kw_only=True)
class PGDL2(_PGD):
    """PGD-L2 (Madry et al. 2018, Eq. 2 with the L2 ball): x ← Π_{B₂(x₀, ε) ∩ [0,1]}(x + α·∇/‖∇‖₂).

    ∇ = ∇ₓ CE(f(x), y), normalised per sample (a zero gradient gives a zero step). Starts at a
    uniform random point of the ε-ball: Gaussian direction, radius ε·u^(1/d) with d pixels.
    Units: pixel space [0, 1]. Defaults: ε = 0.5, α = ε/4, 10 steps, 1 restart.

    Example:
        attack = PGDL2(eps=0.5)
        x_adv = attack(model, images, labels)
        accuracy = (model(x_adv).argmax(1) == labels).float().mean()
    """

    slug: ClassVar[str] = "pgd-l2"
    norm: ClassVar[str] = "l2"

    eps: float = 0.5

    def random_point(self, xs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, d = len(xs), xs[0].numel()
        direction = self.direction(torch.randn(xs.shape, generator=gen, device=xs.device, dtype=xs.dtype))
        u = torch.rand(n, generator=gen, device=xs.device, dtype=xs.dtype)
        return xs + direction * per_sample(self.eps * u.pow(1.0 / d), xs)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        norm = g.flatten(1).norm(dim=1).clamp(min=1e-12)
        return g / per_sample(norm, g)


PGD = PGDLinf
