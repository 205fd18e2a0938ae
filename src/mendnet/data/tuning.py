"""The researcher's validation split: where a default that is not the paper's is chosen (docs/methods.md
§0, "tuning protocol").

The test set is for final reports only. A tuning run first carves `VALIDATION_IMAGES` seeded images out of
the training set; everything else of that run (poisoning, training, defender data) uses the rest, so the
validation images are disjoint from the poisoned images, the defender data and the test set by
construction. The carved images then stand in for the test set: clean accuracy on them, and the attack
success rate on the non-target ones with the trigger stamped. Tuning runs use `TUNING_SEED`, which no
table reports (tables report seeds 0, 1, 2).

Differences from the paper and the authors' release: docs/deviations.md#general.
"""

from __future__ import annotations

import torch

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError

TUNING_SEED = 100
VALIDATION_IMAGES = 5000


def carve_validation(
    train: ImageSet, count: int = VALIDATION_IMAGES, seed: int = TUNING_SEED
) -> tuple[ImageSet, ImageSet]:
    """(rest, validation): `count` images drawn from `train` with `seed`, and the others (both in their
    original order). Pass the pair as a job's `sets` so that the validation images take the test set's
    place."""
    if not 0 < count < len(train):
        raise MendnetError(f"validation split of {count} images must lie in [1, {len(train) - 1}]")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.subset(perm[count:].sort().values), train.subset(perm[:count].sort().values)
