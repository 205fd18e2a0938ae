"""VGG-11 with BatchNorm, CIFAR style.

VGG: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015 (configuration A, 11 weight layers). BatchNorm after every convolution: Ioffe & Szegedy,
"Batch Normalization", ICML 2015. The three fully connected layers are replaced by global average
pooling and one linear layer, as is usual for 32×32 inputs. Weights use PyTorch's default
initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

# Convolution widths of each stage; every stage ends with a 2×2 max-pool ("M" in the paper's table).
_STAGE_WIDTHS = ((64,), (128,), (256, 256), (512, 512), (512, 512))


class VGG11BN(nn.Module):
    """VGG-11-BN: `features` = Sequential of `stage1..5` (conv3×3-BN-ReLU layers, then a max-pool),
    then global average pool (`pool`) and `fc`.

    Small inputs: a stage's max-pool is left out when it would bring the map below 2×2 pixels
    (checked on the smaller side), so every stage keeps spatial extent. 32×32 input: stage maps
    16, 8, 4, 2, 2 pixels (the last pool is dropped); 28×28: 14, 7, 3, 3, 3 (last two dropped).
    Input: N×in_channels×H×W normalised images of size `input_size` (H, W); output: N×num_classes
    logits.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)
    ) -> None:
        super().__init__()
        height, width = input_size
        channels = in_channels
        stages = nn.Sequential()
        for index, widths in enumerate(_STAGE_WIDTHS, start=1):
            layers: list[nn.Module] = []
            for out_channels in widths:
                layers += [
                    nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(),
                ]
                channels = out_channels
            if min(height, width) // 2 >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            stages.add_module(f"stage{index}", nn.Sequential(*layers))
        self.features = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))
