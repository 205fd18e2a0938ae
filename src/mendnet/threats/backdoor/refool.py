"""Refool (Liu, Ma, Bailey & Lu, "Reflection Backdoor: A Natural Backdoor Attack on Deep Neural
Networks", ECCV 2020): reflections of other images added to the input as the trigger.

The paper models a reflection as x' = x + x_R ⊗ k with a kernel k for each reflection type; docs/methods.md
§1 keeps two of them: out-of-focus (k a Gaussian, σ in [1, 3]) and ghost (k two shifted, attenuated
pulses), chosen with probability 0.5 each, and weights the reflection by α = 0.4:
x' = clip(x + α·R(r)) in pixel space [0, 1]. The reflections r come from a held-out pool of training
images of classes other than the target (the paper draws them from PascalVOC and selects the most
effective ones adversarially; we draw a seeded pool and skip the selection, our choice). Clean-label
by default.

Which reflection an image receives (pool entry, type, σ, ghost weight and shift) is a deterministic
function of its quantised pixels and the seed (our choice), so the same image gets the same
reflection in every batch and after every rebuild, and test images draw from the same pool.

Differences from the paper and the authors' release: docs/deviations.md#backdoor-attacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.threats.backdoor.trigger import TriggerSetup, field_params

HASH_MODULUS = 2**31 - 1
GHOST_WEIGHT = (0.3, 0.7)  # weight a of the shifted copy in (1 − a)·r + a·shift(r) (our choice)
DRAWS = 6  # per image: pool entry, ghost or blur, σ, ghost weight, row shift, column shift


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of N×C×H×W `x` with its own Gaussian σ (N values, pixels); separable, replicate
    padding, radius ⌈3·max σ⌉, all images in one grouped convolution."""
    n, c, h, w = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-(taps[None, :] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    g = (g / g.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (N·C)×(2r+1)
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), g[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), g[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Translate each image by its own (dy, dx) pixels (down/right positive), filling with 0 (no wrap)."""
    n, _, h, w = x.shape
    m = int(max(dy.abs().max(), dx.abs().max(), 0))
    padded = F.pad(x, (m, m, m, m)).permute(0, 2, 3, 1)  # N×(H+2m)×(W+2m)×C
    rows = (m - dy)[:, None] + torch.arange(h, device=x.device)[None, :]
    cols = (m - dx)[:, None] + torch.arange(w, device=x.device)[None, :]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@dataclass(frozen=True)
class RefoolTrigger:
    """x' = clip(x + α·R(r), 0, 1), r a pool image, R out-of-focus blur or ghost (Liu et al. 2020).

    alpha: reflection weight α (0.4). ghost_prob: probability of a ghost rather than a blur (0.5).
    sigma_min, sigma_max: range of the blur's σ in pixels ([1, 3]). pool_size: reflection images (200,
    our choice). pool: their indices in the full training set (set by `prepare`). seed: seeds the pool
    choice and the per-image draws. Ghost (our choice of the two-pulse kernel's parameters):
    R(r) = (1 − a)·r + a·shift(r, d), a ∈ [0.3, 0.7], each shift component ±(⌈m/2⌉ … m) pixels with
    m = max(1, min(H, W) // 7) (2 … 4 px on 28×28 and 32×32). images: the pool's uint8 images (attached
    by `prepare` or `from_params`; not a parameter).
    """

    alpha: float = 0.4
    ghost_prob: float = 0.5
    sigma_min: float = 1.0
    sigma_max: float = 3.0
    pool_size: int = 200
    pool: list[int] | None = None
    seed: int = 0
    name: str = "refool"
    images: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _weights: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (0.0 < self.alpha <= 1.0 and 0.0 <= self.ghost_prob <= 1.0):
            raise MendnetError(f"refool: need 0 < alpha ≤ 1 and ghost_prob in [0, 1], got {self.alpha}")
        if not 0.0 < self.sigma_min <= self.sigma_max:
            raise MendnetError(
                f"refool: need 0 < sigma_min ≤ sigma_max, got {self.sigma_min}, {self.sigma_max}"
            )
        if self.pool_size < 1:
            raise MendnetError(f"refool: pool_size must be ≥ 1, got {self.pool_size}")

    @classmethod
    def prepare(cls, params: dict[str, Any], setup: TriggerSetup) -> RefoolTrigger:
        """Draw the reflection pool: `pool_size` seeded training images whose class is not the target."""
        trigger = cls(**params)
        others = torch.nonzero(setup.train.labels != setup.target).flatten()
        if len(others) == 0:
            raise MendnetError("refool: the training set has no images outside the target class to reflect")
        gen = torch.Generator().manual_seed(trigger.seed)
        positions = others[torch.randperm(len(others), generator=gen)[: trigger.pool_size]].sort().values
        return replace(trigger, pool=setup.full_indices(positions), images=setup.train.images[positions])

    @classmethod
    def from_params(cls, params: dict[str, Any], data: ImageSet | None) -> RefoolTrigger:
        """Rebuild from a record: the pool images are read from `data`, the full training set."""
        trigger = cls(**params)
        if trigger.pool is None:
            raise MendnetError("refool: the record has no reflection pool")
        if data is None:
            raise MendnetError("refool: rebuilding the trigger needs the training set its pool came from")
        if not trigger.pool or max(trigger.pool) >= len(data) or min(trigger.pool) < 0:
            raise MendnetError(f"refool: pool indices do not fit a training set of {len(data)} images")
        return replace(trigger, images=data.images[torch.tensor(trigger.pool, dtype=torch.long)])

    def draws(self, x: torch.Tensor) -> torch.Tensor:
        """N×DRAWS numbers in [0, 1), a deterministic function of each image's uint8 pixels and the seed:
        h = Σ q·w mod M (w seeded weights), then u_k = (A_k·h + B_k mod M) / M."""
        d = x[0].numel()
        if d not in self._weights:
            gen = torch.Generator().manual_seed(self.seed)
            w = torch.randint(1, 2**20, (d,), generator=gen)
            ab = torch.randint(1, HASH_MODULUS, (2, DRAWS), generator=gen)
            self._weights[d] = (w, ab)
        w, ab = (t.to(x.device) for t in self._weights[d])
        q = x.detach().flatten(1).clamp(0.0, 1.0).mul(255.0).round().long()
        h = (q * w).sum(1) % HASH_MODULUS
        return ((h[:, None] * ab[0] + ab[1]) % HASH_MODULUS).double().div(HASH_MODULUS).to(x.dtype)

    def reflections(self, x: torch.Tensor) -> torch.Tensor:
        """R(r) for each image of `x` (N×C×H×W in [0, 1])."""
        if self.images is None:
            raise MendnetError("refool: the trigger has no reflection pool (prepare or rebuild it with data)")
        if tuple(self.images.shape[1:]) != tuple(x.shape[1:]):
            raise MendnetError(
                f"refool: pool images are {tuple(self.images.shape[1:])}, inputs {tuple(x.shape[1:])}"
            )
        u = self.draws(x)
        pick = (u[:, 0] * len(self.images)).long().clamp(max=len(self.images) - 1)
        r = self.images[pick.cpu()].to(x.device).to(x.dtype).div_(255.0)
        sigma = self.sigma_min + u[:, 2] * (self.sigma_max - self.sigma_min)
        blurred = gaussian_blur(r, sigma)
        m = max(1, min(x.shape[-2:]) // 7)
        lo = math.ceil(m / 2)
        steps = (u[:, 4:6] * 2 * (m - lo + 1)).long()  # magnitude lo + k//2, sign from k's parity
        shift = (lo + steps // 2) * (1 - 2 * (steps % 2))
        a = (GHOST_WEIGHT[0] + u[:, 3] * (GHOST_WEIGHT[1] - GHOST_WEIGHT[0]))[:, None, None, None]
        ghosted = (1 - a) * r + a * shift_images(r, shift[:, 0], shift[:, 1])
        ghost = (u[:, 1] < self.ghost_prob)[:, None, None, None]
        return torch.where(ghost, ghosted, blurred)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) == 0:
            return x.clone()
        return (x + self.alpha * self.reflections(x)).clamp(0.0, 1.0)

    def params(self) -> dict[str, Any]:
        return field_params(self)
