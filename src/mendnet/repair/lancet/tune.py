"""Neuron fine-tuning: train only the EI neurons of the chosen layer (Zhao et al., CCS 2021, §5.2;
docs/methods.md §4 step 8; details our choice).

Only the layer's weights are given to the optimiser, and a gradient mask zeroes every gradient entry
outside the EI set after each backward; with weight decay 0 (our choice, required for this) and SGD,
every other weight stays bit-identical. BatchNorm statistics are frozen too (`FrozenStats`, our choice:
the paper changes only the EI weights). Data and loss as the paper: each step trains on a batch of the
erroneous set N_e (true labels) and as many original clean training samples N_o (`MixedBatches`);
the loss is CE over both + w·KD(T = 4) to the original model's logits on the N_o rows only.

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from mendnet.data.imageset import ImageSet, to_uint8
from mendnet.errors import MendnetError
from mendnet.train import TrainConfig, TrainHistory, fit

KD_TEMPERATURE = 4.0


def kd_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = KD_TEMPERATURE
) -> torch.Tensor:
    """Hinton's distillation term per row: T²·KL(softmax(t/T) ‖ softmax(s/T)) (pure; N values)."""
    log_s = F.log_softmax(student / temperature, 1)
    log_t = F.log_softmax(teacher / temperature, 1)
    return temperature**2 * (log_t.exp() * (log_t - log_s)).sum(1)


@dataclass
class MixedBatches:
    """`fit`'s `BatchObjective` for neuron fine-tuning (paper §5.2; docs/methods.md §4 step 8): `fit`
    draws the batch of N_e; as many rows of N_o (`originals`) join it, in a seeded order that cycles
    through N_o (a 1:1 mix); loss = CE over both halves + weight · KD(T) to the frozen `original`'s
    logits on the N_o half only. The N_e half's logits count toward `fit`'s training accuracy."""

    original: nn.Module
    originals: ImageSet
    weight: float = 1.0
    temperature: float = KD_TEMPERATURE
    seed: int = 0
    _generator: torch.Generator = field(init=False, repr=False)
    _queue: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.originals) == 0:
            raise MendnetError("neuron fine-tuning needs original clean samples (N_o), got none")
        self._generator = torch.Generator().manual_seed(self.seed)
        self._queue = torch.empty(0, dtype=torch.long)

    def draw(self, count: int) -> torch.Tensor:
        """The next `count` indices of N_o (a fresh seeded permutation each time N_o runs out)."""
        while len(self._queue) < count:
            fresh = torch.randperm(len(self.originals), generator=self._generator)
            self._queue = torch.cat([self._queue, fresh])
        picked, self._queue = self._queue[:count], self._queue[count:]
        return picked

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        picked = self.draw(len(y))
        x_o = self.originals.float_images(picked).to(x.device)
        y_o = self.originals.labels[picked].to(y.device)
        logits = model(torch.cat([x, x_o]).contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits, torch.cat([y, y_o]))
        with torch.no_grad():
            teacher = self.original(x_o)
        kd = kd_loss(logits[len(y) :], teacher, self.temperature).mean()
        return loss + self.weight * kd, logits[: len(y)]


class FrozenStats(nn.Module):
    """Wraps a model so that `train()` leaves it in eval mode (BatchNorm statistics and dropout fixed)
    while `fit` trains it; parameters are the inner model's."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def train(self, mode: bool = True) -> FrozenStats:
        super().train(mode)
        self.inner.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def gradient_mask(param: nn.Parameter, mask: torch.Tensor) -> Callable[[nn.Module], None]:
    """`fit`'s after_backward hook: multiply param.grad by the 0/1 mask (param's shape)."""
    mask = mask.to(param.dtype)

    def apply(_model: nn.Module) -> None:
        if param.grad is not None:
            param.grad.mul_(mask.to(param.grad.device))

    return apply


def as_imageset(like: ImageSet, x: torch.Tensor, y: torch.Tensor) -> ImageSet:
    """Float images in [0, 1] quantised to uint8, described like `like`."""
    return like.with_data(to_uint8(x.cpu()), y.cpu())


def jitter(
    x: torch.Tensor, copies: int, seed: int, degrees: float = 10, shift: float = 2, noise: float = 0.02
):
    """`copies` transformed copies of every image (our choice: rotation within ±`degrees`, shift within
    ±`shift` pixels, Gaussian noise of σ `noise` in pixel units, clipped to [0, 1]); copies·N images."""
    gen = torch.Generator().manual_seed(seed)
    x = x.cpu().repeat(copies, 1, 1, 1)
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    move = (torch.rand(n, 2, generator=gen) * 2 - 1) * shift * 2 / torch.tensor([w, h])
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return (out + noise * torch.randn(out.shape, generator=gen)).clamp(0, 1)


def neuron_finetune(
    model: nn.Module,
    layer_name: str,
    mask: torch.Tensor,
    erroneous: ImageSet,
    originals: ImageSet,
    cfg: TrainConfig,
    kd_weight: float = 1.0,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[nn.Module, TrainHistory]:
    """A copy of `model` whose weights of `layer_name` inside the bool `mask` (its weight shape) are
    fine-tuned on N_e (`erroneous`) mixed 1:1 with N_o (`originals`), CE + KD to `model` on N_o
    (`MixedBatches`); nothing else changes. cfg.batch_size counts both halves; cfg must have
    weight_decay 0 (else decay would move the masked weights)."""
    if cfg.weight_decay != 0:
        raise ValueError("neuron fine-tuning needs weight decay 0 to keep the other weights fixed")
    original = copy.deepcopy(model).to(device).eval()
    original.requires_grad_(False)
    tuned = copy.deepcopy(model)
    param = tuned.get_submodule(layer_name).weight
    history = fit(
        FrozenStats(tuned),
        erroneous,
        replace(cfg, batch_size=max(1, cfg.batch_size // 2)),
        objective=MixedBatches(original, originals, kd_weight, seed=seed),
        params=[param],
        after_backward=gradient_mask(param, mask),
        seed=seed,
        device=device,
        progress=progress,
        description="lancet neuron fine-tuning",
    )
    return tuned.eval(), history
