"""Behaviour on real data: the session's backdoored Fashion-MNIST WRN-16-1, repaired by FT and NAD."""

import pytest
import torch

from mendnet.repair import nad
from mendnet.repair.context import RepairContext


def test_backdoor_is_real(backdoored):
    m = backdoored.metrics
    assert m["asr"] >= 0.90, m  # the trigger genuinely works
    assert m["acc"] >= 0.80, m


@pytest.fixture(scope="module")
def nad_outcome(nad_repaired):
    return nad_repaired  # conftest: paper defaults except lr 0.05 and 5 epochs, FT's model as teacher


def test_nad_removes_backdoor_and_keeps_accuracy(backdoored, nad_outcome):
    before, after = backdoored.metrics, nad_outcome.metrics
    assert after["asr"] < 0.20, (before, after)
    assert after["acc"] >= before["acc"] - 0.05, (before, after)
    assert after["der"] > 0.85
    info = nad_outcome.meta["repair"]["info"]
    assert info["stages"] == ["net.block1", "net.block2", "net.block3"]
    assert info["teacher"] == "given"  # conftest's `finetuned`: the teacher NAD's default trains


def test_nads_default_teacher_is_plain_finetuning(backdoored, fmnist):
    """What lets the fixtures share one run: NAD's default teacher is FT with FT's defaults (checked on
    a short run of both, so that the shared fixture stays the teacher NAD would train)."""
    from mendnet.jobs.defender import defender_data
    from mendnet.repair import finetune

    data = defender_data(backdoored, 0.05, 0, fmnist)
    small = data.d_train.subset(torch.arange(256))
    ctx = RepairContext(small, small, progress=False)
    teacher, _ = nad.train_teacher(backdoored.model, ctx, nad.Config(teacher_epochs=1))
    tuned = finetune.run(backdoored.model, ctx, finetune.Config(epochs=1)).model
    for a, b in zip(teacher.state_dict().values(), tuned.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_defender_data_is_clean_and_recorded(backdoored, nad_outcome):
    split = nad_outcome.meta["defender"]
    poisoned = set(backdoored.meta["threat"]["poisoned_indices"])
    chosen = set(split["train"]) | set(split["val"])
    assert len(chosen) == 3000 and not (chosen & poisoned)
    assert len(split["val"]) == 300


def test_nad_beats_plain_finetuning_on_asr(backdoored, finetuned, nad_outcome):
    ft = finetuned
    assert ft.metrics["asr"] < backdoored.metrics["asr"]
    assert nad_outcome.metrics["asr"] <= ft.metrics["asr"] + 0.02, (ft.metrics, nad_outcome.metrics)
