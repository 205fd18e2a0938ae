"""What every repair receives besides the model and its config, and what it returns.

Differences from the paper and the authors' release: docs/deviations.md#general.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.models import Classifier
from mendnet.threats.backdoor.trigger import Trigger

MIN_VAL_IMAGES = 10


@dataclass(frozen=True)
class KnownTrigger:
    """The artefact's recorded backdoor, for repairs run with the true trigger (an oracle setting, e.g.
    AI-Lancet's `oracle_trigger`): the trigger (pixel space [0, 1]), its target label and poisoning mode."""

    trigger: Trigger
    target: int
    mode: str


def asks_for_oracle(config: Any) -> bool:
    """Whether a method's config asks for the recorded (true) trigger: a field `oracle_trigger` set to
    True. Only then does a repair's context carry `known_trigger`, and the output records the oracle."""
    return bool(getattr(config, "oracle_trigger", False))


@dataclass
class RepairContext:
    """Defender data (clean; `val` is the 10% held out for every stopping rule), device, seed, an
    optional teacher model given by the user, and the recorded backdoor: filled only for a config that
    asks for the oracle (`asks_for_oracle`), None for every other run."""

    defender_train: ImageSet
    defender_val: ImageSet
    device: torch.device | str = "cpu"
    seed: int = 0
    progress: bool = True
    teacher: Classifier | None = None
    known_trigger: KnownTrigger | None = None

    def require_val(self, method: str) -> None:
        """MendnetError unless the validation split has at least MIN_VAL_IMAGES images (a method that
        decides on it, e.g. a stopping rule, needs more than a handful)."""
        if len(self.defender_val) < MIN_VAL_IMAGES:
            raise MendnetError(
                f"{method} needs at least {MIN_VAL_IMAGES} defender validation images, got "
                f"{len(self.defender_val)}; raise the clean fraction"
            )


@dataclass
class RepairResult:
    """The repaired model, what the method wants recorded (JSON-able `info`), and files for the output
    artefact (name → bytes or text, e.g. a reversed trigger's PNG)."""

    model: Classifier
    info: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes | str] = field(default_factory=dict)
