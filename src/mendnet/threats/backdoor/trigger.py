"""The one trigger interface and the threat record every backdoor attack produces (methods.md §1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from mendnet.errors import MendnetError

MODES = ("all-to-one", "all-to-all")


@runtime_checkable
class Trigger(Protocol):
    """Maps a float batch N×C×H×W in pixel space [0, 1] to its triggered copy, also in [0, 1]."""

    name: str

    def apply(self, x: torch.Tensor) -> torch.Tensor: ...

    def params(self) -> dict[str, Any]: ...


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise MendnetError(f"unknown poisoning mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def check_target(target: int, num_classes: int) -> int:
    if not 0 <= target < num_classes:
        raise MendnetError(f"target label {target} is out of range [0, {num_classes})")
    return target


def backdoor_labels(y: torch.Tensor, target: int, mode: str, num_classes: int) -> torch.Tensor:
    """The label an attack wants for inputs of true label y: t (all-to-one) or (y+1) mod K (all-to-all)."""
    if mode == "all-to-one":
        return torch.full_like(y, target)
    return (y + 1) % num_classes


@dataclass(frozen=True)
class ThreatRecord:
    """What a poisoning did, saved in the artefact so any later command can rebuild the trigger.

    rate: poisoned fraction of the whole training set as asked; `poisoned_indices` holds the actual ones.
    """

    attack: str
    params: dict[str, Any]
    target: int
    mode: str
    rate: float
    clean_label: bool
    poisoned_indices: list[int] = field(default_factory=list)
    original_labels: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "params": self.params,
            "target": self.target,
            "mode": self.mode,
            "rate": self.rate,
            "clean_label": self.clean_label,
            "poisoned_count": len(self.poisoned_indices),
            "poisoned_indices": self.poisoned_indices,
            "original_labels": self.original_labels,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ThreatRecord:
        try:
            return cls(
                attack=d["attack"],
                params=dict(d["params"]),
                target=int(d["target"]),
                mode=check_mode(d["mode"]),
                rate=float(d["rate"]),
                clean_label=bool(d["clean_label"]),
                poisoned_indices=list(d.get("poisoned_indices", [])),
                original_labels=list(d.get("original_labels", [])),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MendnetError(f"threat record is incomplete or malformed: {e}") from e
