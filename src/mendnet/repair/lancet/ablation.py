"""Progressive ablation: the smallest top-r share of a layer's weights (by importance) whose zeroing
corrects an erroneous input (Zhao et al., CCS 2021, §4.4; docs/methods.md §4 step 5).

Coarse scan r = k·10^−u for u = 6…1, k = 1…9 (ascending r), then a fine scan of ten equal steps between
the last failing and the first succeeding coarse ratio: steps of 10^−(u+1) when the first success is
k·10^−u with k ≥ 2 (the paper's "inside the first successful decade"); our choice for k = 1, where the
bracket is (9·10^−(u+1), 10^−u], is the same ten steps, 10^−(u+2) wide. A ratio r zeroes the
ceil(r·n) highest-scoring of the layer's n weights (our choice: at least one weight; ties in the score
keep index order). Every sample has its own weights zeroed, so one test of many samples is one batched
forward pass: the layer's output is computed per sample with `torch.func.vmap` over its weights.
Success is a caller's rule on the logits (backdoor: not the target; defect: the true label).

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from mendnet.repair.lancet.layers import evaluating, replace_output

Success = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits N×K, y_true N) → bool N: whether each sample's output is no longer erroneous."""


def coarse_ratios() -> list[float]:
    """r = k·10^−u, u = 6…1, k = 1…9, ascending: 1e-6, 2e-6, …, 9e-1 (54 values)."""
    return [round(k * 10.0**-u, 12) for u in range(6, 0, -1) for k in range(1, 10)]


def fine_ratios(low: float, high: float) -> list[float]:
    """Ten equal steps from `low` (exclusive) to `high` (inclusive)."""
    step = (high - low) / 10
    return [round(low + j * step, 12) for j in range(1, 11)]


def ratio_count(ratio: float, n: int) -> int:
    """How many of n weights a ratio zeroes: ceil(r·n) (rounded first, so 0.019·2000 gives 38), in [1, n]."""
    return min(n, max(1, math.ceil(round(ratio * n, 6))))


def backdoor_success(target: int) -> Success:
    """Backdoor rule: the triggered input is no longer classified as the target."""
    return lambda logits, y: logits.argmax(1) != target


def defect_success(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """General-defect rule: the input is classified as its true label."""
    return logits.argmax(1) == y


def score_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of every weight by decreasing score, per sample (N × n, 0 = most important; stable)."""
    flat = scores.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def forward_ablated(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, keep: torch.Tensor, chunk_size: int | None = 64
) -> torch.Tensor:
    """Logits of x[i] with `layer.weight` multiplied by keep[i] (N × weight shape; 0 zeroes a weight).
    The model runs in eval mode without gradients; its weights are not changed."""

    def one(w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, {"weight": w}, (a[None],))[0]

    weight = layer.weight.detach()
    per_sample = vmap(one, chunk_size=chunk_size)
    handle = replace_output(layer, lambda inp, _out: per_sample(weight * keep, inp))
    try:
        with evaluating(model), torch.no_grad():
            return model(x)
    finally:
        handle.remove()


@dataclass(frozen=True)
class AblationResult:
    """Per sample: `found` (bool N), the minimal ratio `ratio` (float N, NaN where not found) and the
    number of weights it zeroes `count` (int N, 0 where not found); `ranks` N × n orders the weights."""

    found: torch.Tensor
    ratio: torch.Tensor
    count: torch.Tensor
    ranks: torch.Tensor

    def neuron_mask(self) -> torch.Tensor:
        """N × n bool: the EI neurons of each sample (its top-`count` weights; none where not found)."""
        return self.ranks < self.count[:, None].to(self.ranks.device)


def ablation_search(
    model: nn.Module,
    layer: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    scores: torch.Tensor,
    success: Success,
    chunk_size: int | None = 64,
) -> AblationResult:
    """The minimal ratio for every sample of x (erroneous inputs, true labels y) at `layer`, zeroing
    weights in decreasing order of `scores` (N × weight shape, e.g. `weight_importance`)."""
    n_samples, n = len(x), layer.weight.numel()
    ranks = score_ranks(scores)
    shape = (-1, *layer.weight.shape)

    def test(idx: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        keep = (ranks[idx] >= counts[:, None].to(ranks.device)).to(layer.weight.dtype).view(shape)
        return success(forward_ablated(model, layer, x[idx], keep, chunk_size), y[idx]).cpu()

    coarse = coarse_ratios()
    first = torch.full((n_samples,), -1, dtype=torch.long)  # index of the first successful coarse ratio
    last_count = 0
    for j, r in enumerate(coarse):
        count = ratio_count(r, n)
        active = torch.nonzero(first < 0).flatten()
        if len(active) == 0:
            break
        if count == last_count:
            continue  # same weights as the previous ratio: already failed
        last_count = count
        ok = test(active, torch.full((len(active),), count))
        first[active[ok]] = j
    found = first >= 0
    ratio = torch.full((n_samples,), math.nan, dtype=torch.float64)
    ratio[found] = torch.tensor(coarse, dtype=torch.float64)[first[found]]
    idx = torch.nonzero(found).flatten()
    if len(idx):
        grids = torch.tensor(
            [
                fine_ratios(coarse[int(first[i]) - 1] if first[i] > 0 else 0.0, coarse[int(first[i])])
                for i in idx
            ],
            dtype=torch.float64,
        )
        done = torch.zeros(len(idx), dtype=torch.bool)
        for step in range(grids.shape[1] - 1):  # the last fine ratio is the coarse success itself
            pending = torch.nonzero(~done).flatten()
            if len(pending) == 0:
                break
            counts = torch.tensor([ratio_count(float(grids[p, step]), n) for p in pending])
            ok = test(idx[pending], counts)
            ratio[idx[pending[ok]]] = grids[pending[ok], step]
            done[pending[ok]] = True
    count = torch.tensor([ratio_count(float(r), n) if f else 0 for r, f in zip(ratio, found, strict=True)])
    return AblationResult(found, ratio, count, ranks)
