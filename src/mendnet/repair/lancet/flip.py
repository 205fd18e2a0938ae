"""Neuron-flip: repair without training data by flipping the signs of the most-voted EI neurons
(Zhao et al., CCS 2021, §5.1; docs/methods.md §4 step 7).

The flipped set grows along the weights ordered by votes (`locate.vote_order`); its sizes follow the
ablation's ratio grid over the layer's n weights (coarse k·10^−u, then ten fine steps inside the first
successful bracket; sizes ceil(r·n), at most the number of voted weights). It stops at the first set for
which the defender's triggered images are no longer sent to the target (share below `max_asr`, 1%).

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mendnet.repair.lancet.ablation import coarse_ratios, fine_ratios, ratio_count


def flip_signs(weight: torch.Tensor, flat_indices: torch.Tensor) -> torch.Tensor:
    """A copy of `weight` with the entries at `flat_indices` negated, all others bit-identical (pure)."""
    out = weight.detach().clone(memory_format=torch.contiguous_format)
    flat = out.view(-1)  # flat indices count in the logical (row-major) order
    idx = flat_indices.to(out.device)
    flat[idx] = -flat[idx]
    return out


@dataclass(frozen=True)
class FlipResult:
    """The flipped flat indices, the rate after flipping them, whether it is below the bound, and every
    (count, rate) tried."""

    flipped: torch.Tensor
    rate: float
    reached: bool
    tried: list[tuple[int, float]]


def neuron_flip(
    layer: nn.Module, order: torch.Tensor, rate_of: Callable[[], float], max_asr: float = 0.01
) -> FlipResult:
    """Flip signs of `layer.weight` at order[:m] for growing m until `rate_of()` (the attack success rate
    on the defender's triggered images, evaluated with the layer as it is) is below `max_asr`. The layer
    is left with the chosen set flipped; when no size reaches the bound, the size with the lowest rate."""
    original = layer.weight.detach().clone()
    n, voted = original.numel(), len(order)
    tried: dict[int, float] = {}

    def rate(count: int) -> float:
        if count not in tried:
            with torch.no_grad():
                layer.weight.copy_(flip_signs(original, order[:count]))
            tried[count] = rate_of()
        return tried[count]

    coarse = coarse_ratios()
    hit = None
    for j, r in enumerate(coarse):
        count = min(voted, ratio_count(r, n))
        if rate(count) < max_asr:
            hit = j
            break
        if count == voted:
            break
    if hit is not None:
        low = coarse[hit - 1] if hit > 0 else 0.0
        for r in fine_ratios(low, coarse[hit]):
            count = min(voted, ratio_count(r, n))
            if rate(count) < max_asr:
                break
    best = min((c for c in tried if tried[c] < max_asr), default=None)
    if best is None:
        best = min(tried, key=lambda c: (tried[c], c))
    with torch.no_grad():
        layer.weight.copy_(flip_signs(original, order[:best]))
    return FlipResult(order[:best].clone(), tried[best], tried[best] < max_asr, sorted(tried.items()))
