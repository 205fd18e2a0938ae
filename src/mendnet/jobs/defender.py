"""What the defender of an artefact is given: its data set (checked against its model), the seeded
clean defender split of the training set and, only for a method that asks for the oracle, the
recorded backdoor. `defender_data` is the one preamble of every job that works on defender data
(repair, detect, `repair/lancet/job.py`'s locate)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mendnet.artefact import Artefact
from mendnet.data.defender import DefenderSplit, defender_sets, defender_split
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef, data_of
from mendnet.errors import MendnetError
from mendnet.evaluate import BackdoorTest
from mendnet.models import check_fits
from mendnet.repair.context import KnownTrigger
from mendnet.threats.backdoor import ThreatRecord
from mendnet.threats.backdoor.spec import threat_of


def defender_of(threat: ThreatRecord | None, n_train: int, clean_fraction: float, seed: int) -> DefenderSplit:
    """The seeded clean defender split of the training set (the threat's poisoned images excluded)."""
    poisoned = torch.tensor(threat.poisoned_indices, dtype=torch.long) if threat else None
    return defender_split(n_train, clean_fraction, seed=seed, exclude=poisoned)


@dataclass(frozen=True)
class DefenderData:
    """An artefact's data set (checked against its model), its recorded threat and the seeded clean
    defender split of the training set."""

    ref: DataRef
    train: ImageSet
    test: ImageSet
    threat: ThreatRecord | None
    split: DefenderSplit
    d_train: ImageSet
    d_val: ImageSet


def defender_data(
    art: Artefact, clean_fraction: float, seed: int, sets: tuple[ImageSet, ImageSet] | None = None
) -> DefenderData:
    """Load (or take `sets`) the artefact's data, check the model fits it (against the training set, so
    that a job that never evaluates does not touch the test set), and split off the defender's clean
    training and validation images."""
    ref = data_of(art.meta)
    train, test = sets if sets is not None else ref.load()
    check_fits(art.model, train)
    threat = threat_of(art.meta)
    split = defender_of(threat, len(train), clean_fraction, seed)
    d_train, d_val = defender_sets(train, split)
    return DefenderData(ref, train, test, threat, split, d_train, d_val)


def oracle_trigger(threat: ThreatRecord | None, backdoor: BackdoorTest | None) -> KnownTrigger:
    """The recorded backdoor handed to a method that asks for the oracle; MendnetError if there is none."""
    if backdoor is None or threat is None:
        raise MendnetError("--oracle-trigger needs an artefact with a recorded backdoor")
    return KnownTrigger(backdoor.trigger, threat.target, threat.mode)
