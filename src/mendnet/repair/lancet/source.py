"""Where a repair's erroneous pairs come from: a backdoor's trigger (recorded, reversed by Neural
Cleanse, or loaded from a reversed-trigger file), or the defender's misclassified images (defects).

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.detect import neural_cleanse as nc
from mendnet.detect.reversed_trigger import TRIGGER_FILE, ReversedTriggers
from mendnet.errors import MendnetError
from mendnet.repair.context import RepairContext
from mendnet.repair.lancet.companion import (
    MaskSettings,
    Pairs,
    backdoor_pairs,
    mask_companions,
    misclassified,
)

Stamp = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ErrorSource:
    """The pairs, the trigger that makes erroneous inputs (None for defects), what to record, and files
    (a reversed trigger)."""

    pairs: Pairs
    stamp: Stamp | None
    info: dict = field(default_factory=dict)
    files: dict[str, bytes | str] = field(default_factory=dict)


def seeded_images(
    data: ImageSet, limit: int, seed: int, device: torch.device | str
) -> tuple[torch.Tensor, ...]:
    """Up to `limit` images of `data` in a seeded order: (x float [0, 1] on device, y)."""
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:limit]
    return data.float_images(idx).to(device), data.labels[idx].to(device)


def reversed_stamp(
    model: nn.Module, ctx: RepairContext, cfg: nc.Config, trigger_file: str | None, label: int | None = None
) -> tuple[Stamp | None, int | None, dict, dict[str, bytes | str]]:
    """Neural Cleanse's trigger of the flagged label with the smallest norm, or of `label` when given
    (reversed on the defender data, or loaded): (stamp, target, info, files); stamp and target None when
    no label is flagged and none is given."""
    if trigger_file:
        triggers = ReversedTriggers.load(trigger_file)
        info: dict = {"trigger": f"reversed, loaded from {trigger_file}"}
        files: dict[str, bytes | str] = {}
    else:
        triggers, log = nc.reverse_engineer(
            model, ctx.defender_train, cfg, seed=ctx.seed, device=ctx.device, progress=ctx.progress
        )
        info = {"trigger": "reversed by neural cleanse", "reverse_seconds": log.seconds}
        files = {TRIGGER_FILE: triggers.to_bytes()}
    if triggers.num_classes != model.spec.num_classes or triggers.image_shape != tuple(
        model.spec.input_shape
    ):
        raise MendnetError(f"reversed trigger {trigger_file} does not fit the model's labels or input shape")
    flagged = triggers.flagged(cfg.threshold)
    info["flagged"] = flagged
    if label is not None and not 0 <= label < triggers.num_classes:
        raise MendnetError(f"label {label} is out of range [0, {triggers.num_classes})")
    if label is None and not flagged:
        return None, None, info, files
    target = flagged[0] if label is None else label

    def stamp(x: torch.Tensor) -> torch.Tensor:
        return triggers.stamp(x, torch.full((len(x),), target, dtype=torch.long, device=x.device))

    return stamp, target, info, files


def backdoor_source(
    model: nn.Module,
    ctx: RepairContext,
    cfg: nc.Config,
    *,
    oracle: bool,
    trigger_file: str | None,
    pairs: int,
    label: int | None = None,
) -> ErrorSource | None:
    """Pairs from the recorded trigger (`oracle`) or the reversed one (of `label` when given); None when
    Neural Cleanse flags no label and none is given. Pairs are drawn from up to 4·pairs + 200 seeded
    defender images (our choice)."""
    if oracle:
        known = ctx.known_trigger
        if known is None:
            raise MendnetError("--oracle-trigger needs an artefact with a recorded backdoor")
        if known.mode != "all-to-one":
            raise MendnetError(f"AI-Lancet's backdoor mode needs an all-to-one backdoor, not {known.mode}")
        stamp, target, info, files = known.trigger.apply, known.target, {"trigger": "recorded (oracle)"}, {}
    else:
        stamp, target, info, files = reversed_stamp(model, ctx, cfg, trigger_file, label)
        if stamp is None:
            return None
    x, y = seeded_images(ctx.defender_train, 4 * pairs + 200, ctx.seed, ctx.device)
    found = backdoor_pairs(model, x, y, stamp, target, pairs)
    info.update(target=target, pairs=len(found))
    return ErrorSource(found, stamp, info, files)


def defect_source(model: nn.Module, ctx: RepairContext, pairs: int, settings: MaskSettings) -> ErrorSource:
    """Pairs from the defender images the model misclassifies, companions by mask optimisation."""
    x, y = seeded_images(ctx.defender_train, len(ctx.defender_train), ctx.seed, ctx.device)
    wrong = misclassified(model, x, y)[:pairs]
    if len(wrong) == 0:
        raise MendnetError(
            f"no erroneous samples found: the model misclassifies none of {len(x)} defender images"
        )
    found = mask_companions(model, x[wrong], y[wrong], settings)
    return ErrorSource(found, None, {"misclassified": len(wrong), "pairs": len(found)})
