"""Fine-pruning (FP): Liu, Dolan-Gavitt & Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep
Neural Networks", RAID 2018; docs/methods.md §2.

1. Rank the channels of the last convolutional layer by their mean activation on the defender's training
   split (mean over images and the H×W positions, in the layer's activation units).
2. Prune them in increasing order of activation while the defender validation accuracy stays within
   `max_relative_drop` (10%, relative) of the unpruned model's: keep pruning while acc_k ≥ (1 − 0.1)·acc_0.
   Never more than `max_prune_fraction` of the channels (our choice, 90%: a budget the paper does not
   have, so that a flat validation curve cannot prune the layer away).
3. Fine-tune as FT (docs/methods.md §2), the pruned channels held at zero.

Where a channel lives. The last convolutional layer is the last `nn.Conv2d` that runs in a forward pass.
Its channel c is followed through the BatchNorm2d and the activation module that run right after it, in
execution order (VGG and the small CNN: the layer's own BN-ReLU; a pre-activation WRN: the final BN-ReLU of
the last block's sum), and the mean activation is read at the last of them. Pruning channel c zeroes the
convolution's filter c (and bias) and that BatchNorm's scale and shift, so the channel is exactly 0 after
the BatchNorm for any input, in train and eval mode, and after any activation with f(0) = 0. The mask thus
lives in the weights: a saved and reloaded model (safetensors) keeps it. During fine-tuning the pruned
entries' gradients are zeroed after each backward, so SGD (momentum and weight decay included) leaves
them at exactly 0.

Limit: in a post-activation ResNet the BatchNorm after the last convolution sits on the residual branch,
so a pruned channel is zero there while the skip connection still carries that channel.

Differences from the paper and the authors' release: docs/deviations.md#fine-pruning.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from mendnet.data.batches import iterate_batches
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import accuracy, eval_batch_size
from mendnet.models import Classifier, FeatureTap
from mendnet.models.stages import dummy_forward
from mendnet.models.taps import hooks_removed
from mendnet.repair import finetune
from mendnet.repair.context import RepairContext, RepairResult

# Activation modules with f(0) = 0: a channel zeroed before them stays zeroed after them.
ZERO_PRESERVING = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)


@dataclass(frozen=True)
class Config(finetune.Config):
    """FT's settings for the fine-tuning step (docs/methods.md §2: SGD lr 0.01, momentum 0.9, wd 5e-4, 10
    epochs, NAD's augmentation) plus the pruning rule.

    max_relative_drop: pruning stops before the defender validation accuracy falls below
    (1 − max_relative_drop) × the unpruned model's (a fraction; docs/methods.md §2: 0.1;
    1 = prune to the budget).
    max_prune_fraction: at most floor(max_prune_fraction × channels) channels are pruned (a fraction;
    our choice 0.9).
    """

    max_relative_drop: float = 0.1
    max_prune_fraction: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_relative_drop <= 1.0:
            raise MendnetError(f"max relative drop must lie in [0, 1], got {self.max_relative_drop}")
        if not 0.0 <= self.max_prune_fraction <= 1.0:
            raise MendnetError(f"max prune fraction must lie in [0, 1], got {self.max_prune_fraction}")


@dataclass(frozen=True)
class PruneSite:
    """Module names (relative to the model) of the last convolution, the affine BatchNorm2d that follows it
    (None if none does), the module whose output is ranked, and the number of channels."""

    conv: str
    norm: str | None
    tap: str
    channels: int


def find_prune_site(model: Classifier) -> PruneSite:
    """The last convolution run by a forward pass, and the BatchNorm2d and zero-preserving activation that
    run right after it (each taken only when it runs once per forward and, for the BatchNorm, when it is
    affine and has the convolution's width). MendnetError for a model that runs no convolution."""
    leaves = {name: m for name, m in model.named_modules() if name and next(m.children(), None) is None}
    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, module in leaves.items()
    ]
    with hooks_removed(handles):
        dummy_forward(model, model.spec.input_shape)
    convs = [i for i, name in enumerate(order) if isinstance(leaves[name], nn.Conv2d)]
    if not convs:
        raise MendnetError(f"fine-pruning needs a convolutional layer, and {model.spec.arch} runs none")
    conv_name = order[convs[-1]]
    conv = leaves[conv_name]
    calls = Counter(order)
    following = iter(order[convs[-1] + 1 :])
    name = next(following, None)
    norm = None
    tap = conv_name
    module = leaves.get(name) if name is not None and calls[name] == 1 else None
    if isinstance(module, nn.BatchNorm2d) and module.affine and module.num_features == conv.out_channels:
        norm = tap = name
        name = next(following, None)
        module = leaves.get(name) if name is not None and calls[name] == 1 else None
    if isinstance(module, ZERO_PRESERVING):
        tap = name
    return PruneSite(conv_name, norm, tap, conv.out_channels)


def channel_tensors(model: nn.Module, site: PruneSite) -> list[torch.Tensor]:
    """The parameters indexed by the site's output channel: conv weight (and bias), BatchNorm scale and
    shift."""
    conv = model.get_submodule(site.conv)
    tensors = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    if site.norm is not None:
        norm = model.get_submodule(site.norm)
        tensors += [norm.weight, norm.bias]
    return tensors


def zero_channels(model: nn.Module, site: PruneSite, channels: torch.Tensor) -> None:
    """Prune `channels` in place: their filter, bias, BatchNorm scale and shift become 0."""
    with torch.no_grad():
        for tensor in channel_tensors(model, site):
            tensor[channels.to(tensor.device)] = 0.0


def zero_channel_gradients(model: nn.Module, site: PruneSite, channels: torch.Tensor) -> None:
    """The fine-tuning hook: the pruned entries' gradients become 0, so the optimiser leaves them at 0."""
    for tensor in channel_tensors(model, site):
        if tensor.grad is not None:
            tensor.grad[channels.to(tensor.device)] = 0.0


@torch.no_grad()
def mean_activation(
    model: nn.Module, name: str, data: ImageSet, *, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Per channel, the mean of module `name`'s N×C×H×W output over every image and position (eval mode,
    model's mode restored); a float tensor of C values on CPU."""
    was_training = model.training
    model.eval()
    sums, count = [], 0
    try:
        with FeatureTap(model, [name], detach=True) as features:
            for x, _ in iterate_batches(data, eval_batch_size(device), device=device):
                model(x)
                out = features[name].float()
                sums.append(out.sum(dim=(0, 2, 3)))
                count += out.shape[0] * out.shape[2] * out.shape[3]
    finally:
        model.train(was_training)
    return (torch.stack(sums).sum(0) / count).cpu()


def prune_budget(fraction: float, channels: int) -> int:
    """floor(fraction × channels), robust to the float error of products such as 0.57 × 100."""
    return math.floor(fraction * channels + 1e-9)


def run(model: Classifier, ctx: RepairContext, config: Config = Config()) -> RepairResult:
    """Return the fine-pruned copy of `model` (the input model is not changed)."""
    ctx.require_val("fine-pruning")
    start = time.perf_counter()
    work = copy.deepcopy(model).eval()
    site = find_prune_site(work)
    order = torch.argsort(mean_activation(work, site.tap, ctx.defender_train, device=ctx.device), stable=True)
    budget = prune_budget(config.max_prune_fraction, site.channels)
    acc_unpruned = accuracy(work, ctx.defender_val, device=ctx.device)
    floor = (1.0 - config.max_relative_drop) * acc_unpruned - 1e-9  # equal counts as within
    count, acc_pruned = 0, acc_unpruned
    for channel in order[:budget]:
        zero_channels(work, site, channel.view(1))
        acc = accuracy(work, ctx.defender_val, device=ctx.device)
        if acc < floor:
            break
        count, acc_pruned = count + 1, acc
    pruned_channels = order[:count]
    pruned = copy.deepcopy(model)
    zero_channels(pruned, site, pruned_channels)
    prune_seconds = time.perf_counter() - start
    tuned = finetune.run(
        pruned,
        ctx,
        config,
        after_backward=partial(zero_channel_gradients, site=site, channels=pruned_channels),
    )
    info = {
        "layer": site.conv,
        "norm": site.norm,
        "activation_read_at": site.tap,
        "channels_total": site.channels,
        "budget": budget,
        "pruned": pruned_channels.tolist(),
        "val_acc_before_pruning": acc_unpruned,
        "val_acc_after_pruning": acc_pruned,
        "prune_seconds": prune_seconds,
        "train_seconds": tuned.info["train_seconds"],
        "seconds": time.perf_counter() - start,
    }
    return RepairResult(tuned.model, info)
