"""AGKD-BML's bidirectional metric learning term (Wang et al., ICCV 2021; docs/methods.md §7, step 5).

Distance d(u, v) = 1 − |cos(u, v)| of per-sample flattened features; triplet with anchor a (forward
adversarial example), positive p (its clean image) and negative n (backward adversarial example):
    L_BML = mean max(0, m + d(a, p) − d(a, n)) + λ₂ · (mean(a²) + mean(p²) + mean(n²)),
each mean over all entries of that batch's features, the three summed, as in the authors' release.

Differences from the paper and the authors' release: docs/deviations.md#agkd-bml.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def abs_cosine_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per sample 1 − |cos(u, v)| (N), of features flattened per sample; in [0, 1]."""
    return 1.0 - F.cosine_similarity(u.flatten(1), v.flatten(1), dim=1, eps=1e-12).abs()


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.03
) -> torch.Tensor:
    """mean over the batch of max(0, m + d(a, p) − d(a, n)) with d = 1 − |cos|."""
    gap = abs_cosine_distance(anchor, positive) - abs_cosine_distance(anchor, negative)
    return (margin + gap).clamp_min(0.0).mean()


def bml_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 0.03,
    feature_weight: float = 0.001,
) -> torch.Tensor:
    """The triplet plus λ₂ times the sum over a, p and n of the mean squared feature entry."""
    norm = anchor.pow(2).mean() + positive.pow(2).mean() + negative.pow(2).mean()
    return triplet_loss(anchor, positive, negative, margin) + feature_weight * norm
