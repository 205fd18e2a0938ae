"""Feature Shift Tuning (FST; Min et al., NeurIPS 2023), docs/methods.md §2.

The classifier head (the last linear layer with one output per class) is re-initialised, then every
weight is fine-tuned on the defender data with

    L = CE + α · ⟨w, w_ori⟩   subject to ‖w‖_F = ‖w_ori‖_F,

w the new head's weight matrix and w_ori the backdoored model's (frozen copy). The penalty pushes the new
head away from the original one, so that the features shift away from the backdoor's; after every
optimiser step w is rescaled to the original norm (the constraint), without which the penalty would
only shrink w.

Differences from the paper and the authors' release: docs/deviations.md#fst.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.models import Classifier
from mendnet.repair.context import RepairContext, RepairResult
from mendnet.train import TrainConfig, fit_in, train_config_from


@dataclass(frozen=True)
class Config:
    """The authors' release (AISafety-HKUST/stable_backdoor_purification, `fine_tune/ft.py`, its README's
    CIFAR-10 command): α 0.1, SGD lr 0.01, momentum 0.9, no weight decay, 10 epochs, batch 128, cosine
    schedule; random crop (pad 4) and horizontal flip as the release's training transform."""

    alpha: float = 0.1
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    crop_padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise MendnetError(f"FST's alpha must be a number ≥ 0, got {self.alpha}")

    def train_config(self) -> TrainConfig:
        return train_config_from(self, schedule="cosine")


def head_name(model: Classifier) -> str:
    """The classifier head: the last `nn.Linear` (in module order) with one output per class."""
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.out_features == model.spec.num_classes
    ]
    if not names:
        raise MendnetError(
            f"FST needs a final linear layer with {model.spec.num_classes} outputs; "
            f"{model.spec.arch} has none"
        )
    return names[-1]


def shift_penalty(weight: torch.Tensor, original: torch.Tensor, alpha: float) -> torch.Tensor:
    """α · ⟨w, w_ori⟩ = α · Σ w ⊙ w_ori (pure; a scalar)."""
    return alpha * (weight * original).sum()


def reinitialise(head: nn.Linear, generator: torch.Generator) -> None:
    """The release's re-initialisation: weight and bias uniform in ±1/√(in_features)."""
    bound = 1.0 / math.sqrt(head.in_features)
    with torch.no_grad():
        for param in (head.weight, head.bias):
            if param is not None:
                param.copy_(torch.empty(param.shape).uniform_(-bound, bound, generator=generator))


@dataclass
class ShiftPenalty:
    """`LossTerm` for `fit`: α · ⟨w, w_ori⟩ on the head's current weight."""

    head: nn.Linear
    original: torch.Tensor
    alpha: float
    taps: tuple[str, ...] = ()

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return shift_penalty(self.head.weight, self.original, self.alpha)


def norm_projection(head: nn.Linear, norm: float) -> Callable[[nn.Module], None]:
    """`fit`'s after_step hook: rescale the head's weight to Frobenius norm `norm`."""

    def project(_model: nn.Module) -> None:
        with torch.no_grad():
            head.weight.mul_(norm / head.weight.norm().clamp_min(1e-12))

    return project


def run(model: Classifier, ctx: RepairContext, config: Config = Config()) -> RepairResult:
    """Return an FST-tuned copy of `model` (the input model is not changed)."""
    tuned = copy.deepcopy(model)
    name = head_name(tuned)
    head = tuned.get_submodule(name)
    original = head.weight.detach().clone().to(ctx.device)
    norm = float(original.norm())
    reinitialise(head, torch.Generator().manual_seed(ctx.seed))
    history = fit_in(
        ctx,
        tuned,
        ctx.defender_train,
        config.train_config(),
        extra_loss=ShiftPenalty(head, original, config.alpha),
        after_step=norm_projection(head, norm),
        description="feature shift tuning",
    )
    return RepairResult(tuned, {"head": name, "train_seconds": history.seconds})
