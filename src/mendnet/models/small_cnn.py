"""A small, fast CNN for 28×28 and 32×32 images (used by tests and quick experiments).

Layout after the MNIST network of Carlini & Wagner, "Towards Evaluating the Robustness of Neural
Networks", IEEE S&P 2017 (two 32-channel and two 64-channel 3×3 convolutions, each pair followed
by a 2×2 max-pool), with BatchNorm after each convolution and one hidden layer of 128 units.
Weights use PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two conv3×3-BN-ReLU layers and a 2×2 max-pool (halves H and W)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class SmallCNN(nn.Module):
    """`stage1` (32 channels, H/2×W/2), `stage2` (64 channels, H/4×W/4), then `head`:
    flatten, linear to 128, ReLU, linear to num_classes.

    Input: N×in_channels×H×W normalised images of size `input_size` (H, W); output: N×num_classes
    logits. 28×28 input gives stage maps of 14 and 7 pixels.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 1, input_size: tuple[int, int] = (28, 28)
    ) -> None:
        super().__init__()
        self.stage1 = _stage(in_channels, 32)
        self.stage2 = _stage(32, 64)
        features = 64 * (input_size[0] // 4) * (input_size[1] // 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(x)))
