"""Locating the EI neurons: per-layer ablation statistics, the layer choice and the vote map
(Zhao et al., CCS 2021, §4.4–4.5; docs/methods.md §4 steps 5–7).

Layer choice (our rule, from the paper's text): the layer where ablation corrects the most samples;
ties broken by the smallest EI share (the mean share of the layer's weights zeroed at the minimal ratio,
over the corrected samples). Votes: for each
weight of the chosen layer, the number of pairs in which it is an EI neuron.

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.repair.lancet.ablation import (
    AblationResult,
    Success,
    ablation_search,
    backdoor_success,
    defect_success,
)
from mendnet.repair.lancet.companion import Pairs
from mendnet.repair.lancet.features import EI_ALPHA, ei_features, weight_importance
from mendnet.repair.lancet.layers import candidate_layers, resolve_layer


@dataclass(frozen=True)
class LayerStats:
    """One layer's ablation over the pairs: `successes` of `samples` corrected; over the corrected ones, the
    minimal and mean minimal ratio r of the search grid, and the mean EI share (weights zeroed / the
    layer's `weights`, which differs from r where ceil(r·n) rounds up, e.g. one weight at r = 1e-7);
    fractions, NaN when none; seconds taken."""

    layer: str
    weights: int
    samples: int
    successes: int
    min_ratio: float
    mean_ratio: float
    mean_share: float
    seconds: float

    def to_json(self) -> dict:
        d = asdict(self)
        for key in ("min_ratio", "mean_ratio", "mean_share"):
            d[key] = None if math.isnan(d[key]) else d[key]
        return d


@dataclass(frozen=True)
class LayerAblation:
    """A layer's statistics, its per-sample ablation result and importance scores (N × weight shape)."""

    stats: LayerStats
    result: AblationResult
    scores: torch.Tensor


def success_rule(pairs: Pairs) -> Success:
    return defect_success if pairs.target is None else backdoor_success(pairs.target)


def ablate_layer(model: nn.Module, name: str, pairs: Pairs, alpha: float = EI_ALPHA) -> LayerAblation:
    """EI features, importance and the ablation search of every pair at layer `name`."""
    start = time.perf_counter()
    layer = resolve_layer(model, name)
    feats = ei_features(model, layer, pairs.x_err, pairs.x_comp, pairs.y, alpha)
    scores = weight_importance(layer, feats)
    result = ablation_search(model, layer, pairs.x_err, pairs.y, scores, success_rule(pairs))
    ratios = result.ratio[result.found]
    stats = LayerStats(
        layer=name,
        weights=layer.weight.numel(),
        samples=len(pairs),
        successes=int(result.found.sum()),
        min_ratio=float(ratios.min()) if len(ratios) else math.nan,
        mean_ratio=float(ratios.mean()) if len(ratios) else math.nan,
        mean_share=float(result.count[result.found].double().mean()) / layer.weight.numel()
        if len(ratios)
        else math.nan,
        seconds=time.perf_counter() - start,
    )
    return LayerAblation(stats, result, scores)


def choose_layer(stats: Sequence[LayerStats]) -> LayerStats:
    """Most successes; ties by the smallest mean EI share. MendnetError when no layer corrects any."""
    best = max(stats, key=lambda s: (s.successes, -s.mean_share if s.successes else -math.inf))
    if best.successes == 0:
        raise MendnetError(f"ablation corrected none of the {best.samples} erroneous samples in any layer")
    return best


def vote_map(result: AblationResult, shape: torch.Size) -> torch.Tensor:
    """V: per weight (in the layer's weight shape), how many samples have it among their EI neurons."""
    return result.neuron_mask().sum(0).view(shape)


def vote_order(votes: torch.Tensor, scores: torch.Tensor, result: AblationResult) -> torch.Tensor:
    """Flat indices of the weights with V > 0 by decreasing votes; ties by decreasing summed importance,
    each sample's scores divided by their maximum (our choice)."""
    flat = votes.flatten().double()
    found = scores[result.found].flatten(1)
    weight = (found / found.amax(1, keepdim=True).clamp_min(1e-30)).sum(0).double().cpu()
    key = flat * (1 + weight.max()) + weight if len(found) else flat
    order = key.argsort(descending=True, stable=True)
    return order[flat[order] > 0]


@dataclass(frozen=True)
class Located:
    """Statistics of every tested layer, the chosen layer's ablation, its vote map V (weight shape) and
    the flip order (flat indices with V > 0, most votes first)."""

    stats: list[LayerStats]
    chosen: LayerAblation
    votes: torch.Tensor
    order: torch.Tensor

    @property
    def layer(self) -> str:
        return self.chosen.stats.layer


def locate(
    model: nn.Module,
    pairs: Pairs,
    layers: Sequence[str] = (),
    alpha: float = EI_ALPHA,
    log: Callable[[LayerStats], None] | None = None,
) -> Located:
    """Ablate every layer in `layers` (default: every conv and linear layer), choose one, vote there.
    log: called with each layer's statistics as they come (progress)."""
    names = list(layers) or candidate_layers(model)
    if not names:
        raise MendnetError("the model has no convolution or linear layer")
    done = {}
    for name in names:
        done[name] = ablate_layer(model, name, pairs, alpha)
        if log is not None:
            log(done[name].stats)
    chosen = done[choose_layer([d.stats for d in done.values()]).layer]
    weight_shape = resolve_layer(model, chosen.stats.layer).weight.shape
    votes = vote_map(chosen.result, weight_shape).cpu()
    order = vote_order(votes, chosen.scores.cpu(), chosen.result)
    return Located([d.stats for d in done.values()], chosen, votes, order)
