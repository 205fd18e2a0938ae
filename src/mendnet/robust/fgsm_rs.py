"""FGSM-RS, "fast adversarial training" (Wong, Rice & Kolter, ICLR 2020), docs/methods.md §8.

    δ ~ U[−ε, ε],  δ ← Π_ε(δ + α·sign ∇_δ CE(f(x + δ), y)),  α = 1.25 ε          (Wong et al., Alg. 3)
then CE(f(x + δ), y) is minimised. One PGD-L∞ step from a random start, so cost ≈ 2× natural training.
Our choices: the step is crafted in eval mode like PGD-AT (the paper uses the train-mode forward) and
the schedule is `Schedule`'s cosine, not the paper's cyclic lr.

Differences from the paper and the authors' release: docs/deviations.md#adversarial-training.
"""

from __future__ import annotations

from dataclasses import dataclass

from mendnet.models import Classifier
from mendnet.robust.adversary import adversarial_training
from mendnet.robust.context import RobustContext, RobustResult, Schedule, linf_budget
from mendnet.threats.adversarial.pgd import PGDLinf


@dataclass(frozen=True)
class Config(Schedule):
    """Paper: α = 1.25 ε, uniform random start. eps None: 8/255, or 0.1 on 28×28 greyscale."""

    eps: float | None = None
    step_factor: float = 1.25


def run(model: Classifier, ctx: RobustContext, config: Config = Config()) -> RobustResult:
    """Fast-adversarially train a copy of `model` on `ctx.train` (the input model is not changed)."""
    eps = linf_budget(config.eps, model.spec.input_shape)
    attack = PGDLinf(eps=eps, alpha=config.step_factor * eps, steps=1, random_start=True)
    return adversarial_training(model, ctx, config, attack, "FGSM-RS")
