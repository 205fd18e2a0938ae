"""The one evaluation path: ACC, ASR, RA and DER (docs/methods.md §0), streamed in batches.

All metrics are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mendnet.data.batches import iterate_batches
from mendnet.data.imageset import ImageSet
from mendnet.threats.backdoor.trigger import Trigger, backdoor_labels

EVAL_BATCH = 512  # images per inference batch on an accelerator
EVAL_BATCH_CPU = 128  # on CPU, where 512 ran 1.35-1.4x slower (benchmarks/eval_batch.py)


def eval_batch_size(device: torch.device | str) -> int:
    """Images per inference batch on `device`: `EVAL_BATCH_CPU` on CPU, `EVAL_BATCH` elsewhere."""
    return EVAL_BATCH_CPU if torch.device(device).type == "cpu" else EVAL_BATCH


@torch.inference_mode()
def classify(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels of one float batch in [0, 1] (model put in eval mode, its mode restored)."""
    was_training = model.training
    model.eval()
    try:
        return model(x).argmax(1)
    finally:
        model.train(was_training)


def predict(
    model: nn.Module,
    data: ImageSet,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Predicted labels (int64, on CPU) for every image, optionally after `transform` (e.g. a trigger),
    in batches of `batch_size` (None: `eval_batch_size(device)`)."""
    size = eval_batch_size(device) if batch_size is None else batch_size
    preds = [
        classify(model, transform(x) if transform is not None else x)
        for x, _ in iterate_batches(data, size, device=device)
    ]
    return torch.cat(preds).cpu() if preds else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, data: ImageSet, *, device: torch.device | str = "cpu") -> float:
    """ACC: share of `data` classified as its label."""
    return float((predict(model, data, device=device) == data.labels).float().mean())


@dataclass(frozen=True)
class BackdoorTest:
    """The triggered test set of §0: images whose true class is not the target (all-to-one), or all
    images with the mapped label (all-to-all)."""

    data: ImageSet
    trigger: Trigger
    attack_labels: torch.Tensor

    @classmethod
    def build(cls, test: ImageSet, trigger: Trigger, target: int, mode: str) -> BackdoorTest:
        keep = (
            test.labels != target if mode == "all-to-one" else torch.ones_like(test.labels, dtype=torch.bool)
        )
        data = test.subset(torch.nonzero(keep).flatten())
        return cls(data, trigger, backdoor_labels(data.labels, target, mode, test.num_classes))


def backdoor_metrics(
    model: nn.Module,
    test: ImageSet,
    backdoor: BackdoorTest | None = None,
    *,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """{"acc"} and, with a backdoor, {"asr", "ra"}: ASR = share of triggered images sent to the attack's
    label; RA = share of them still classified as their true label."""
    out = {"acc": accuracy(model, test, device=device)}
    if backdoor is not None:
        preds = predict(model, backdoor.data, transform=backdoor.trigger.apply, device=device)
        out["asr"] = float((preds == backdoor.attack_labels).float().mean())
        out["ra"] = float((preds == backdoor.data.labels).float().mean())
    return out


def compared(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """A repaired model's metrics: `after`'s, "before" (the input model's), and DER when an ASR is known."""
    out: dict[str, Any] = {**after, "before": before}
    if "asr" in after:
        out["der"] = der(before, after)
    return out


def der(before: dict[str, float], after: dict[str, float]) -> float:
    """Defense effectiveness rating: (max(0, ΔASR) − max(0, ΔACC) + 1) / 2, in [0, 1] (§0)."""
    d_asr = max(0.0, before["asr"] - after["asr"])
    d_acc = max(0.0, before["acc"] - after["acc"])
    return (d_asr - d_acc + 1.0) / 2.0
