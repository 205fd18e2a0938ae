"""Robust accuracy under a set of attacks, per attack and worst case, in one batched pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.progress import progress_bar
from mendnet.threats.adversarial.base import Attack, check_pixel_range, eval_mode


@dataclass(frozen=True)
class RobustResult:
    """Accuracies as fractions in [0, 1] over `n` images.

    clean_acc: accuracy on the clean images.
    per_attack: each attack's own robust accuracy (correct on the clean image and on its attack);
        with `cascade`, the accuracy left after this attack and every earlier one.
    worst_case: share of images correct on the clean image and under every attack.
    clean_mask, masks, worst_mask: the same per image (bool N, on the CPU): correct clean; correct
        clean and under each attack (cumulative with `cascade`); correct under every attack.
    details: what attacks that report more than images (AutoAttack: `AutoAttackRun.summary()`) said,
        by attack name.
    """

    clean_acc: float
    per_attack: dict[str, float]
    worst_case: float
    n: int
    clean_mask: torch.Tensor | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    worst_mask: torch.Tensor | None = None
    details: dict[str, dict[str, Any]] = field(default_factory=dict)


def _named(attacks: Sequence[Attack] | Mapping[str, Attack]) -> dict[str, Attack]:
    if isinstance(attacks, Mapping):
        named = dict(attacks)
    else:
        named = {a.name: a for a in attacks}
        if len(named) != len(attacks):
            raise MendnetError("two attacks share a name; pass a mapping of name → attack instead")
    if not named:
        raise MendnetError("robust accuracy needs at least one attack")
    return named


def robust_accuracy(
    model: nn.Module,
    images: torch.Tensor | ImageSet,
    labels: torch.Tensor | None = None,
    *,
    attacks: Sequence[Attack] | Mapping[str, Attack],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
    cascade: bool = False,
) -> RobustResult:
    """Clean, per-attack and worst-case robust accuracy (docs/methods.md §0) of `model`.

    images: float N×C×H×W in pixel space [0, 1] with int `labels` (N), or an `ImageSet` (uint8,
    converted per batch on `device`; its own labels are used). `model` must already be on
    `device`. attacks: a list (keyed by each attack's `name`) or a mapping name → attack.

    One pass in batches: clean predictions once (inference mode); each attack then runs once, on
    the clean-correct points of the batch only. Its own accuracy counts the points it leaves
    correct; the worst case is the AND of those per-attack masks. That equals the sequential
    "attack only still-robust points" worst case (attacks are per-sample), while costing one run
    per attack instead of a second, sequential run for the worst case.

    cascade: the cheaper AutoAttack-style pass: each attack runs only on the points still robust
    after the earlier ones, so per_attack becomes cumulative and only worst_case is any attack's own.

    Attacks that batch themselves (`whole_set`, AutoAttack) run once, after the batch loop, on all the
    clean-correct images (with `cascade`: on those still robust, so they come last in per_attack),
    with `batch_size` as their own batch size.
    """
    named = _named(attacks)
    if isinstance(images, ImageSet):
        if labels is not None:
            raise MendnetError("pass labels only with a tensor of images; an ImageSet has its own")
        raw, labels = images.images, images.labels
    else:
        if labels is None:
            raise MendnetError("labels are required when images are a tensor")
        raw = images
        if raw.dim() != 4 or labels.shape != raw.shape[:1]:
            raise MendnetError(
                f"need images N×C×H×W and labels (N,), got {tuple(raw.shape)} and {tuple(labels.shape)}"
            )
    if batch_size < 1:
        raise MendnetError(f"batch_size must be ≥ 1, got {batch_size}")
    n = len(labels)
    if n == 0:
        raise MendnetError("no images to evaluate")
    device = torch.device(device)
    param = next(model.parameters(), None)
    if param is not None and param.device.type != device.type:
        raise MendnetError(f"model is on {param.device} but device is {device}; move one of them")

    batched = {name: a for name, a in named.items() if not getattr(a, "whole_set", False)}
    whole = {name: a for name, a in named.items() if name not in batched}
    clean = torch.zeros(n, dtype=torch.bool, device=device)
    worst = torch.zeros_like(clean)  # correct clean and under every attack so far
    masks = {name: torch.zeros_like(clean) for name in named}
    details: dict[str, dict[str, Any]] = {}

    def batch_of(rows: torch.Tensor | slice) -> torch.Tensor:
        x = raw[rows].to(device)
        if isinstance(images, ImageSet):
            return x.float().div_(255.0)
        check_pixel_range(x)
        return x

    with eval_mode(model), progress_bar(progress) as bar:
        task = bar.add_task("robust accuracy", total=n, info=", ".join(batched or named))
        for start in range(0, n, batch_size):
            x = batch_of(slice(start, start + batch_size))
            y = labels[start : start + batch_size].to(device)
            with torch.inference_mode():
                correct = model(x).argmax(dim=1) == y
            idx = correct.nonzero().squeeze(1)
            clean[start : start + len(y)] = correct
            robust_all = torch.ones_like(idx, dtype=torch.bool)
            for name, attack in batched.items():
                todo = idx[robust_all] if cascade else idx
                robust = torch.zeros(0, dtype=torch.bool, device=device)
                if len(todo):
                    x_adv = attack(model, x[todo], y[todo])
                    with torch.inference_mode():
                        robust = model(x_adv).argmax(dim=1) == y[todo]
                if cascade:
                    robust_all[robust_all.clone()] = robust
                    masks[name][start + idx[robust_all]] = True
                else:
                    masks[name][start + todo[robust]] = True
                    robust_all &= robust
            worst[start + idx[robust_all]] = True
            bar.advance(task, len(y))
        for name, attack in whole.items():
            todo = (worst if cascade else clean).nonzero().squeeze(1)
            x = batch_of(todo.to(raw.device))
            y = labels[todo.to(labels.device)].to(device)
            run = attack.run(model, x, y, batch_size=batch_size, bar=bar)
            robust = run.robust.to(device)
            worst[todo[~robust]] = False
            masks[name][todo[robust]] = True
            details[name] = run.summary()
    return RobustResult(
        clean_acc=int(clean.sum()) / n,
        per_attack={name: int(masks[name].sum()) / n for name in ([*batched, *whole] if cascade else named)},
        worst_case=int(worst.sum()) / n,
        n=n,
        clean_mask=clean.cpu(),
        masks={name: m.cpu() for name, m in masks.items()},
        worst_mask=worst.cpu(),
        details=details,
    )
