"""The one trigger interface and the threat record every backdoor attack produces (docs/methods.md §1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError

MODES = ("all-to-one", "all-to-all")


@runtime_checkable
class Trigger(Protocol):
    """Maps a float batch N×C×H×W in pixel space [0, 1] to its triggered copy, also in [0, 1].

    `apply` is the test-time trigger (and the training-time one unless the trigger also has
    `poison_batch(x, y) -> x'`, which `poison` then uses on the chosen training images, y being their
    original labels: the clean-label attack perturbs them with PGD before stamping). `params()` is
    JSON-able and rebuilds the trigger through `make_trigger`. A trigger class may also define the
    classmethods `prepare(params, setup: TriggerSetup)` (the first build: optimise a patch, choose a
    reflection pool) and `from_params(params, data)` (a rebuild that needs the training set).
    """

    name: str

    def apply(self, x: torch.Tensor) -> torch.Tensor: ...

    def params(self) -> dict[str, Any]: ...


def parameter_names(trigger: Any) -> list[str]:
    """The parameter names of a dataclass trigger (class or instance): its init fields shown in its repr
    (the attached model or images and the name itself are not parameters)."""
    return [f.name for f in fields(trigger) if f.init and f.repr and f.name != "name"]


def field_params(trigger: Any) -> dict[str, Any]:
    """`params()` of a dataclass trigger whose parameters are all its `parameter_names`, in field order."""
    return {name: getattr(trigger, name) for name in parameter_names(trigger)}


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


@dataclass
class TriggerSetup:
    """What building a trigger for the first time may use (`prepare`).

    train: the clean training set about to be poisoned. index_map: for each of its images, the index
    in the full data set it came from (recorded indices refer to the full set; None: the identity).
    clean_model: returns a clean model of the same task (loaded or trained on first call; None: no
    model can be had). device: where model-based optimisation runs.
    """

    train: ImageSet
    target: int
    seed: int = 0
    clean_model: Callable[[], nn.Module] | None = None
    index_map: torch.Tensor | None = None
    device: torch.device | str = "cpu"

    def model(self, attack: str) -> nn.Module:
        """The clean model, or a MendnetError saying how to provide one."""
        if self.clean_model is None:
            raise MendnetError(
                f"{attack} needs a clean model of the same task: pass --attack-param clean_model=ARTEFACT"
            )
        return self.clean_model()

    def full_indices(self, positions: torch.Tensor) -> list[int]:
        """Indices in the full data set of the training images at `positions`."""
        return (positions if self.index_map is None else self.index_map[positions]).tolist()


@dataclass(frozen=True)
class ThreatRecord:
    """What a poisoning did, saved in the artefact so any later command can rebuild the trigger.

    rate: poisoned fraction of the whole training set as asked; `poisoned_indices` holds the actual ones.
    info: how the trigger was made (e.g. the clean model a Trojan patch was optimised on); not needed
    to rebuild it. data: the data reference of the artefact (`DataRef.to_json`), attached when the
    record is read back from an artefact, for triggers whose rebuild needs the training set (Refool);
    it is saved in the artefact's meta, not in the record.
    """

    attack: str
    params: dict[str, Any]
    target: int
    mode: str
    rate: float
    clean_label: bool
    poisoned_indices: list[int] = field(default_factory=list)
    original_labels: list[int] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | None = field(default=None, compare=False)

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
            **({"info": self.info} if self.info else {}),
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
                info=dict(d.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MendnetError(f"threat record is incomplete or malformed: {e}") from e
