"""PGD-AT: adversarial training of Madry et al. (ICLR 2018), docs/methods.md §8.

    min_θ E_(x,y) [ max_{‖δ‖∞ ≤ ε} CE(f_θ(x + δ), y) ]                          (Madry et al., Eq. 2.1)
the inner max by PGD-L∞ (uniform random start, α·sign steps, projection), crafted with the model in eval
mode, then a train-mode update on the adversarial batch only. Cost ≈ (steps + 1)× natural training.
`norm="l2"` trains against PGD-L2 instead (Robust-KD's teacher: ε = 0.5).

Differences from the paper and the authors' release: docs/deviations.md#adversarial-training.
"""

from __future__ import annotations

from dataclasses import dataclass

from mendnet.errors import MendnetError
from mendnet.models import Classifier
from mendnet.robust.adversary import adversarial_training
from mendnet.robust.context import RobustContext, RobustResult, Schedule, linf_budget
from mendnet.threats.adversarial.pgd import PGDL2, PGDLinf


@dataclass(frozen=True)
class Config(Schedule):
    """Paper: ε = 8/255, α = 2/255 (= ε/4), 10 steps, random start. eps None: 8/255, or 0.1 on 28×28
    greyscale (docs/methods.md §5), or 0.5 with norm "l2"; alpha None: ε/4. Schedule: see `Schedule` (our
    choice)."""

    norm: str = "linf"
    eps: float | None = None
    alpha: float | None = None
    steps: int = 10


def attack_of(config: Config, input_shape: tuple[int, int, int]) -> PGDLinf | PGDL2:
    """The training attack: PGD-L∞ or PGD-L2 with the config's budget (validated by the attack class)."""
    if config.norm == "l2":
        return PGDL2(eps=0.5 if config.eps is None else config.eps, alpha=config.alpha, steps=config.steps)
    if config.norm != "linf":
        raise MendnetError(f"norm must be linf or l2, got {config.norm!r}")
    eps = linf_budget(config.eps, input_shape)
    return PGDLinf(eps=eps, alpha=config.alpha, steps=config.steps, random_start=True)


def run(model: Classifier, ctx: RobustContext, config: Config = Config()) -> RobustResult:
    """Adversarially train a copy of `model` on `ctx.train` (the input model is not changed)."""
    attack = attack_of(config, model.spec.input_shape)
    return adversarial_training(model, ctx, config, attack, "PGD-AT")
