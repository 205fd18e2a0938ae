"""ResNet-18 and PreAct-ResNet-18, CIFAR variants.

ResNet-18: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
PreAct-ResNet-18: He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016.
CIFAR variant: a 3×3 stride-1 stem and no max-pool, so a 32×32 input gives maps of 32, 16, 8 and 4
pixels in `layer1..4` (28×28 gives 28, 14, 7 and 4). Weights use PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation basic block: conv3×3-BN-ReLU-conv3×3-BN, plus shortcut, then ReLU.

    The shortcut is the identity, or a 1×1 convolution with BN when the stride or width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3×3-BN-ReLU-dropout-conv3×3, plus shortcut.

    The shortcut is the identity on the raw input, or a 1×1 convolution of the activated input
    (after the first BN-ReLU) when the stride or width changes, as in He et al. (ECCV 2016) and
    Zagoruyko & Komodakis (BMVC 2016). `dropout` is the drop probability between the convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.relu2(self.bn2(self.conv1(out)))
        return self.conv2(self.dropout(out)) + shortcut


def _layer(block: type[nn.Module], in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Two blocks; the first one changes stride and width."""
    return nn.Sequential(block(in_channels, out_channels, stride), block(out_channels, out_channels))


_WIDTHS = (64, 128, 256, 512)
_STRIDES = (1, 2, 2, 2)


class ResNet18(nn.Module):
    """ResNet-18 (He et al., CVPR 2016), CIFAR variant.

    Stem conv-BN-ReLU, `layer1..4` of post-activation blocks, global average pool, `fc`.
    Input: N×in_channels×H×W normalised images; output: N×num_classes logits.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, _WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(_WIDTHS[0])
        self.relu = nn.ReLU()
        widths = (_WIDTHS[0], *_WIDTHS)
        self.layer1 = _layer(BasicBlock, widths[0], widths[1], _STRIDES[0])
        self.layer2 = _layer(BasicBlock, widths[1], widths[2], _STRIDES[1])
        self.layer3 = _layer(BasicBlock, widths[2], widths[3], _STRIDES[2])
        self.layer4 = _layer(BasicBlock, widths[3], widths[4], _STRIDES[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(_WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.flatten(self.pool(out)))


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 (He et al., ECCV 2016), CIFAR variant.

    Stem conv, `layer1..4` of pre-activation blocks, final BN-ReLU (`bn`, `relu`), global average
    pool, `fc`. Input: N×in_channels×H×W normalised images; output: N×num_classes logits.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, _WIDTHS[0])
        widths = (_WIDTHS[0], *_WIDTHS)
        self.layer1 = _layer(PreActBlock, widths[0], widths[1], _STRIDES[0])
        self.layer2 = _layer(PreActBlock, widths[1], widths[2], _STRIDES[1])
        self.layer3 = _layer(PreActBlock, widths[2], widths[3], _STRIDES[2])
        self.layer4 = _layer(PreActBlock, widths[3], widths[4], _STRIDES[3])
        self.bn = nn.BatchNorm2d(_WIDTHS[-1])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(_WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = self.relu(self.bn(out))
        return self.fc(self.flatten(self.pool(out)))
