"""SIG (Barni, Kallas & Tondi, "A New Backdoor Attack in CNNs by Training Set Corruption Without
Label Poisoning", ICIP 2019): a horizontal sinusoidal signal added to target-class images only.

docs/methods.md §1: x' = clip(x + v), v(i, j) = δ·sin(2π·j·f / W) in every channel (j the column, W the
width), δ = 20/255 in pixel space [0, 1], f = 6; clean-label.

Differences from the paper and the authors' release: docs/deviations.md#backdoor-attacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mendnet.errors import MendnetError
from mendnet.threats.backdoor.trigger import field_params


@dataclass(frozen=True)
class SIGTrigger:
    """x' = clip(x + v, 0, 1), v(i, j) = δ·sin(2π·j·f / W) (Barni et al. 2019, their sinusoidal
    signal), the same for every row i and channel.

    delta: amplitude δ in pixel units (20/255). freq: f, periods across the image width (6).
    """

    delta: float = 20 / 255
    freq: float = 6.0
    name: str = "sig"

    def __post_init__(self) -> None:
        if not (0.0 < self.delta <= 1.0 and math.isfinite(self.freq)):
            raise MendnetError(f"sig: need 0 < delta ≤ 1 and a finite freq, got {self.delta}, {self.freq}")

    def signal(self, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """v as a length-W row: δ·sin(2π·j·f / W) for j = 0 … W − 1."""
        j = torch.arange(width, device=device, dtype=torch.float64)
        return (self.delta * torch.sin(2 * math.pi * j * self.freq / width)).float()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        v = self.signal(x.shape[-1], x.device).to(x.dtype)
        return (x + v).clamp(0.0, 1.0)

    def params(self) -> dict[str, Any]:
        return field_params(self)
