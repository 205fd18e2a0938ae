"""The one poisoning function: exact counts, dirty- or clean-label, all-to-one or all-to-all (§1).

Differences from the paper and the authors' release: docs/deviations.md#backdoor-attacks.
"""

from __future__ import annotations

import warnings

import torch

from mendnet.data.imageset import ImageSet, to_uint8
from mendnet.errors import MendnetError
from mendnet.threats.backdoor.trigger import (
    ThreatRecord,
    Trigger,
    backdoor_labels,
    check_mode,
    check_target,
)

APPLY_BATCH = 4096


def poison_count(rate: float, n: int) -> int:
    """round(rate · n): the exact number of images to poison for a rate of the whole training set."""
    if not 0.0 < rate <= 1.0:
        raise MendnetError(f"poisoning rate must lie in (0, 1], got {rate}")
    return round(rate * n)


def check_labelling(clean_label: bool, mode: str) -> None:
    """Clean-label poisoning keeps every label, so it can only be all-to-one."""
    if clean_label and mode != "all-to-one":
        raise MendnetError("clean-label poisoning is all-to-one only (it cannot map labels)")


def choose_poison_indices(
    labels: torch.Tensor, rate: float, target: int, mode: str, clean_label: bool, seed: int
) -> torch.Tensor:
    """Seeded choice of which training images to poison.

    Dirty-label all-to-one draws from non-target images; all-to-all from every image; clean-label only
    from target-class images (all of them, with a warning, if the rate asks for as many or more: with no
    clean target-class image left in training, clean-label attacks on Fashion-MNIST cost most of that
    class's clean accuracy, docs/benchmarks.md section `attack_table_bench`).
    """
    count = poison_count(rate, len(labels))
    if clean_label:
        pool = torch.nonzero(labels == target).flatten()
        if count >= len(pool):
            warnings.warn(
                f"rate {rate} asks for {count} images of class {target}, which has {len(pool)}; poisoning "
                f"all {len(pool)}: no clean class-{target} image is left for training, which can cost most "
                "of that class's clean accuracy",
                stacklevel=2,
            )
            count = len(pool)
    elif mode == "all-to-one":
        pool = torch.nonzero(labels != target).flatten()
    else:
        pool = torch.arange(len(labels))
    if count > len(pool):
        raise MendnetError(f"rate {rate} asks for {count} images; only {len(pool)} are eligible")
    gen = torch.Generator().manual_seed(seed)
    return pool[torch.randperm(len(pool), generator=gen)[:count]].sort().values


def apply_trigger_uint8(
    images: torch.Tensor, trigger: Trigger, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Trigger uint8 images (in chunks), rounding the [0, 1] result back to uint8 without wrap-around.

    With `labels` (the images' true labels) a trigger's training-time `poison_batch` is used when it
    has one; otherwise `apply`.
    """
    poison_batch = getattr(trigger, "poison_batch", None) if labels is not None else None
    out = torch.empty_like(images)
    for start in range(0, len(images), APPLY_BATCH):
        chunk = images[start : start + APPLY_BATCH].float().div_(255.0)
        if poison_batch is not None:
            triggered = poison_batch(chunk, labels[start : start + APPLY_BATCH])
        else:
            triggered = trigger.apply(chunk)
        out[start : start + APPLY_BATCH] = to_uint8(triggered.cpu())
    return out


def poison(
    train: ImageSet,
    trigger: Trigger,
    *,
    target: int = 0,
    rate: float = 0.1,
    mode: str = "all-to-one",
    clean_label: bool = False,
    seed: int = 0,
) -> tuple[ImageSet, ThreatRecord]:
    """Return the poisoned training set and the record of what was done; `train` is not modified.

    The chosen images go through the trigger's `poison_batch` when it has one (else `apply`).
    Clean-label poisoning keeps every label and is all-to-one only.
    """
    check_mode(mode)
    check_target(target, train.num_classes)
    check_labelling(clean_label, mode)
    idx = choose_poison_indices(train.labels, rate, target, mode, clean_label, seed)
    images = train.images.clone()
    labels = train.labels.clone()
    images[idx] = apply_trigger_uint8(train.images[idx], trigger, train.labels[idx])
    if not clean_label:
        labels[idx] = backdoor_labels(train.labels[idx], target, mode, train.num_classes)
    record = ThreatRecord(
        attack=trigger.name,
        params=trigger.params(),
        target=target,
        mode=mode,
        rate=rate,
        clean_label=clean_label,
        poisoned_indices=idx.tolist(),
        original_labels=train.labels[idx].tolist(),
    )
    return train.with_data(images, labels), record
