"""Erroneous inputs and their companions (Zhao et al., CCS 2021, §4.1; docs/methods.md §4 step 1).

A pair is an erroneous input x (misclassified by the model) and its companion x' (x with the
error-inducing region removed, classified correctly). Backdoor case: x is a clean image with the trigger
(the recorded one, or Neural Cleanse's reversal for the flagged label) and x' the clean image. General
defect case (our choice, the paper gives only the constraints): x' is found by optimising a mask over x
(`mask_companions`). All images in pixel space [0, 1].

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mendnet.errors import MendnetError
from mendnet.evaluate import classify
from mendnet.repair.lancet.layers import evaluating


@dataclass(frozen=True)
class Pairs:
    """N erroneous inputs `x_err`, companions `x_comp` (N×C×H×W, [0, 1]), true labels `y` (int64 N),
    the backdoor `target` (None for general defects), and the companion masks (N×1×H×W in [0, 1]: the
    trigger's or the optimised mask; for figures)."""

    x_err: torch.Tensor
    x_comp: torch.Tensor
    y: torch.Tensor
    target: int | None
    masks: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor) -> Pairs:
        return Pairs(self.x_err[idx], self.x_comp[idx], self.y[idx], self.target, self.masks[idx])


def backdoor_pairs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    stamp: Callable[[torch.Tensor], torch.Tensor],
    target: int,
    limit: int,
) -> Pairs:
    """Up to `limit` pairs (stamp(x), x) from clean images x of classes other than `target` (true labels y),
    keeping those the model gets right clean and sends to the target triggered. The mask is where the
    trigger changed the image."""
    keep = y != target
    x, y = x[keep], y[keep]
    x_err = stamp(x).clamp(0, 1)
    valid = (classify(model, x) == y) & (classify(model, x_err) == target)
    idx = torch.nonzero(valid).flatten()[:limit]
    if len(idx) == 0:
        raise MendnetError(
            f"no erroneous samples found: the trigger sends none of {len(x)} clean images to label {target}"
        )
    changed = (x_err[idx] - x[idx]).abs().amax(1, keepdim=True)
    return Pairs(x_err[idx], x[idx], y[idx], target, (changed > 0).float())


def misclassified(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Indices of the images the model gets wrong."""
    return torch.nonzero(classify(model, x) != y).flatten()


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D Gaussian kernel of radius ceil(2σ) pixels, summing to 1 (pure)."""
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of N×C×H×W maps (σ in pixels), replicate-padded so the borders keep their
    level (pure)."""
    k = gaussian_kernel(sigma).to(x.device, x.dtype)
    c, r = x.shape[1], len(k) // 2
    h = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(
        F.pad(h, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )


def sharpen(m: torch.Tensor) -> torch.Tensor:
    """sigmoid(16(m − 0.5)): pushes the mask towards 0 or 1 (docs/methods.md §4 step 1)."""
    return torch.sigmoid(16 * (m - 0.5))


@dataclass(frozen=True)
class MaskSettings:
    """The defect companion's optimisation (docs/methods.md §4 step 1; all our choice): λ 0.05 on mean(m),
    Adam lr 0.1, at most 300 steps; mask smoothing σ 1 pixel; the masked region is replaced by x blurred
    with σ 3 pixels; the raw mask starts at 0.3 (sharpened ≈ 0.04, where its gradient is alive)."""

    lam: float = 0.05
    lr: float = 0.1
    steps: int = 300
    mask_sigma: float = 1.0
    fill_sigma: float = 3.0
    init: float = 0.3


def mask_companions(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: MaskSettings = MaskSettings()
) -> Pairs:
    """Companions of misclassified images x (true labels y), all optimised at once:

        m_s = sharpen(blur(m)),  x_m = (1 − m_s)⊙x + m_s⊙blur(x),  loss = CE(f(x_m), y) + λ·mean(m_s)

    A sample stops (its x_m and mask kept) at the first step where x_m is classified as y; samples never
    corrected within `steps` are left out. MendnetError when none is corrected."""
    n, _, h, w = x.shape
    fill = gaussian_blur(x, settings.fill_sigma)
    raw = torch.full((n, 1, h, w), settings.init, device=x.device, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=settings.lr)
    done = torch.zeros(n, dtype=torch.bool, device=x.device)
    best_x, best_m = x.clone(), torch.zeros(n, 1, h, w, device=x.device)
    with evaluating(model):
        for _ in range(settings.steps):
            m = sharpen(gaussian_blur(raw, settings.mask_sigma))
            x_m = (1 - m) * x + m * fill
            logits = model(x_m)
            right = (logits.argmax(1) == y) & ~done
            best_x[right], best_m[right] = x_m.detach()[right], m.detach()[right]
            done |= right
            if bool(done.all()):
                break
            per = F.cross_entropy(logits, y, reduction="none") + settings.lam * m.mean((1, 2, 3))
            (raw.grad,) = torch.autograd.grad((per * (~done).float()).sum(), raw)
            opt.step()
    idx = torch.nonzero(done).flatten().cpu()
    if len(idx) == 0:
        raise MendnetError(f"no companion found: none of {n} erroneous images was corrected by masking")
    return Pairs(x[idx], best_x[idx], y[idx], None, best_m[idx])
