"""Named architectures: each a factory for the raw net and the names of its stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mendnet.errors import MendnetError
from mendnet.models.resnet import PreActResNet18, ResNet18
from mendnet.models.small_cnn import SmallCNN
from mendnet.models.vgg import VGG11BN
from mendnet.models.wrn import WideResNet


@dataclass(frozen=True)
class ArchSpec:
    """An architecture: `factory(num_classes, in_channels, input_size, **kwargs)` builds the raw net
    (input_size is (H, W) in pixels); `stages` are module names relative to that net."""

    factory: Callable[..., nn.Module]
    stages: tuple[str, ...]
    description: str


def _wrn(depth: int, widen_factor: int) -> Callable[..., nn.Module]:
    def factory(
        num_classes: int, in_channels: int, input_size: tuple[int, int], dropout: float = 0.0
    ) -> nn.Module:
        return WideResNet(depth, widen_factor, num_classes, in_channels, dropout)

    return factory


def _resnet18(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> nn.Module:
    return ResNet18(num_classes, in_channels)


def _preact_resnet18(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> nn.Module:
    return PreActResNet18(num_classes, in_channels)


_WRN_STAGES = ("block1", "block2", "block3")
_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
_WRN_NOTE = "pre-activation blocks (Zagoruyko & Komodakis 2016); kwarg dropout"

ARCHITECTURES: dict[str, ArchSpec] = {
    "wrn-16-1": ArchSpec(_wrn(16, 1), _WRN_STAGES, f"Wide ResNet 16-1, {_WRN_NOTE}"),
    "wrn-16-2": ArchSpec(_wrn(16, 2), _WRN_STAGES, f"Wide ResNet 16-2, {_WRN_NOTE}"),
    "wrn-40-2": ArchSpec(_wrn(40, 2), _WRN_STAGES, f"Wide ResNet 40-2, {_WRN_NOTE}"),
    "preact-resnet-18": ArchSpec(
        _preact_resnet18, _RESNET_STAGES, "PreAct-ResNet-18, CIFAR stem (He et al. ECCV 2016)"
    ),
    "resnet-18": ArchSpec(_resnet18, _RESNET_STAGES, "ResNet-18, CIFAR stem (He et al. CVPR 2016)"),
    "vgg-11-bn": ArchSpec(
        VGG11BN,
        tuple(f"features.stage{i}" for i in range(1, 6)),
        "VGG-11 with BatchNorm, global-average-pool head (Simonyan & Zisserman 2015)",
    ),
    "small-cnn": ArchSpec(SmallCNN, ("stage1", "stage2"), "4-conv CNN with a 128-unit head, fast on CPU"),
}


def architecture_names() -> list[str]:
    """Names of the built-in architectures, in registry order."""
    return list(ARCHITECTURES)


def get_architecture(name: str) -> ArchSpec:
    """The registered architecture `name`; MendnetError listing the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise MendnetError(
            f"unknown architecture {name!r}; known: {known} (or 'module:factory' for your own)"
        ) from None
