"""AGKD's attention maps (Wang et al., ICCV 2021; docs/methods.md §7, step 4): the channel sum of the
last feature map, min-max normalised per sample to [0, 1], and their L1 distance.

Differences from the paper and the authors' release: docs/deviations.md#agkd-bml.
"""

from __future__ import annotations

import torch

from mendnet.errors import MendnetError


def minmax_attention(features: torch.Tensor) -> torch.Tensor:
    """N×(H·W) map Σ_c F_c of N×C×H×W features, rescaled per sample to [0, 1] (a flat map becomes 0)."""
    if features.dim() != 4:
        raise MendnetError(f"attention needs N×C×H×W features, got shape {tuple(features.shape)}")
    flat = features.sum(dim=1).flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    return (flat - lo) / (hi - lo).clamp_min(1e-12)


def attention_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """‖A_S − A_T‖₁ per sample divided by the map's H·W, averaged over the batch.

    The paper writes the plain L1 norm; the authors' release averages over batch and pixels
    (`F.l1_loss`), as here, so the weight of the term does not grow with the map's size.
    """
    return (student - teacher).abs().mean(dim=1).mean()
