"""The one registry of methods: name → (Config dataclass with the paper's defaults, run function).

The CLI's `repair` sub-commands and the benchmark grids are generated from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mendnet.repair import fineprune, finetune, mcr, nad, neural_cleanse


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    config: type
    run: Callable[..., Any]


REPAIRS: dict[str, Method] = {
    "finetune": Method(
        "finetune",
        "fine-tune all layers on defender data (baseline)",
        finetune.Config,
        finetune.run,
    ),
    "nad": Method("nad", "Neural Attention Distillation (Li et al., ICLR 2021)", nad.Config, nad.run),
    "fineprune": Method(
        "fineprune",
        "Fine-pruning: prune dormant last-layer channels, then fine-tune (Liu et al., RAID 2018)",
        fineprune.Config,
        fineprune.run,
    ),
    "mcr": Method(
        "mcr",
        "Mode Connectivity Repair: a point on a curve to a fine-tuned copy (Zhao et al., ICLR 2020)",
        mcr.Config,
        mcr.run,
    ),
    "neural-cleanse": Method(
        "neural-cleanse",
        "Neural Cleanse: reverse the trigger, then unlearn it (Wang et al., S&P 2019)",
        neural_cleanse.Config,
        neural_cleanse.run,
    ),
}
