"""Wide Residual Networks (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016)."""

from __future__ import annotations

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.models.resnet import PreActBlock


def _group(in_channels: int, out_channels: int, blocks: int, stride: int, dropout: float) -> nn.Sequential:
    """`blocks` pre-activation blocks; the first one changes stride and width."""
    layers = [PreActBlock(in_channels, out_channels, stride, dropout)]
    layers += [PreActBlock(out_channels, out_channels, 1, dropout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class WideResNet(nn.Module):
    """WRN-depth-widen_factor: 3×3 conv `conv1` (16 channels), groups `block1..3` of
    n = (depth − 4) / 6 pre-activation blocks with widths 16k, 32k, 64k and strides 1, 2, 2,
    final BN-ReLU (`bn`, `relu`), global average pool (`pool`) and `fc`.

    `dropout` is the drop probability between each block's convolutions (default 0).
    Initialisation: Kaiming-normal convolutions (fan-out, ReLU gain), BN weight 1 and bias 0,
    linear bias 0. Input: N×in_channels×H×W normalised images; output: N×num_classes logits.
    A 28×28 input gives maps of 28, 14 and 7 pixels in `block1..3`; 32×32 gives 32, 16 and 8.
    """

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise MendnetError(f"WRN depth must be 6n+4 with n ≥ 1, got {depth}")
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.block1 = _group(widths[0], widths[1], blocks, 1, dropout)
        self.block2 = _group(widths[1], widths[2], blocks, 2, dropout)
        self.block3 = _group(widths[2], widths[3], blocks, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn(out))
        return self.fc(self.flatten(self.pool(out)))
