"""A backdoor to plant (`PoisonSpec`), and the triggered test set of a recorded one (`backdoor_test_for`),
rebuilt from an artefact's threat record (`threat_of`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.errors import MendnetError
from mendnet.evaluate import BackdoorTest
from mendnet.models import Classifier
from mendnet.threats.backdoor import Planted, ThreatRecord, attack_entry, make_trigger, plant


@dataclass(frozen=True)
class PoisonSpec:
    """A backdoor to plant while training: attack name and parameters, target, rate, mode.

    params: the trigger's parameters (`--attack-param KEY=VALUE`), plus two options of the planting
    itself: `clean_label` (0 or 1, like the field) and `clean_model` (an artefact folder of a clean model
    of the same task, for Trojan and CL; without it `train_model` trains a clean surrogate first).
    clean_label: None for the attack's default (SIG, CL and Refool clean-label, the others dirty).
    """

    attack: str = "badnets"
    target: int = 0
    rate: float = 0.1
    mode: str = "all-to-one"
    params: tuple[tuple[str, Any], ...] = ()
    clean_label: bool | None = None

    def trigger_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params if k not in ("clean_label", "clean_model")}

    def labelling(self) -> bool | None:
        """The asked labelling (None: the attack's default); the field and the parameter must agree."""
        given = dict(self.params).get("clean_label")
        if given is None:
            return self.clean_label
        if given not in (0, 1):
            raise MendnetError(f"clean_label must be 0 or 1, got {given!r}")
        if self.clean_label is not None and bool(given) != self.clean_label:
            raise MendnetError("clean_label is given twice with different values")
        return bool(given)

    def clean_model_path(self) -> str | None:
        path = dict(self.params).get("clean_model")
        return None if path is None else str(path)

    def plant(
        self,
        train: ImageSet,
        *,
        seed: int,
        clean_model: Callable[[], Classifier] | None,
        index_map: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> Planted:
        """Poison `train` as this spec says (`threats.backdoor.plant`)."""
        return plant(
            train,
            self.attack,
            self.trigger_params(),
            target=self.target,
            rate=self.rate,
            mode=self.mode,
            clean_label=self.labelling(),
            seed=seed,
            clean_model=clean_model,
            index_map=index_map,
            device=device,
        )


def backdoor_test_for(
    threat: ThreatRecord | None, test: ImageSet, train: ImageSet | None = None
) -> BackdoorTest | None:
    """Rebuild the triggered test set recorded by a threat (None for a clean model).

    train: the full training set, for triggers whose rebuild needs it (Refool's reflection pool); when
    not given it is loaded from the record's data reference (set by `threat_of`).
    """
    if threat is None:
        return None
    if train is None and attack_entry(threat.attack).needs_data:
        if not threat.data or "name" not in threat.data:
            raise MendnetError(f"rebuilding the {threat.attack} trigger needs the training set; pass --data")
        train = DataRef.from_json(threat.data).split("train")
    trigger = make_trigger(threat.attack, threat.params, train)
    return BackdoorTest.build(test, trigger, threat.target, threat.mode)


def threat_of(meta: dict[str, Any]) -> ThreatRecord | None:
    """The artefact's threat record, with the artefact's data reference attached (for rebuilding)."""
    if not meta.get("threat"):
        return None
    return replace(ThreatRecord.from_json(meta["threat"]), data=meta.get("data"))
