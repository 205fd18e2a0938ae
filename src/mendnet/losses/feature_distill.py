"""Feature distillation distances (Robust-KD's cosine term, Shafahi et al.'s L2 baseline;
docs/methods.md §6).

Differences from the paper and the authors' release: docs/deviations.md#robust-kd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 − cos(F_S, F_T) of per-sample flattened feature maps, averaged over the batch.

    Zero for identical features and unchanged when either side is scaled by a positive factor (the
    reason Robust-KD uses it: source and target statistics differ in scale). Range [0, 2].
    """
    cos = F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1, eps=1e-12)
    return (1.0 - cos).mean()


def squared_l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over feature entries of (F_S − F_T)², averaged over the batch (Shafahi et al. 2020's distance)."""
    return (student.flatten(1) - teacher.flatten(1)).pow(2).mean()
