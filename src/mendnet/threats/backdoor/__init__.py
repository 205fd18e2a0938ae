"""Backdoor attacks: triggers, the one poisoning function, and the attack registry (docs/methods.md §1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.threats.backdoor.badnets import BadNetsTrigger
from mendnet.threats.backdoor.blend import BlendTrigger
from mendnet.threats.backdoor.clean_label import CLTrigger
from mendnet.threats.backdoor.poison import check_labelling, poison, poison_count
from mendnet.threats.backdoor.refool import RefoolTrigger
from mendnet.threats.backdoor.sig import SIGTrigger
from mendnet.threats.backdoor.trigger import (
    ThreatRecord,
    Trigger,
    TriggerSetup,
    backdoor_labels,
    check_mode,
    check_target,
    parameter_names,
)
from mendnet.threats.backdoor.trojan import TrojanTrigger


@dataclass(frozen=True)
class AttackEntry:
    """A registered attack: its trigger class and labelling.

    clean_label: the default labelling (True: only target-class images are poisoned, labels kept).
    fixed_labelling: the attack is defined for its default labelling only (CL).
    needs_data: rebuilding the trigger needs the training set (Refool's reflection pool).
    needs_model: preparing the trigger needs a clean model of the task (Trojan's patch, CL's PGD).
    """

    trigger: type
    clean_label: bool = False
    fixed_labelling: bool = False
    needs_data: bool = False
    needs_model: bool = False


TRIGGERS: dict[str, AttackEntry] = {
    "badnets": AttackEntry(BadNetsTrigger),
    "blend": AttackEntry(BlendTrigger),
    "trojan": AttackEntry(TrojanTrigger, needs_model=True),
    "sig": AttackEntry(SIGTrigger, clean_label=True),
    "cl": AttackEntry(CLTrigger, clean_label=True, fixed_labelling=True, needs_model=True),
    "refool": AttackEntry(RefoolTrigger, clean_label=True, needs_data=True),
}


def attack_entry(name: str) -> AttackEntry:
    """The registered attack `name`; a MendnetError listing the known ones otherwise."""
    if name not in TRIGGERS:
        raise MendnetError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(TRIGGERS))}")
    return TRIGGERS[name]


def resolve_clean_label(name: str, clean_label: bool | None) -> bool:
    """The labelling to use: the attack's default when None; an error if the attack has only one."""
    entry = attack_entry(name)
    if clean_label is None:
        return entry.clean_label
    if entry.fixed_labelling and bool(clean_label) != entry.clean_label:
        kind = "clean-label" if entry.clean_label else "dirty-label"
        raise MendnetError(f"{name} is a {kind} attack only")
    return bool(clean_label)


def trigger_parameters(name: str) -> list[str]:
    """The parameter names of attack `name`: those of its trigger class (`trigger.parameter_names`: the init
    fields shown in its repr; the attached model or images and the name itself are not parameters)."""
    return parameter_names(attack_entry(name).trigger)


def _construct(name: str, params: dict[str, Any], build: Any) -> Trigger:
    unknown = sorted(set(params) - set(trigger_parameters(name)))
    if unknown:
        raise MendnetError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(trigger_parameters(name))}"
        )
    try:
        return build(params)
    except (TypeError, ValueError) as e:
        raise MendnetError(f"{name}: bad trigger parameters: {e}") from e


def make_trigger(name: str, params: dict[str, Any] | None = None, data: ImageSet | None = None) -> Trigger:
    """Rebuild a registered trigger from its name and JSON parameters (as saved in a ThreatRecord).

    data: the full training set the record refers to, for triggers that need it (Refool's pool).
    """
    entry = attack_entry(name)
    params = dict(params or {})
    if hasattr(entry.trigger, "from_params"):
        return _construct(name, params, lambda p: entry.trigger.from_params(p, data))
    return _construct(name, params, lambda p: entry.trigger(**p))


def prepare_trigger(name: str, params: dict[str, Any] | None, setup: TriggerSetup) -> Trigger:
    """Build a trigger for the first time for the training set in `setup` (optimising a Trojan patch,
    attaching CL's clean model, drawing Refool's pool); its `params()` then rebuild it."""
    entry = attack_entry(name)
    params = dict(params or {})
    if hasattr(entry.trigger, "prepare"):
        return _construct(name, params, lambda p: entry.trigger.prepare(p, setup))
    return _construct(name, params, lambda p: entry.trigger(**p))


@dataclass(frozen=True)
class Planted:
    """A planted backdoor: the poisoned training set, its record (indices in the full data set), the
    trigger as prepared (with any attached model or pool), and the poisoned images' positions in the
    training set that was passed in."""

    data: ImageSet
    record: ThreatRecord
    trigger: Trigger
    positions: torch.Tensor


def plant(
    train: ImageSet,
    attack: str,
    params: dict[str, Any] | None = None,
    *,
    target: int = 0,
    rate: float = 0.1,
    mode: str = "all-to-one",
    clean_label: bool | None = None,
    seed: int = 0,
    clean_model: Callable[[], nn.Module] | None = None,
    index_map: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> Planted:
    """Prepare attack `attack`'s trigger for `train` and poison it (docs/methods.md §1).

    clean_label: None for the attack's default labelling. clean_model: returns a clean model when an
    attack needs one (Trojan, CL). index_map: full-data-set index of each image of `train` (a subset),
    so the record's indices refer to the full set.
    """
    labelling = resolve_clean_label(attack, clean_label)
    check_target(target, train.num_classes)
    check_mode(mode)
    check_labelling(labelling, mode)
    poison_count(rate, len(train))  # bad settings fail before any (possibly long) preparation
    setup = TriggerSetup(train, target, seed, clean_model, index_map, device)
    trigger = prepare_trigger(attack, params, setup)
    data, record = poison(
        train, trigger, target=target, rate=rate, mode=mode, clean_label=labelling, seed=seed
    )
    positions = torch.tensor(record.poisoned_indices, dtype=torch.long)
    record = replace(record, poisoned_indices=setup.full_indices(positions))
    return Planted(data, record, trigger, positions)


__all__ = [
    "TRIGGERS",
    "AttackEntry",
    "BadNetsTrigger",
    "BlendTrigger",
    "CLTrigger",
    "Planted",
    "RefoolTrigger",
    "SIGTrigger",
    "ThreatRecord",
    "Trigger",
    "TriggerSetup",
    "TrojanTrigger",
    "attack_entry",
    "backdoor_labels",
    "make_trigger",
    "plant",
    "poison",
    "prepare_trigger",
    "resolve_clean_label",
    "trigger_parameters",
]
