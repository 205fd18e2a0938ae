"""Adversarial examples for training, made by the attack classes of `threats.adversarial`.

Training needs the attack's final iterate (the point of highest loss, Madry et al. 2018), not the
evaluation bookkeeping of `Attack.__call__` (first breaking point, input checks that sync with the
host, only still-robust samples attacked). `craft` therefore runs the attack's own step rule — its
random start, steepest-ascent direction, step size and `project` (the one ε-ball and [0, 1] clip) —
for `steps` iterations on the whole batch, with the model in eval mode (docs/methods.md §8).

Differences from the paper and the authors' release: docs/deviations.md#adversarial-training.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mendnet.robust.context import RobustContext, RobustResult, Schedule, train_student
from mendnet.threats.adversarial.base import eval_mode
from mendnet.threats.adversarial.pgd import PGDL2, PGDLinf


def craft(
    attack: PGDLinf | PGDL2,
    model: nn.Module,
    x: torch.Tensor,
    goal: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """The final PGD iterate of `attack` from `x` (detached, inside its ball and [0, 1]).

    goal: what the attack's `loss` takes with the logits (true labels; target labels when
    `attack.targeted`; a TRADES attack's clean logits). generator: for the random start, on x's device.
    Gradients go to the input only; the model's train/eval flags are restored.
    """
    x = x.detach()
    with eval_mode(model):
        x_adv = attack.project(attack.random_point(x, generator), x) if attack.random_start else x
        for _ in range(attack.steps):
            g, _ = attack.grad(model, x_adv, goal)
            x_adv = attack.project(x_adv + attack.step_size * attack.direction(g), x)
    return x_adv.detach()


class AdversarialCE:
    """Batch objective CE(f(x′), y) with x′ = craft(attack, …) (Madry et al. 2018, Eq. 2.1; FGSM-RS)."""

    def __init__(self, attack: PGDLinf | PGDL2, seed: int) -> None:
        self.attack = attack
        self.seed = seed
        self.generator: torch.Generator | None = None

    def rng(self, device: torch.device) -> torch.Generator:
        """One generator per run on the batch's device, seeded once (fresh noise every batch)."""
        if self.generator is None:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        return self.generator

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv = craft(self.attack, model, x, y, self.rng(x.device))
        logits = model(x_adv)
        return F.cross_entropy(logits, y), logits


def adversarial_training(
    model: nn.Module, ctx: RobustContext, schedule: Schedule, attack: PGDLinf | PGDL2, description: str
) -> RobustResult:
    """Train a copy of `model` on `ctx.train` with CE on `attack`'s examples (the input model is not
    changed); PGD-AT and FGSM-RS differ only in the attack."""
    return train_student(
        copy.deepcopy(model),
        ctx,
        schedule,
        description,
        {"attack": attack.name},
        objective=AdversarialCE(attack, ctx.seed),
    )
