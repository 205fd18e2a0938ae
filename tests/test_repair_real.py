"""Behaviour on real data: the session's backdoored Fashion-MNIST WRN-16-1, repaired by FT and NAD."""

import pytest

from mendnet.repair import finetune


def test_backdoor_is_real(backdoored):
    m = backdoored.metrics
    assert m["asr"] >= 0.90, m  # the trigger genuinely works
    assert m["acc"] >= 0.80, m


@pytest.fixture(scope="module")
def nad_outcome(nad_repaired):
    return nad_repaired  # conftest: paper defaults except lr 0.05 and 10 epochs


def test_nad_removes_backdoor_and_keeps_accuracy(backdoored, nad_outcome):
    before, after = backdoored.metrics, nad_outcome.metrics
    assert after["asr"] < 0.20, (before, after)
    assert after["acc"] >= before["acc"] - 0.05, (before, after)
    assert after["der"] > 0.85
    info = nad_outcome.meta["repair"]["info"]
    assert info["stages"] == ["net.block1", "net.block2", "net.block3"]
    assert info["teacher"] == "finetune"


def test_defender_data_is_clean_and_recorded(backdoored, nad_outcome):
    split = nad_outcome.meta["defender"]
    poisoned = set(backdoored.meta["threat"]["poisoned_indices"])
    chosen = set(split["train"]) | set(split["val"])
    assert len(chosen) == 3000 and not (chosen & poisoned)
    assert len(split["val"]) == 300


def test_nad_beats_plain_finetuning_on_asr(backdoored, fmnist, nad_outcome):
    from mendnet.jobs.repair import repair_model

    ft = repair_model(
        backdoored,
        "finetune",
        finetune.Config(),
        clean_fraction=0.05,
        sets=fmnist,
        progress=False,
        before=backdoored.metrics,
    )
    assert ft.metrics["asr"] < backdoored.metrics["asr"]
    assert nad_outcome.metrics["asr"] <= ft.metrics["asr"] + 0.02, (ft.metrics, nad_outcome.metrics)
