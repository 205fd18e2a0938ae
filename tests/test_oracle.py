"""The recorded trigger reaches a repair only through an explicit oracle flag, which the output records."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mendnet.jobs.repair import repair_model
from mendnet.registry import REPAIRS
from mendnet.repair.context import RepairResult, asks_for_oracle


@pytest.fixture
def small_sets(fmnist):
    """The full training set (defender data is drawn from it) and 200 test images (fast metrics)."""
    train, test = fmnist
    return train, test.subset(torch.arange(200))


def spy_on(monkeypatch, name: str) -> list:
    """Replace a registered repair's run by one that records the context it was given."""
    seen: list = []

    def run(model, ctx, config):
        seen.append(ctx)
        return RepairResult(model)

    monkeypatch.setitem(REPAIRS, name, dataclasses.replace(REPAIRS[name], run=run))
    return seen


@pytest.mark.parametrize("name", list(REPAIRS))
def test_no_repair_sees_the_trigger_without_the_oracle(name, backdoored, small_sets, monkeypatch):
    config = REPAIRS[name].config()
    assert not asks_for_oracle(config)
    seen = spy_on(monkeypatch, name)
    outcome = repair_model(
        backdoored, name, config, sets=small_sets, progress=False, before=backdoored.metrics
    )
    assert len(seen) == 1 and seen[0].known_trigger is None
    assert outcome.meta["oracle"] is False


def test_the_oracle_flag_hands_over_the_recorded_trigger_and_is_recorded(backdoored, small_sets, monkeypatch):
    config = REPAIRS["lancet-flip"].config(oracle_trigger=True)
    seen = spy_on(monkeypatch, "lancet-flip")
    outcome = repair_model(
        backdoored, "lancet-flip", config, sets=small_sets, progress=False, before=backdoored.metrics
    )
    known = seen[0].known_trigger
    assert known is not None and known.target == backdoored.meta["threat"]["target"]
    assert outcome.meta["oracle"] is True
