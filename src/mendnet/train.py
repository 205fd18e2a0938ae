"""The one training loop every method reuses: epochs, schedule, augmentation, progress, extra loss terms.

NAD, fine-tuning and the distillation methods add their terms on the clean batch through `LossTerm`;
adversarial training (PGD-AT, TRADES, FGSM-RS, AGKD-BML) replaces the batch's whole loss through a
`BatchObjective`. Neither writes its own loop, so all share its speed habits (channels_last, no
per-step host syncs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mendnet.data.augment import Augment
from mendnet.data.batches import iterate_batches, num_batches
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.models.taps import FeatureTap
from mendnet.progress import progress_bar

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run; lr in optimiser units, milestones in epochs.

    schedule "step": the lr is multiplied by `gamma` at each milestone epoch, or, when `milestone_lrs`
    is given (one per milestone, in milestone order), set to that absolute lr from that milestone on
    whatever `lr` is (e.g. NAD: `lr` for 2 epochs, then 0.01). milestones, gamma and milestone_lrs
    are ignored by the other schedules.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    milestone_lrs: tuple[float, ...] = ()
    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise MendnetError(f"epochs must be ≥ 1, got {self.epochs}")
        if self.batch_size < 1:
            raise MendnetError(f"batch size must be ≥ 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise MendnetError(f"learning rate must be a positive number, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise MendnetError(f"unknown optimizer {self.optimizer!r}; choose {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise MendnetError(f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
        if self.milestone_lrs:
            if len(self.milestone_lrs) != len(self.milestones):
                raise MendnetError(
                    f"milestone_lrs needs one lr per milestone: {len(self.milestones)} milestones, "
                    f"{len(self.milestone_lrs)} lrs"
                )
            if list(self.milestones) != sorted(set(self.milestones)):
                raise MendnetError(
                    f"milestones must increase when milestone_lrs are given, got {self.milestones}"
                )
            if not all(v > 0 and math.isfinite(v) for v in self.milestone_lrs):
                raise MendnetError(f"milestone_lrs must be positive numbers, got {self.milestone_lrs}")

    @property
    def augment(self) -> Augment:
        return Augment(crop_padding=self.crop_padding, flip=self.flip, cutout=self.cutout)


def train_config_from(
    config: Any, owner: type | None = None, prefix: str = "", **settings: Any
) -> TrainConfig:
    """The TrainConfig of a method's config dataclass: each of its fields named `prefix` + a TrainConfig
    field (e.g. "unlearn_epochs" for prefix "unlearn_") gives that TrainConfig field its value; `settings`
    give the others (a field given both ways is a TypeError). owner: read only the fields this dataclass
    declares (a base config whose subclasses add fields of their own); default: all of `config`'s."""
    names = {f.name for f in fields(TrainConfig)}
    shared = {
        f.name.removeprefix(prefix): getattr(config, f.name)
        for f in fields(owner or config)
        if f.name.startswith(prefix) and f.name.removeprefix(prefix) in names
    }
    return TrainConfig(**shared, **settings)


class LossTerm(Protocol):
    """An extra loss term added to cross-entropy; `taps` names the model modules whose outputs it reads."""

    taps: tuple[str, ...]

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        logits: torch.Tensor,
        features: dict[str, torch.Tensor],
    ) -> torch.Tensor: ...


class BatchObjective(Protocol):
    """The whole loss of one batch, computed from the model (in train mode), x and y.

    It replaces CE + `LossTerm`: it may run the model in eval mode first (e.g. to craft adversarial
    examples, docs/methods.md §8) as long as it gives train mode back, then forwards whatever inputs it
    trains on. Returns the scalar loss and the logits whose argmax counts toward the epoch's training
    accuracy (labels `y`). Label smoothing of `TrainConfig` does not apply; the objective owns its loss.
    """

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class EpochLog:
    epoch: int
    lr: float
    loss: float
    train_acc: float
    seconds: float
    extra_loss: float = 0.0


@dataclass
class TrainHistory:
    epochs: list[EpochLog] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.epochs)


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr at a global step: cosine (per step), step (at milestone epochs: `gamma`
    per milestone passed, or the passed milestone's absolute lr over the base lr), constant."""
    if cfg.schedule == "cosine":
        total = cfg.epochs * steps_per_epoch
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if cfg.schedule == "step":
        epoch = step // steps_per_epoch
        passed = sum(epoch >= m for m in cfg.milestones)
        if cfg.milestone_lrs and passed:
            return cfg.milestone_lrs[passed - 1] / cfg.lr
        return cfg.gamma**passed
    return 1.0


def fit(
    model: nn.Module,
    data: ImageSet,
    cfg: TrainConfig,
    *,
    extra_loss: LossTerm | None = None,
    objective: BatchObjective | None = None,
    params: list[nn.Parameter] | None = None,
    after_backward: Callable[[nn.Module], None] | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    description: str = "train",
) -> TrainHistory:
    """Train `model` in place on `data` with CE (+ label smoothing) + `extra_loss`, or with `objective`
    (the batch's whole loss, e.g. on adversarial examples; not combined with `extra_loss`).

    params: the parameters to optimise (default: all). after_backward: called after each backward,
    before the optimiser step (e.g. to mask gradients). after_step: called after each optimiser step
    (e.g. to project weights back onto a constraint). The model ends in eval mode.
    """
    if len(data) == 0:
        raise MendnetError("cannot train on an empty data set")
    if objective is not None and extra_loss is not None:
        raise MendnetError("give either an extra loss term or a batch objective, not both")
    model.to(device=device, memory_format=torch.channels_last)
    opt = make_optimizer(params if params is not None else list(model.parameters()), cfg)
    steps_per_epoch = num_batches(len(data), cfg.batch_size, drop_last=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps_per_epoch))
    gen = torch.Generator().manual_seed(seed)
    taps = extra_loss.taps if extra_loss is not None else ()
    history = TrainHistory()
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=cfg.epochs * steps_per_epoch, info="")
        for epoch in range(cfg.epochs):
            model.train()
            start = time.perf_counter()
            lr = opt.param_groups[0]["lr"]
            loss_sum = torch.zeros((), device=device)
            extra_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            batches = iterate_batches(
                data,
                cfg.batch_size,
                shuffle=True,
                generator=gen,
                augment=cfg.augment,
                device=device,
                drop_last=True,
            )
            for x, y in batches:
                if objective is not None:
                    loss, logits = objective(model, x, y)
                else:
                    with FeatureTap(model, taps) as feats:
                        logits = model(x)
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                    if extra_loss is not None:
                        term = extra_loss(x, y, logits, feats)
                        extra_sum += term.detach()
                        loss = loss + term
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if after_backward is not None:
                    after_backward(model)
                opt.step()
                if after_step is not None:
                    after_step(model)
                sched.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                bar.advance(task)
            log = EpochLog(
                epoch=epoch + 1,
                lr=lr,
                loss=float(loss_sum) / seen,
                train_acc=float(correct) / seen,
                seconds=time.perf_counter() - start,
                extra_loss=float(extra_sum) / max(1, steps_per_epoch),
            )
            if not math.isfinite(log.loss):
                raise MendnetError(
                    f"{description}: loss became {log.loss} in epoch {log.epoch}; lower the lr"
                )
            history.epochs.append(log)
            bar.update(
                task,
                info=f"epoch {log.epoch}/{cfg.epochs} loss {log.loss:.3f} acc {log.train_acc:.3f}",
            )
    model.eval()
    return history


class RunContext(Protocol):
    """What `fit_in` reads from a method's context (`RepairContext`, `RobustContext`)."""

    seed: int
    device: torch.device | str
    progress: bool


def fit_in(
    ctx: RunContext, model: nn.Module, data: ImageSet, cfg: TrainConfig, *, description: str, **hooks: Any
) -> TrainHistory:
    """`fit` with the seed, device and progress of a method's context; `hooks`: fit's other keywords
    (extra_loss, objective, params, after_backward, after_step)."""
    run = {"seed": ctx.seed, "device": ctx.device, "progress": ctx.progress}
    return fit(model, data, cfg, description=description, **run, **hooks)
