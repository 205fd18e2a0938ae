"""Batching of an ImageSet: uint8 slices → float pixel-space [0, 1] batches on the target device."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from mendnet.data.augment import NO_AUGMENT, Augment
from mendnet.data.imageset import ImageSet


def iterate_batches(
    data: ImageSet,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: Augment = NO_AUGMENT,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y): x float32 N×C×H×W in [0, 1] (channels_last), y int64, both on `device`.

    Images stay uint8 in memory; each batch is sliced, moved, converted and augmented as one tensor.
    """
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        if order is None:
            imgs = data.images[start : start + batch_size]
            labels = data.labels[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            imgs, labels = data.images[idx], data.labels[idx]
        x = imgs.to(device, non_blocking=True).float().div_(255.0)
        if augment.active:
            x = augment(x, generator)
        yield x.contiguous(memory_format=torch.channels_last), labels.to(device, non_blocking=True)


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches iterate_batches yields for n items."""
    if drop_last and n >= batch_size:
        return n // batch_size
    return (n + batch_size - 1) // batch_size
