"""Defender data (docs/methods.md §0): a seeded clean subset of the training set with a validation split.

Differences from the paper and the authors' release: docs/deviations.md#general.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError

MIN_DEFENDER_IMAGES = 10


@dataclass(frozen=True)
class DefenderSplit:
    """Indices into the (clean) training set: `train` for repair, `val` (10%) for every stopping rule."""

    train: torch.Tensor
    val: torch.Tensor

    @property
    def all(self) -> torch.Tensor:
        return torch.cat([self.train, self.val])

    def to_json(self) -> dict[str, list[int]]:
        return {"train": self.train.tolist(), "val": self.val.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> DefenderSplit:
        return cls(torch.tensor(d["train"], dtype=torch.long), torch.tensor(d["val"], dtype=torch.long))


def defender_split(
    n_train: int,
    fraction: float,
    seed: int = 0,
    val_fraction: float = 0.1,
    exclude: torch.Tensor | None = None,
) -> DefenderSplit:
    """Draw round(fraction · n_train) clean indices (seeded), 10% of them held out for validation.

    `exclude` (e.g. poisoned indices) are never drawn: the defender's data is clean.
    """
    if not 0.0 < fraction <= 1.0:
        raise MendnetError(f"clean fraction must lie in (0, 1], got {fraction}")
    count = round(fraction * n_train)
    if count < MIN_DEFENDER_IMAGES:
        raise MendnetError(
            f"clean fraction {fraction} of {n_train} training images gives {count} defender images; "
            f"at least {MIN_DEFENDER_IMAGES} are needed"
        )
    pool = torch.arange(n_train)
    if exclude is not None and len(exclude):
        keep = torch.ones(n_train, dtype=torch.bool)
        keep[exclude] = False
        pool = pool[keep]
    if count > len(pool):
        raise MendnetError(f"clean fraction {fraction} asks for {count} images; only {len(pool)} are clean")
    gen = torch.Generator().manual_seed(seed)
    chosen = pool[torch.randperm(len(pool), generator=gen)[:count]]
    n_val = max(1, round(val_fraction * count))
    return DefenderSplit(train=chosen[n_val:].sort().values, val=chosen[:n_val].sort().values)


def defender_sets(clean_train: ImageSet, split: DefenderSplit) -> tuple[ImageSet, ImageSet]:
    """The defender's (train, val) image sets taken from the clean training set."""
    return clean_train.subset(split.train), clean_train.subset(split.val)
