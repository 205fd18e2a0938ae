"""Neuron fine-tuning: train only the EI neurons of the chosen layer (Zhao et al., CCS 2021, §5.2;
docs/methods.md §4 step 8; details our choice).

Only the layer's weights are given to the optimiser, and a gradient mask zeroes every gradient entry
outside the EI set after each backward; with weight decay 0 (our choice, required for this) and SGD,
every other weight stays bit-identical. BatchNorm statistics are frozen too (`FrozenStats`, our choice:
the paper changes only the EI weights). Data: the erroneous set N_e (true labels) mixed 1:1 with N_o,
original clean training samples; loss CE + w·KD(T = 4) to the original model's logits. `fit` does not
tell which batch rows came from N_o, so the KD term is applied to the rows the original model
classifies as their label (our choice): N_o's rows less the few it gets wrong, whose logits would teach
the error. Backdoor N_e holds only erroneous rows (`repair.erroneous_set`), so there it is the paper's
KD on N_o up to those few rows; jittered defect copies the original classifies correctly do get KD,
towards their label. An earlier comparison with other row choices was scored on test images and chose
nothing; no validation-split run has checked this choice yet (docs/deviations.md#ai-lancet).

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mendnet.data.imageset import ImageSet, to_uint8
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
class KDToOriginal:
    """`LossTerm` for `fit`: weight · mean KD to the frozen original model over the rows it classifies
    as their label (zero when there are none)."""

    original: nn.Module
    weight: float = 1.0
    temperature: float = KD_TEMPERATURE
    taps: tuple[str, ...] = ()

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        with torch.no_grad():
            teacher = self.original(x)
        keep = (teacher.argmax(1) == y).float()
        per_row = kd_loss(logits, teacher, self.temperature)
        return self.weight * (per_row * keep).sum() / keep.sum().clamp_min(1.0)


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


def mixed_set(erroneous: ImageSet, originals: ImageSet, seed: int) -> ImageSet:
    """N_e and as many original samples, 1:1 (a seeded order of N_o, repeated when N_o is smaller)."""
    order = torch.randperm(len(originals), generator=torch.Generator().manual_seed(seed))
    pick = order.repeat(-(-len(erroneous) // len(originals)))[: len(erroneous)]
    images = torch.cat([erroneous.images, originals.images[pick]])
    labels = torch.cat([erroneous.labels, originals.labels[pick]])
    return originals.with_data(images, labels)


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
    data: ImageSet,
    cfg: TrainConfig,
    kd_weight: float = 1.0,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[nn.Module, TrainHistory]:
    """A copy of `model` whose weights of `layer_name` inside the bool `mask` (its weight shape) are
    fine-tuned on `data` (N_e ∪ N_o, see `mixed_set`) with CE + KD to `model`; nothing else changes.
    cfg must have weight_decay 0 (else decay would move the masked weights)."""
    if cfg.weight_decay != 0:
        raise ValueError("neuron fine-tuning needs weight decay 0 to keep the other weights fixed")
    original = copy.deepcopy(model).to(device).eval()
    original.requires_grad_(False)
    tuned = copy.deepcopy(model)
    param = tuned.get_submodule(layer_name).weight
    history = fit(
        FrozenStats(tuned),
        data,
        cfg,
        extra_loss=KDToOriginal(original, kd_weight),
        params=[param],
        after_backward=gradient_mask(param, mask),
        seed=seed,
        device=device,
        progress=progress,
        description="lancet neuron fine-tuning",
    )
    return tuned.eval(), history
