"""TRADES (Zhang et al., ICML 2019), docs/methods.md §8.

    min_θ E [ CE(f(x), y) + β · max_{‖x′ − x‖∞ ≤ ε} KL(f(x) ‖ f(x′)) ]            (Zhang et al., Eq. 5)
The inner max is PGD-L∞ on the KL from x + 0.001·N(0, I) (the authors' start), crafted in eval mode;
then the clean and adversarial batches are forwarded separately in train mode.

Differences from the paper and the authors' release: docs/deviations.md#adversarial-training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mendnet.losses.divergence import kl_per_sample, trades_kl
from mendnet.models import Classifier
from mendnet.robust.adversary import AdversarialCE, craft
from mendnet.robust.context import RobustContext, RobustResult, Schedule, linf_budget, train_student
from mendnet.threats.adversarial.base import eval_mode
from mendnet.threats.adversarial.pgd import PGDLinf


@dataclass(frozen=True, kw_only=True)
class TradesAttack(PGDLinf):
    """PGD-L∞ ascending KL(softmax(goal) ‖ softmax(f(x′))), goal being the clean logits (not labels), so
    it runs through `craft` only, not `Attack.__call__`. Start: x + 0.001·N(0, I), projected."""

    slug: ClassVar[str] = "trades-kl"

    def loss(self, logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return kl_per_sample(goal, logits)

    def random_point(self, xs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return xs + 0.001 * torch.randn(xs.shape, generator=gen, device=xs.device, dtype=xs.dtype)


@dataclass(frozen=True)
class Config(Schedule):
    """Paper: β = 6, ε = 8/255, α = 2/255 (ε/4), 10 steps. eps None: 8/255, or 0.1 on 28×28 greyscale."""

    beta: float = 6.0
    eps: float | None = None
    alpha: float | None = None
    steps: int = 10


class TradesObjective(AdversarialCE):
    """CE(f(x), y) + β·KL(f(x) ‖ f(x′)) for the training loop; accuracy counted on the clean batch."""

    def __init__(self, attack: TradesAttack, beta: float, seed: int) -> None:
        super().__init__(attack, seed)
        self.beta = beta

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with eval_mode(model), torch.no_grad():
            reference = model(x)
        x_adv = craft(self.attack, model, x, reference, self.rng(x.device))
        clean = model(x)
        loss = F.cross_entropy(clean, y) + self.beta * trades_kl(clean, model(x_adv))
        return loss, clean


def run(model: Classifier, ctx: RobustContext, config: Config = Config()) -> RobustResult:
    """TRADES-train a copy of `model` on `ctx.train` (the input model is not changed)."""
    eps = linf_budget(config.eps, model.spec.input_shape)
    attack = TradesAttack(eps=eps, alpha=config.alpha, steps=config.steps)
    return train_student(
        copy.deepcopy(model),
        ctx,
        config,
        "TRADES",
        {"attack": attack.name, "beta": config.beta},
        objective=TradesObjective(attack, config.beta, ctx.seed),
    )
