"""Carlini–Wagner attacks (IEEE S&P 2017): CW-L2, and CW-L∞ as PGD-L∞ on the CW margin loss.

Differences from the paper and the authors' release: docs/deviations.md#adversarial-attacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from mendnet.threats.adversarial.pgd import PGDLinf


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample CW margin max_{j≠y} Z_j − Z_y (positive exactly when the sample is misclassified).

    The true class is excluded by masking its logit with −∞ before the max, never by multiplying
    with a one-hot vector (that would put a 0 among the candidates and give max(0, …) whenever all
    other logits are negative). logits: float N×K with K ≥ 2; y: int N. Returns float N.
    """
    true = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, y.unsqueeze(1), True)
    other = logits.masked_fill(true, float("-inf")).amax(dim=1)
    return other - logits.gather(1, y.unsqueeze(1)).squeeze(1)


@dataclass(frozen=True, kw_only=True)
class CWLinf(PGDLinf):
    """CW-L∞: PGD-L∞ (Madry et al. 2018, Eq. 2) ascending the margin loss of Carlini & Wagner 2017.

    x ← Π_{B∞(x₀, ε) ∩ [0,1]}(x + α·sign ∇ₓ(max_{j≠y} Z_j − Z_y)); targeted: ascends
    Z_t − max_{j≠t} Z_j. Z are the logits. Units: pixel space [0, 1]. Defaults as PGD-L∞:
    ε = 8/255, α = ε/4, 10 steps, random start, 1 restart.

    Example:
        attack = CWLinf(eps=8 / 255, steps=20)
        x_adv = attack(model, images, labels)
        accuracy = (model(x_adv).argmax(1) == labels).float().mean()
    """

    slug: ClassVar[str] = "cw-linf"

    def loss(self, logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The margin max_{j≠goal} Z_j − Z_goal (ascended untargeted, descended targeted)."""
        return margin_loss(logits, goal)


@dataclass(frozen=True, kw_only=True)
class CWL2(Attack):
    """CW-L2 (Carlini & Wagner 2017, §V.A with objective f₆ of §IV.A): the smallest L2 perturbation.

    x' = (tanh(w) + 1)/2 (always inside [0, 1]); per sample, Adam minimises
        ‖x' − x‖₂² + c·max(Z_y − max_{j≠y} Z_j, −κ)          (untargeted)
        ‖x' − x‖₂² + c·max(max_{j≠t} Z_j − Z_t, −κ)          (targeted, target t)
    from w = atanh(2x − 1). A binary search on c per sample (`search_steps` rounds, each restarting
    Adam): after a success c ← (lo + hi)/2 with hi = c; after a failure c ← 10c until a success
    bounds it, then bisection. Every iterate is checked; a sample's result is its smallest-L2
    iterate that is adversarial (with margin ≥ κ), and x itself when none is.
    There is no ε-ball (eps is None; only the [0, 1] clip applies). Units: pixel space [0, 1].
    Defaults: κ = 0, lr 0.01, 100 steps, 5 search steps, initial c = 1 **(our choice**: the paper's
    code starts at 1e-3, which wastes search rounds on undefended models; set `c` to change it).

    Example:
        attack = CWL2(steps=100, search_steps=5)
        x_adv = attack(model, images, labels)
        l2 = (x_adv - images).flatten(1).norm(dim=1)
    """

    slug: ClassVar[str] = "cw-l2"
    norm: ClassVar[str] = "l2"
    bounded: ClassVar[bool] = False

    eps: float | None = field(default=None, init=False)
    c: float = 1.0
    kappa: float = 0.0
    lr: float = 0.01
    steps: int = 100
    search_steps: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("c", self.c)
        check_nonnegative("kappa", self.kappa)
        check_positive("lr", self.lr)
        check_count("steps", self.steps)
        check_count("search_steps", self.search_steps)

    def _perturb(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, tracker: Tracker) -> None:
        idx = tracker.active()
        if len(idx) == 0:
            return
        xs, gs = x[idx], goal[idx]
        w0 = torch.atanh((2 * xs - 1) * (1 - 1e-6))
        c = torch.full((len(xs),), self.c, device=xs.device, dtype=xs.dtype)
        lo, hi = torch.zeros_like(c), torch.full_like(c, float("inf"))
        best, best_l2 = xs.clone(), torch.full_like(c, float("inf"))
        for _ in range(self.search_steps):
            w = w0.clone().requires_grad_(True)
            adam = torch.optim.Adam([w], lr=self.lr)
            found = torch.zeros_like(c, dtype=torch.bool)
            for _ in range(self.steps):
                with torch.enable_grad():
                    x_adv = self.project((torch.tanh(w) + 1) / 2, xs)
                    logits = model(x_adv)
                    l2 = (x_adv - xs).flatten(1).pow(2).sum(dim=1)
                    margin = self.sign * margin_loss(logits, gs)  # ≥ κ: adversarial with confidence κ
                    total = (l2 + c * (-margin).clamp(min=-self.kappa)).sum()
                    (w.grad,) = torch.autograd.grad(total, w)
                ok = self.broken(logits.detach(), gs) & (margin.detach() >= self.kappa)
                better = ok & (l2.detach() < best_l2)
                best = torch.where(per_sample(better, xs), x_adv.detach(), best)
                best_l2 = torch.where(better, l2.detach(), best_l2)
                found |= ok
                adam.step()
            hi = torch.where(found, torch.minimum(hi, c), hi)
            lo = torch.where(found, lo, torch.maximum(lo, c))
            c = torch.where(hi.isfinite(), (lo + hi) / 2, c * 10)
        tracker.record(best, best_l2.isfinite(), idx)
