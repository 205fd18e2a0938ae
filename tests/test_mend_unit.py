"""Mend's rule, parts and scan focus on small inputs (the real-data tests are in test_mend.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mendnet.data.imageset import ImageSet
from mendnet.detect.neural_cleanse import Config as NCConfig
from mendnet.detect.neural_cleanse import CostSchedule, ReversalLog, focus_flags, focus_stop
from mendnet.detect.reversed_trigger import ReversedTriggers
from mendnet.errors import MendnetError
from mendnet.mend.decide import ORIGINAL, Rule, Score, decide
from mendnet.mend.report import sections
from mendnet.mend.run import MendConfig, mend, split_parts
from mendnet.mend.scan import scan_flags
from mendnet.models import ModelSpec, build_classifier
from mendnet.report.html import Table


def score(name: str, acc: float, worst: float) -> Score:
    return Score(name, acc, {0: worst})


def test_flagged_model_takes_the_lowest_proxy_within_three_points_of_the_best_accuracy():
    original = score(ORIGINAL, 0.91, 1.0)
    candidates = [score("a", 0.885, 0.05), score("b", 0.87, 0.01), score("c", 0.908, 0.05)]
    d = decide(original, candidates, flagged=True)
    # b is 4 points below the best (0.91): out; a and c tie on the proxy, c has the higher accuracy
    assert d.chosen == "c" and d.qualified == ["a", "c"]
    assert "within 3 points of the best" in d.reason
    strict = decide(original, candidates, flagged=True, rule=Rule(acc_tolerance=0.01))
    assert strict.chosen == "c" and strict.qualified == ["c"] and "within 1 point of" in strict.reason


def test_unflagged_model_keeps_candidates_within_half_a_point_of_itself():
    original = score(ORIGINAL, 0.91, 0.99)
    d = decide(original, [score("a", 0.903, 0.10), score("b", 0.906, 0.50)], flagged=False)
    assert d.chosen == "b" and d.qualified == ["b"]


def test_the_model_is_kept_without_a_large_enough_gain_or_a_qualifying_candidate():
    original = score(ORIGINAL, 0.91, 0.30)
    assert decide(original, [score("a", 0.91, 0.25)], flagged=False).chosen == ORIGINAL
    kept = decide(original, [score("a", 0.80, 0.0)], flagged=True)
    assert kept.chosen == ORIGINAL and kept.qualified == [] and "no candidate" in kept.reason
    assert decide(original, [score("a", 0.91, 0.20)], flagged=False, rule=Rule(min_gain=0.1)).chosen == "a"


def test_parts_are_disjoint_seeded_and_cover_the_clean_images():
    ids = ImageSet(
        torch.zeros(1000, 1, 2, 2, dtype=torch.uint8),
        torch.arange(1000),
        tuple(map(str, range(1000))),
        (0.5,),
        (0.5,),
    )
    a, b, c = split_parts(ids, 0.2, seed=3)
    assert (len(a), len(b), len(c)) == (720, 80, 200)
    assert sorted(torch.cat([a, b, c]).tolist()) == list(range(1000))
    again = split_parts(ids, 0.2, seed=3)
    assert all(torch.equal(x, y) for x, y in zip((a, b, c), again, strict=True))
    with pytest.raises(MendnetError, match="at least"):
        split_parts(ids.subset(torch.arange(40)), 0.2, seed=0)


def test_focus_keeps_the_smallest_norms_reached_labels_first():
    schedule = CostSchedule.start(5, 1e-3)
    best = torch.tensor([float("inf"), 9.0, 3.0, float("inf"), 12.0])
    current = torch.tensor([1.0, 9.0, 3.0, 2.0, 12.0])
    stopped = focus_stop(schedule, best, current, keep=3)
    # reached labels 2 (3.0), 1 (9.0), 4 (12.0) rank before the unreached 0 and 3, whatever their size
    assert stopped == [0, 3]
    assert schedule.done.tolist() == [True, False, False, True, False]
    with pytest.raises(MendnetError, match="focus"):
        NCConfig(focus=-1)


def test_the_scan_flags_on_the_norms_at_the_focus_point():
    """At the focus point label 0 stands out (index 5.0); afterwards the stopped labels keep unconverged
    norms and the focused ones shrink, and on those final norms label 0's index falls to 1.0. The scan
    takes the focus point's flags; without focus the final norms decide, as in the paper. A label that
    had not reached the success threshold by the focus point is not flagged there."""
    final = torch.tensor([10.0, 12.0, 20.0, 30.0, 60.0, 60.0, 80.0, 90.0, 95.0, 99.0])
    at_focus = torch.tensor([10.0, 40.0, 42.0, 44.0, 46.0, 48.0, 50.0, 52.0, 54.0, 56.0])
    reached = torch.ones(10, dtype=torch.bool)
    assert focus_flags(at_focus, reached, 2.0) == [0]
    assert focus_flags(at_focus, torch.arange(10) != 0, 2.0) == []
    triggers = ReversedTriggers(torch.zeros(10, 4, 4), torch.zeros(10, 1, 4, 4), final, reached)
    assert triggers.flagged(2.0) == []
    focused = ReversalLog([3] * 10, [1e-3] * 10, 1.0, list(range(3, 10)), at_focus.tolist(), [0])
    assert scan_flags(triggers, focused, 2.0) == [0]
    assert scan_flags(triggers, ReversalLog([3] * 10, [1e-3] * 10, 1.0, []), 2.0) == []


def test_mend_runs_end_to_end_and_records_every_step():
    """A toy run (random images, an untrained small CNN): every candidate runs or records why not, the
    decision names a scored model, and the input model is unchanged."""
    torch.manual_seed(0)
    model = build_classifier(ModelSpec("small-cnn", 10, (1, 28, 28), (0.5,), (0.5,)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8, generator=gen)
    clean = ImageSet(images, torch.arange(300) % 10, tuple("abcdefghij"), (0.5,), (0.5,))
    cfg = MendConfig(
        candidates=("fst", "fineprune", "lancet-finetune"),
        scan_epochs=3,
        scan_batches=4,
        scan_batch_size=16,
        focus=2,
        focus_after=1,
        rescore_epochs=1,
    )
    lines: list[str] = []
    out = mend(model, clean, cfg, progress=False, say=lines.append)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert out.parts == {"repair_train": 216, "repair_val": 24, "mend_val": 60}
    assert {s.name for s in out.scores} >= {ORIGINAL, "fst", "fineprune"}
    assert out.decision.chosen in {s.name for s in out.scores}
    assert set(out.candidates) == {"fst", "fineprune", "lancet-finetune"}
    assert len(out.scan.log.stopped_by_focus) == 8
    record = out.record()
    assert record["chosen"] == out.decision.chosen and set(record["seconds"]) >= {
        "scan",
        "fst",
        "scoring",
        "total",
    }
    assert any("scan done" in line for line in lines)
    # rescoring: every score's proxy comes from triggers reversed again, the scan's trigger's beside it
    suspects = {str(k) for k in out.scan.suspects}
    assert all(set(s["proxy"]) == set(s["scan_proxy"]) == suspects for s in record["scores"])
    tables = [b for b in sections(record, {}, list("abcdefghij"))[1].blocks if isinstance(b, Table)]
    assert f"scan trigger's ASR, label {out.scan.suspects[0]}" in tables[0].header
    # each candidate's settings are recorded (the trigger's temporary path left out) and reported
    assert record["candidates"]["fst"]["settings"]["lr"] == cfg.fst_lr
    assert "trigger" not in record["candidates"]["lancet-finetune"]["settings"]
    assert [row[0] for row in tables[1].rows] == ["fst", "fineprune", "lancet-finetune"]
    assert f"lr {cfg.fst_lr}" in tables[1].rows[0][1]


def test_candidates_that_use_a_trigger_get_the_scans(tmp_path):
    """The registry's `uses_trigger` decides which candidates get the scan's triggers (and the suspect
    label when the config has one); the others run with their defaults."""
    cfg = MendConfig()
    path = tmp_path / "t.safetensors"
    lancet = cfg.candidate_config("lancet-finetune", path, 3)
    assert (lancet.trigger, lancet.label) == (str(path), 3)
    assert cfg.candidate_config("neural-cleanse", path, 3).trigger == str(path)
    fst_cfg = cfg.candidate_config("fst", path, 3)
    assert fst_cfg == dataclasses.replace(type(fst_cfg)(), lr=cfg.fst_lr) and fst_cfg.lr != type(fst_cfg)().lr
    nad_cfg = cfg.candidate_config("nad", path, 3)
    assert (nad_cfg.lr, nad_cfg.teacher_init) == (cfg.nad_lr, cfg.nad_teacher)


def test_the_scan_runs_neural_cleanse_with_the_configs_settings():
    nc = NCConfig()
    default = MendConfig().scan_config()
    assert (default.batches_per_epoch, default.batch_size, default.focus) == (
        nc.batches_per_epoch,
        nc.batch_size,
        1,
    )
    short = MendConfig(scan_epochs=5, scan_batches=4, scan_batch_size=8, focus=2, focus_after=1).scan_config()
    assert (short.epochs, short.batches_per_epoch, short.batch_size, short.focus, short.focus_after) == (
        5,
        4,
        8,
        2,
        1,
    )
    with pytest.raises(MendnetError, match="batch_size"):
        MendConfig(scan_batch_size=0)


def test_the_python_api_mends_arrays_and_measures_the_test_set_only_afterwards():
    """`mendnet.mend` on a plain module and (images, labels) arrays: the record names the kept model and
    its test figures, the untouched model's and every candidate's (accuracy, a fraction)."""
    import mendnet

    torch.manual_seed(0)
    net = build_classifier(ModelSpec("small-cnn", 10, (1, 28, 28), (0.5,), (0.5,)))
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8, generator=gen)
    y = torch.arange(300) % 10
    cfg = MendConfig(candidates=("fst", "fineprune"), scan_epochs=2, scan_batches=2, scan_batch_size=8)
    kept, record = mendnet.mend(net, (x, y), config=cfg, test=(x[:100], y[:100]), progress=False)
    assert record["chosen"] in {ORIGINAL, "fst", "fineprune"}
    assert not kept.training and next(kept.parameters()).device.type == "cpu"
    test = record["test"]
    assert set(test["candidates"]) == {"fst", "fineprune"}
    assert all(0 <= v["acc"] <= 1 for v in [test["original"], test["kept"], *test["candidates"].values()])
    if record["chosen"] == ORIGINAL:
        assert test["kept"] == test["original"]
    else:
        assert test["kept"] == test["candidates"][record["chosen"]]
