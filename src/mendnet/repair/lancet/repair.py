"""The registry's AI-Lancet repairs: `lancet-flip` and `lancet-finetune` (Zhao et al., CCS 2021;
docs/methods.md §4). Both locate the EI neurons on erroneous pairs, then change only those weights.

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.detect import neural_cleanse as nc
from mendnet.errors import MendnetError
from mendnet.evaluate import predict
from mendnet.models import Classifier
from mendnet.progress import progress_bar
from mendnet.repair.context import RepairContext, RepairResult
from mendnet.repair.lancet.ablation import forward_ablated
from mendnet.repair.lancet.companion import MaskSettings, Pairs
from mendnet.repair.lancet.flip import neuron_flip
from mendnet.repair.lancet.layers import candidate_layers, resolve_layer
from mendnet.repair.lancet.locate import LayerStats, Located, locate
from mendnet.repair.lancet.source import ErrorSource, Stamp, backdoor_source, defect_source
from mendnet.repair.lancet.tune import as_imageset, jitter, neuron_finetune
from mendnet.train import TrainConfig, train_config_from


@dataclass(frozen=True)
class Config(nc.Config):
    """AI-Lancet's locating step (docs/methods.md §4 steps 1–6), with Neural Cleanse's reversal settings for
    the backdoor case without the true trigger.

    pairs: K erroneous/companion pairs (paper: 100). alpha: α of the EI feature (0.5). layer: work on this
    layer (a conv or linear module name such as `net.block3.1.conv2`) instead of choosing; layers: the
    candidates of the choice (empty: every conv and linear layer). oracle_trigger: use the artefact's
    recorded trigger (an oracle; the default is Neural Cleanse's reversal of the flagged label).
    trigger: a reversed trigger file or folder to reuse (as neural-cleanse's). label: use the reversed
    trigger of this label even when Neural Cleanse does not flag it (a defender who suspects a target; by
    default the flagged label with the smallest norm, and nothing is repaired when none is flagged).
    misclassified: defect mode, erroneous inputs are the defender images the model gets wrong, companions
    by mask optimisation.
    """

    pairs: int = 100
    alpha: float = 0.5
    layer: str | None = None
    layers: tuple[str, ...] = ()
    oracle_trigger: bool = False
    trigger: str | None = None
    label: int | None = None
    misclassified: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pairs < 1:
            raise MendnetError(f"lancet: pairs must be ≥ 1, got {self.pairs}")
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise MendnetError(f"lancet: alpha must be a number ≥ 0, got {self.alpha}")
        if self.misclassified and (self.oracle_trigger or self.trigger or self.label is not None):
            raise MendnetError("lancet: --misclassified (defects) does not take a backdoor trigger")

    def candidate_names(self) -> tuple[str, ...]:
        return (self.layer,) if self.layer else self.layers


@dataclass(frozen=True)
class FlipConfig(Config):
    """Neuron-flip (docs/methods.md §4 step 7): no training; flip the signs of the most-voted EI neurons,
    growing the set until the defender validation images with the (reversed) trigger are sent to the
    target less often than `max_asr` (1%)."""

    max_asr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.misclassified:
            raise MendnetError("lancet-flip repairs backdoors; use lancet-finetune for --misclassified")
        if not 0 < self.max_asr <= 1:
            raise MendnetError(f"lancet-flip: max ASR must lie in (0, 1], got {self.max_asr}")


@dataclass(frozen=True)
class FinetuneConfig(Config):
    """Neuron fine-tuning (docs/methods.md §4 step 8; our choices): SGD lr `tune_lr` 0.01, momentum 0.9,
    weight decay 0, constant lr, `tune_epochs` 5, batch 64, no augmentation; KD weight 1, T = 4. N_e:
    backdoor, the defender training images the trigger sends to the target, true labels; defects,
    `copies` (20) transformed copies of each erroneous image plus the defender images corrected by
    zeroing the EI neurons.
    vote_share: train the weights voted by at least this share of the corrected pairs (at least one
    vote); 0 trains the union of every pair's EI neurons (the paper's EI set)."""

    tune_epochs: int = 5
    tune_lr: float = 0.01
    tune_batch_size: int = 64
    kd_weight: float = 1.0
    copies: int = 20
    vote_share: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tune_epochs < 1 or self.tune_batch_size < 1 or self.copies < 1:
            raise MendnetError("lancet-finetune: epochs, batch size and copies must be ≥ 1")
        if not (self.tune_lr > 0 and math.isfinite(self.tune_lr)) or self.kd_weight < 0:
            raise MendnetError("lancet-finetune: lr must be positive and the KD weight ≥ 0")
        if not 0 <= self.vote_share <= 1:
            raise MendnetError(f"lancet-finetune: vote share must lie in [0, 1], got {self.vote_share}")

    def trained_mask(self, located: Located) -> torch.Tensor:
        """The weights to train: V ≥ max(1, ceil(vote_share · corrected pairs)) (bool, weight shape)."""
        corrected = located.chosen.stats.successes
        return located.votes >= max(1, math.ceil(self.vote_share * corrected - 1e-9))

    def train_config(self) -> TrainConfig:
        return train_config_from(self, prefix="tune_", momentum=0.9, weight_decay=0.0, schedule="constant")


def error_source(model: nn.Module, ctx: RepairContext, config: Config) -> ErrorSource | None:
    if config.misclassified:
        return defect_source(model, ctx, config.pairs, MaskSettings())
    return backdoor_source(
        model,
        ctx,
        config,
        oracle=config.oracle_trigger,
        trigger_file=config.trigger,
        label=config.label,
        pairs=config.pairs,
    )


def locate_with_progress(model: nn.Module, pairs: Pairs, config: Config, progress: bool) -> Located:
    names = config.candidate_names()
    total = len(names) or len(candidate_layers(model))
    with progress_bar(progress) as bar:
        task = bar.add_task("lancet: ablating layers", total=total, info="")

        def log(stats: LayerStats) -> None:
            bar.update(task, advance=1, info=f"{stats.layer}: {stats.successes}/{stats.samples}")

        return locate(model, pairs, names, config.alpha, log)


def change_record(before: torch.Tensor, after: torch.Tensor, layer: str, model: nn.Module) -> dict:
    """How many weights of `layer` changed and where (flat indices into its weight)."""
    changed = torch.nonzero((before != after).flatten()).flatten()
    total = sum(p.numel() for p in model.parameters())
    return {
        "layer": layer,
        "layer_weights": before.numel(),
        "weights_changed": len(changed),
        "fraction_of_layer": len(changed) / before.numel(),
        "fraction_of_model": len(changed) / total,
        "changed_indices": changed.tolist(),
    }


def located_info(located: Located) -> dict:
    return {"layer_stats": [s.to_json() for s in located.stats], "ei_neurons": int((located.votes > 0).sum())}


def attack_rate(
    model: nn.Module, data: ImageSet, stamp: Stamp, target: int, device: torch.device | str
) -> float:
    """Share of `data`'s images of classes other than `target` that the model sends to it once stamped."""
    others = data.subset(torch.nonzero(data.labels != target).flatten())
    preds = predict(model, others, transform=stamp, device=device)
    return float((preds == target).float().mean()) if len(preds) else 0.0


def run_flip(model: Classifier, ctx: RepairContext, config: FlipConfig = FlipConfig()) -> RepairResult:
    """Neuron-flip repair of a backdoor; `info` records the trigger, the layer statistics, the flipped
    weights (how many, where) and the defender-validation ASR after flipping."""
    ctx.require_val("lancet-flip")
    net = copy.deepcopy(model).to(ctx.device).eval()
    source = error_source(net, ctx, config)
    if source is None:
        return RepairResult(net, {"repair": "skipped: no label flagged, model unchanged"})
    located = locate_with_progress(net, source.pairs, config, ctx.progress)
    layer = resolve_layer(net, located.layer)
    before = layer.weight.detach().clone()
    target = source.pairs.target
    result = neuron_flip(
        layer,
        located.order,
        lambda: attack_rate(net, ctx.defender_val, source.stamp, target, ctx.device),
        config.max_asr,
    )
    info = {
        **source.info,
        **located_info(located),
        **change_record(before, layer.weight.detach(), located.layer, net),
        "defender_val_asr": result.rate,
        "reached": result.reached,
        "tried": result.tried,
    }
    return RepairResult(net, info, source.files)


def defect_erroneous_set(
    net: nn.Module,
    x_err: torch.Tensor,
    y_err: torch.Tensor,
    located: Located,
    defender: ImageSet,
    copies: int,
    seed: int,
    device: torch.device | str,
) -> tuple[ImageSet, dict]:
    """N_e of a general defect: `copies` jittered copies of the erroneous images (true labels y_err) plus
    the defender images the model misclassifies but gets right once the EI neurons (V > 0) are zeroed."""
    x_j = jitter(x_err, copies, seed)
    y_j = y_err.cpu().repeat(copies)
    wrong = torch.nonzero(predict(net, defender, device=device) != defender.labels).flatten()
    layer = resolve_layer(net, located.layer)
    keep = (located.votes == 0).to(layer.weight.dtype).to(device)
    fixed = torch.empty(0, dtype=torch.long)
    if len(wrong):
        logits = forward_ablated(
            net, layer, defender.float_images(wrong).to(device), keep.expand(len(wrong), *keep.shape)
        )
        fixed = wrong[logits.argmax(1).cpu() == defender.labels[wrong]]
    x = torch.cat([x_j, defender.float_images(fixed)])
    y = torch.cat([y_j, defender.labels[fixed]])
    info = {"erroneous": len(x), "jittered": len(x_j), "corrected_by_zeroing": len(fixed)}
    return as_imageset(defender, x, y), info


def erroneous_set(
    net: nn.Module, ctx: RepairContext, source: ErrorSource, located: Located, copies: int
) -> tuple[ImageSet, dict]:
    """N_e: the defender training images the trigger sends to the target, stamped, with their true labels
    (backdoor; only erroneous ones, so that the KD term, which skips rows the original model gets
    wrong, falls on N_o alone), or `defect_erroneous_set` of the pairs' erroneous images (defects)."""
    data = ctx.defender_train
    if source.stamp is not None:
        sent = predict(net, data, transform=source.stamp, device=ctx.device) == source.pairs.target
        idx = torch.nonzero(sent & (data.labels != source.pairs.target)).flatten()
        if len(idx) == 0:
            raise MendnetError(
                "no erroneous samples found: the trigger sends no defender image to its target"
            )
        x = source.stamp(data.float_images(idx).to(ctx.device))
        return as_imageset(data, x, data.labels[idx]), {"erroneous": len(idx)}
    pairs = source.pairs
    return defect_erroneous_set(net, pairs.x_err, pairs.y, located, data, copies, ctx.seed, ctx.device)


def run_finetune(
    model: Classifier, ctx: RepairContext, config: FinetuneConfig = FinetuneConfig()
) -> RepairResult:
    """Neuron fine-tuning: only the EI neurons (V > 0) of the chosen layer are trained; `info` records the
    layer statistics and the changed weights (how many, where)."""
    net = copy.deepcopy(model).to(ctx.device).eval()
    source = error_source(net, ctx, config)
    if source is None:
        return RepairResult(net, {"repair": "skipped: no label flagged, model unchanged"})
    located = locate_with_progress(net, source.pairs, config, ctx.progress)
    n_e, e_info = erroneous_set(net, ctx, source, located, config.copies)
    mask = config.trained_mask(located)
    tuned, history = neuron_finetune(
        net,
        located.layer,
        mask,
        n_e,
        ctx.defender_train,
        config.train_config(),
        config.kd_weight,
        seed=ctx.seed,
        device=ctx.device,
        progress=ctx.progress,
    )
    before = resolve_layer(net, located.layer).weight.detach()
    after = resolve_layer(tuned, located.layer).weight.detach()
    info = {
        **source.info,
        **e_info,
        **located_info(located),
        **change_record(before, after, located.layer, tuned),
        "trainable_weights": int(mask.sum()),
        "train_seconds": history.seconds,
    }
    return RepairResult(tuned, info, source.files)
