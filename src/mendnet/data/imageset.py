"""In-memory image sets: uint8 N×C×H×W images, int64 labels, class names and normalisation."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from mendnet.errors import MendnetError


@dataclass(frozen=True)
class ImageSet:
    """A labelled image set held in memory.

    images: uint8 tensor N×C×H×W (pixel values 0..255; divide by 255 for pixel space [0, 1]).
    labels: int64 tensor N, each in [0, len(classes)).
    mean, std: per-channel normalisation in pixel space [0, 1]; applied inside the model wrapper.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise MendnetError(
                f"{self.name}: images must be a uint8 N×C×H×W tensor, got {self.images.dtype} "
                f"with shape {tuple(self.images.shape)}"
            )
        if self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise MendnetError(
                f"{self.name}: {len(self.images)} images but labels of shape {tuple(self.labels.shape)}"
            )
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise MendnetError(
                f"{self.name}: labels must lie in [0, {len(self.classes)}), "
                f"found {int(self.labels.min())}..{int(self.labels.max())}"
            )
        c = self.images.shape[1]
        if len(self.mean) != c or len(self.std) != c:
            raise MendnetError(f"{self.name}: mean/std need {c} channel values")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def subset(self, indices: torch.Tensor | list[int]) -> ImageSet:
        """The images at `indices` (a copy-free view where torch allows it)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return replace(self, images=self.images[idx], labels=self.labels[idx])

    def with_data(self, images: torch.Tensor, labels: torch.Tensor) -> ImageSet:
        """The same set description (classes, mean, std, name) over other images and labels."""
        return replace(self, images=images, labels=labels)

    def float_images(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Images (all, or those at `indices`) as float32 in pixel space [0, 1]."""
        imgs = self.images if indices is None else self.images[indices]
        return imgs.float().div_(255.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Quantise a float batch in [0, 1] to uint8 by rounding, clipping first (no wrap-around)."""
    return x.clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
