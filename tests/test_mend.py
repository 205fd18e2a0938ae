"""Mend on real data: it decides from defender data alone (the test set and the recorded trigger made
unreadable), it lowers the ASR of the genuinely backdoored fixture model, and it does not damage a clean
model. Short settings (one or two candidates, a short scan) keep the suite's time."""

from __future__ import annotations

import pytest
import torch

from mendnet.evaluate import backdoor_metrics
from mendnet.jobs.mend import mend_artefact
from mendnet.mend.decide import ORIGINAL
from mendnet.mend.run import MendConfig
from mendnet.threats.backdoor.spec import backdoor_test_for, threat_of

# The scan at the size that flags this model's target in tests/test_neural_cleanse.py (10 epochs of 10
# mini-batches of 12 images), focused on 2 labels after 3 epochs.
SCAN = {"scan_epochs": 10, "scan_batches": 10, "scan_batch_size": 12, "focus": 2, "focus_after": 3}


class Unreadable:
    """Stands in for the test set: any access fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"mend read the test set ({name})")

    def __len__(self) -> int:
        raise AssertionError("mend read the test set (len)")


@pytest.fixture(scope="module")
def mended(backdoored, fmnist):
    import mendnet.jobs.mend as job
    import mendnet.threats.backdoor as backdoor_pkg
    import mendnet.threats.backdoor.spec as spec

    def refuse(*args, **kwargs):
        raise AssertionError("mend rebuilt the recorded trigger")

    config = MendConfig(candidates=("fst",), **SCAN)
    train, _ = fmnist
    with pytest.MonkeyPatch.context() as mp:
        for module in (spec, backdoor_pkg):
            mp.setattr(module, "make_trigger", refuse)
        for module in (spec, job):
            mp.setattr(module, "backdoor_test_for", refuse)
        return mend_artefact(
            backdoored,
            config,
            clean_fraction=0.05,
            sets=(train, Unreadable()),
            evaluate=False,
            progress=False,
        )


def test_mend_decides_without_the_test_set_or_the_trigger(mended):
    record = mended.meta["mend"]
    assert record["chosen"] in {ORIGINAL, "fst"}
    assert {s["name"] for s in record["scores"]} == {ORIGINAL, "fst"}
    assert mended.meta["oracle"] is False and "acc" not in mended.metrics
    assert {"report.html", "report.md", "reversed_trigger.safetensors"} <= set(mended.files)


def test_mend_scores_track_the_backdoor(mended, backdoored, fmnist):
    """The scan points at the true target; the untouched model's proxy ASR there is high, FST's is much
    lower; and the kept model's true ASR is as the decision implies (lower only if FST was kept)."""
    _, test = fmnist
    record = mended.meta["mend"]
    assert 0 in record["suspects"], record["scan"]
    focus = record["scan"]["focus_norms"]  # every label's norm after the same 3 epochs
    assert len(focus) == 10 and all(n > 0 for n in focus)
    assert len(record["scan"]["stopped_by_focus"]) == 8  # all but the 2 focused labels
    assert not set(record["flagged"]) & set(record["scan"]["stopped_by_focus"])  # flagged ones go on
    proxy = {s["name"]: s["proxy"]["0"] for s in record["scores"]}
    assert proxy[ORIGINAL] >= 0.8 and proxy["fst"] < 0.5 * proxy[ORIGINAL], record["scores"]
    after = backdoor_metrics(mended.model, test, backdoor_test_for(threat_of(backdoored.meta), test))
    if record["chosen"] == "fst":
        assert after["asr"] < 0.5 * backdoored.metrics["asr"], after
    else:
        assert after["asr"] == pytest.approx(backdoored.metrics["asr"], abs=1e-6), after


def test_mend_does_not_damage_a_clean_model(clean_small_cnn, fmnist):
    """2% defender data (1,200 images; the FST paper's range is 2-5%): less data makes a harmful
    fine-tune more likely, not less, and the run shorter."""
    config = MendConfig(candidates=("fst",), **SCAN)
    out = mend_artefact(clean_small_cnn, config, clean_fraction=0.02, sets=fmnist, progress=False)
    before, after = out.metrics["before"], out.metrics
    assert out.meta["mend"]["chosen"] == ORIGINAL or after["acc"] >= before["acc"] - 0.005, out.meta["mend"]
    assert torch.isfinite(torch.tensor(out.meta["mend"]["scan"]["norms"])).all()
