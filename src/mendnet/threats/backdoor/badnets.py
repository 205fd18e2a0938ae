"""BadNets (Gu et al., 2017): a small checkerboard patch pasted at the bottom-right corner.

docs/methods.md §1: 3×3 black/white checkerboard, margin 1 pixel from the border, dirty labels.

Differences from the paper and the authors' release: docs/deviations.md#backdoor-attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mendnet.errors import MendnetError
from mendnet.threats.backdoor.trigger import field_params


def checkerboard(size: int) -> torch.Tensor:
    """size×size pattern of 1 (white) and 0 (black), white at the top-left cell."""
    idx = torch.arange(size)
    return ((idx[:, None] + idx[None, :]) % 2 == 0).float()


@dataclass(frozen=True)
class BadNetsTrigger:
    """Paste a `size`×`size` checkerboard `margin` pixels from the bottom-right corner, in every channel."""

    size: int = 3
    margin: int = 1
    name: str = "badnets"

    def __post_init__(self) -> None:
        if self.size < 1 or self.margin < 0:
            raise MendnetError(f"badnets: size must be ≥ 1 and margin ≥ 0, got {self.size}, {self.margin}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.size + self.margin > min(h, w):
            raise MendnetError(
                f"badnets: a {self.size}px patch with margin {self.margin} does not fit {h}×{w}"
            )
        out = x.clone()
        r0, c0 = h - self.margin - self.size, w - self.margin - self.size
        patch = checkerboard(self.size).to(device=x.device, dtype=x.dtype)
        out[..., r0 : r0 + self.size, c0 : c0 + self.size] = patch
        return out

    def params(self) -> dict[str, Any]:
        return field_params(self)
