"""Blend (Chen et al., "Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning",
2017, the blended injection strategy): x' = (1 − α)·x + α·k with one fixed pattern k for every image.

docs/methods.md §1: k is seeded uniform noise (or a user image), α = 0.2 at training and test time, dirty
labels. Pixel space [0, 1]; a convex mix of two images in [0, 1] stays in [0, 1] (clipped anyway).

Differences from the paper and the authors' release: docs/deviations.md#backdoor-attacks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from mendnet.errors import MendnetError
from mendnet.threats.backdoor.trigger import TriggerSetup

# ITU-R BT.601 luma weights, the usual colour → greyscale conversion (PIL's "L" mode uses them too)
LUMA = (0.299, 0.587, 0.114)


def read_pattern(path: str | Path) -> torch.Tensor:
    """An image file as float C×H×W in [0, 1]: greyscale modes give 1 channel, all others RGB."""
    try:
        with Image.open(path) as img:
            grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
            img = img.convert("L" if grey else "RGB")
            pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            size = img.size
    except (OSError, UnidentifiedImageError) as e:
        raise MendnetError(f"blend: cannot read the pattern image {path}: {e}") from e
    c = 1 if grey else 3
    return pixels.view(size[1], size[0], c).permute(2, 0, 1).float().div_(255.0)


def fit_pattern(k: torch.Tensor, shape: tuple[int, int, int], source: str = "pattern") -> torch.Tensor:
    """`k` (C'×H'×W' in [0, 1]) converted to `shape` (C, H, W): greyscale ↔ RGB with a warning
    (RGB → grey by BT.601 luma), bilinear resize with a warning; MendnetError if channels cannot match."""
    c, h, w = shape
    have = k.shape[0]
    if have != c:
        if have == 1 and c == 3:
            k = k.expand(3, -1, -1)
        elif have == 3 and c == 1:
            k = (k * torch.tensor(LUMA, dtype=k.dtype).view(3, 1, 1)).sum(0, keepdim=True)
        else:
            raise MendnetError(f"blend: {source} has {have} channels and cannot be converted to {c}")
        warnings.warn(f"blend: {source} converted from {have} to {c} channels", stacklevel=3)
    if tuple(k.shape[1:]) != (h, w):
        warnings.warn(f"blend: {source} resized from {k.shape[1]}×{k.shape[2]} to {h}×{w}", stacklevel=3)
        k = F.interpolate(k[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
    return k.clamp(0.0, 1.0)


@dataclass(frozen=True)
class BlendTrigger:
    """x' = clip((1 − α)·x + α·k) (Chen et al. 2017, blended injection), one k for every image.

    alpha: blend weight α in [0, 1] (0.2). pattern: None for seeded uniform noise k ~ U[0, 1]^(C×H×W)
    (drawn from `seed`, so the same for every image and every rebuild), an image file path, or the
    pattern's uint8 pixels as a nested C×H×W list (what a path becomes once prepared for a data set, so
    the artefact does not depend on the file). A pattern of another size or channel count is converted
    (with a warning) on use. source: the file the pixels came from (a record only).
    """

    alpha: float = 0.2
    seed: int = 0
    pattern: str | list | None = None
    source: str | None = None
    name: str = "blend"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise MendnetError(f"blend: alpha must lie in [0, 1], got {self.alpha}")

    @classmethod
    def prepare(cls, params: dict[str, Any], setup: TriggerSetup) -> BlendTrigger:
        """Fix an image-file pattern to the training set's shape and store its pixels."""
        trigger = cls(**params)
        if not isinstance(trigger.pattern, str):
            return trigger
        k = trigger.pattern_for(setup.train.shape)
        pixels = k.mul(255.0).round_().to(torch.uint8).tolist()
        return replace(trigger, pattern=pixels, source=trigger.pattern)

    def pattern_for(self, shape: tuple[int, int, int]) -> torch.Tensor:
        """k as float C×H×W in [0, 1] for images of `shape`, built once per shape."""
        if shape not in self._cache:
            if self.pattern is None:
                gen = torch.Generator().manual_seed(self.seed)
                k = torch.rand(shape, generator=gen)
            elif isinstance(self.pattern, str):
                k = fit_pattern(read_pattern(self.pattern), shape, f"pattern {self.pattern}")
            else:
                pixels = torch.tensor(self.pattern, dtype=torch.float32)
                if pixels.dim() != 3:
                    raise MendnetError(f"blend: pattern pixels must be C×H×W, got {tuple(pixels.shape)}")
                k = fit_pattern(pixels.div_(255.0), shape)
            self._cache[shape] = k
        return self._cache[shape]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pattern_for(tuple(x.shape[1:])).to(device=x.device, dtype=x.dtype)
        return ((1.0 - self.alpha) * x + self.alpha * k).clamp(0.0, 1.0)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alpha": self.alpha, "seed": self.seed}
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.source is not None:
            out["source"] = self.source
        return out
