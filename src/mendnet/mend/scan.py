"""Mend's scan: Neural Cleanse's reversal of every label with K-Arm-style focus (docs/methods.md §10).

After `focus_after` epochs, where every label had run the same epochs, NC's rule flags labels on the
norms then; only those (and at least the `focus` smallest-norm labels) go on optimising, the others keep
the norms they had (upper bounds). The flags are those of the focus point: the final norms mix converged
and stopped labels, whose spread hides the outlier. Without focus, the final norms flag, as in the
paper. The suspects are the flagged labels, or, when none is flagged, the label with the smallest final
norm (so that every candidate has a proxy to be scored on).

Differences from the paper and the authors' release: docs/deviations.md#mend.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mendnet.data.imageset import ImageSet
from mendnet.detect.neural_cleanse import Config as NCConfig
from mendnet.detect.neural_cleanse import ReversalLog, reverse_engineer
from mendnet.detect.reversed_trigger import ReversedTriggers
from mendnet.models import Classifier


@dataclass(frozen=True)
class Scan:
    """The reversed triggers of every label, the labels flagged by their anomaly index, the suspects
    scored by the proxy, and how the reversal ran."""

    triggers: ReversedTriggers
    flagged: list[int]
    suspects: list[int]
    log: ReversalLog


def suspects_of(triggers: ReversedTriggers, flagged: list[int]) -> list[int]:
    """The flagged labels, or the smallest-norm label when none is flagged (pure)."""
    return list(flagged) if flagged else [int(torch.argmin(triggers.norms))]


def scan_flags(triggers: ReversedTriggers, log: ReversalLog, threshold: float) -> list[int]:
    """The labels flagged at the focus point when the reversal focused (`ReversalLog.focus_flagged`),
    else NC's rule on the final norms; smallest norm first (pure)."""
    if log.focus_flagged is None:
        return triggers.flagged(threshold)
    return list(log.focus_flagged)


def scan(
    model: Classifier,
    data: ImageSet,
    config: NCConfig,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> Scan:
    """Reverse every label's trigger on the clean `data` and name the suspects."""
    triggers, log = reverse_engineer(model, data, config, seed=seed, device=device, progress=progress)
    flagged = scan_flags(triggers, log, config.threshold)
    return Scan(triggers, flagged, suspects_of(triggers, flagged), log)
