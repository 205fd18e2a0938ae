"""The one registry of methods: name → (Config dataclass with the paper's defaults, run function).

The CLI's `repair` sub-commands and the benchmark grids are generated from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mendnet.repair import finetune, nad


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
}
