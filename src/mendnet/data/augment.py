"""On-tensor augmentation of float batches in pixel space [0, 1] (no per-image Python loops).

Differences from the paper and the authors' release: docs/deviations.md#nad.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Standard augmentation for small images.

    crop_padding: zero-pad by this many pixels and crop back at a random offset (0 disables).
    flip: random horizontal flip with probability 0.5.
    cutout: side of one square hole set to 0 at a random centre (0 disables; DeVries & Taylor 2017).
    """

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.cutout > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.crop_padding > 0:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = random_flip(x, generator)
        if self.cutout > 0:
            x = cutout(x, self.cutout, generator)
        return x


NO_AUGMENT = Augment()


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad N×C×H×W by `padding` and crop H×W at a per-image random offset (one gather)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device="cpu").to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device="cpu").to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]  # n×h
    cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]  # n×w
    batch = torch.arange(n, device=x.device)[:, None, None]
    # gather over (N, H, W) in N×H×W×C order; permuting back gives a channels_last N×C×H×W view
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image left-right with probability 0.5."""
    mask = torch.rand(x.shape[0], generator=generator, device="cpu").to(x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one size×size square per image at a random centre (clipped at the borders)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator, device="cpu").to(x.device)
    cx = torch.randint(0, w, (n,), generator=generator, device="cpu").to(x.device)
    half = size // 2
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy - half)[:, None]) & (ys < (cy - half + size)[:, None])  # n×h
    in_x = (xs >= (cx - half)[:, None]) & (xs < (cx - half + size)[:, None])  # n×w
    hole = in_y[:, :, None] & in_x[:, None, :]
    return x.masked_fill(hole[:, None, :, :], 0.0)
