"""Backdoor attacks: triggers, the one poisoning function, and the trigger registry."""

from __future__ import annotations

from typing import Any

from mendnet.errors import MendnetError
from mendnet.threats.backdoor.badnets import BadNetsTrigger
from mendnet.threats.backdoor.poison import poison
from mendnet.threats.backdoor.trigger import ThreatRecord, Trigger, backdoor_labels

TRIGGERS: dict[str, type] = {"badnets": BadNetsTrigger}


def make_trigger(name: str, params: dict[str, Any] | None = None) -> Trigger:
    """Build a registered trigger from its name and JSON parameters (as saved in a ThreatRecord)."""
    if name not in TRIGGERS:
        raise MendnetError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(TRIGGERS))}")
    try:
        return TRIGGERS[name](**(params or {}))
    except TypeError as e:
        raise MendnetError(f"{name}: bad trigger parameters {params}: {e}") from e


__all__ = [
    "TRIGGERS",
    "BadNetsTrigger",
    "ThreatRecord",
    "Trigger",
    "backdoor_labels",
    "make_trigger",
    "poison",
]
