"""`mendnet bench` recipes for what benchmarks/ scripts did by hand: a reversed trigger taken from the detect
cell (AI-Lancet), Trojan and CL planted on the clean row's model, an extra model for a role (AGKD-BML's
natural teacher with label smoothing), the gradient-masking flags, and repairs that refuse to run."""

from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import replace

import pytest
import torch

from mendnet.bench import parse_recipe, run_bench, smoke_recipe
from mendnet.bench.cells import BaseKey, attacker_of, base_spec, cell_spec, enumerate_cells
from mendnet.bench.masking import MASKING_GAP, masking_table, report_metrics
from mendnet.bench.plan import plan_cells
from mendnet.bench.recipe import tomllib
from mendnet.bench.robust_cells import robustify
from mendnet.bench.store import BenchStore
from mendnet.bench.stored import output_digest
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.threats.backdoor import TRIGGERS, TriggerSetup, prepare_trigger

# AI-Lancet's neuron flip with the detect cell's reversed trigger, at sizes where Neural Cleanse's trigger
# (of the smallest-norm label: none is flagged) sends defender images to its label, so the flip runs.
LANCET = """
name = "lancet"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["badnets"]
repairs = ["lancet-flip"]
seeds = [0]
detect = true
[run]
train_subset = 1000
test_images = 100
clean_fraction = 0.005
[train]
epochs = 1
batch_size = 64
lr = 0.05
[poison]
rate = 0.2
[detect]
epochs = 2
batches_per_epoch = 4
[repair.lancet-flip]
trigger = "detect"
pairs = 8
"""
BASE = "fashion-mnist--small-cnn--badnets--s0"

# Trojan planted on the clean row's model (smoke sizes), and an extra clean model for the same role.
TROJAN = """
name = "trojan"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["trojan", "none"]
seeds = [0]
[run]
attacker_model = "clean"
"""

# AGKD-BML distilling a natural teacher trained with label smoothing (smoke sizes).
AGKD = """
name = "agkd"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
robustifiers = ["agkd-bml"]
seeds = [0]
[run]
natural_teacher = "smooth"
[base.smooth]
label_smoothing = 0.5
"""


def recipe_from(text: str):
    return parse_recipe(tomllib.loads(text))


@pytest.mark.parametrize(
    ("text", "change", "message"),
    [
        (LANCET, ('trigger = "detect"', 'trigger = "/tmp/t"'), r'trigger must be "detect"'),
        (LANCET, ("detect = true", "detect = false"), r'trigger = "detect" needs grid.detect = true'),
        (LANCET, ("pairs = 8", "pairs = 8\nlabel = 3"), "the detect cell chooses the label; drop label"),
        (
            LANCET.replace('["lancet-flip"]', '["lancet-flip", "fst"]'),
            ("pairs = 8", 'pairs = 8\n[repair.fst]\ntrigger = "detect"'),
            r"\[repair.fst\]: fst uses no reversed trigger; only neural-cleanse, lancet-flip",
        ),
        (TROJAN, ('"trojan", "none"', '"trojan"'), r'attacker_model = "clean" needs the clean row'),
        (TROJAN, ('"trojan", "none"', '"badnets", "none"'), "no attack of grid.attacks uses a clean model"),
        (TROJAN, ('"clean"', '"aug"'), r"run.attacker_model: unknown 'aug'"),
        (TROJAN, ("[run]", "[base.aug]\nflip = true\n[run]"), r"\[base.aug\] is used by no role"),
        (AGKD, ("label_smoothing", "smoothing"), r"base.smooth: unknown setting smoothing"),
        (AGKD, ('"smooth"', '"natural"\n[base.clean]\nflip = true'), r"\[base.clean\]: a model's name"),
        (AGKD, ('["agkd-bml"]', '["pgd-at"]'), "no robustifier of the grid distils a natural teacher"),
    ],
)
def test_step2_recipe_mistakes_are_one_line_errors(text, change, message):
    old, new = change
    assert old in text
    with pytest.raises(MendnetError, match=message) as info:
        recipe_from(text.replace(old, new))
    assert "\n" not in str(info.value)


def test_the_attacks_that_need_a_clean_model_are_those_whose_trigger_asks_for_one():
    images = torch.randint(
        0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    tiny = ImageSet(images, torch.arange(40) % 2, ("a", "b"), (0.5,), (0.5,))
    for name, entry in TRIGGERS.items():
        setup = TriggerSetup(tiny, target=0)  # no clean model to be had
        if entry.needs_model:
            with pytest.raises(MendnetError, match="needs a clean model"):
                prepare_trigger(name, None, setup)
        else:
            prepare_trigger(name, None, setup)


@pytest.fixture(scope="module")
def lancet_run(tmp_path_factory):
    recipe = recipe_from(LANCET)
    out = tmp_path_factory.mktemp("bench") / "lancet"
    return recipe, out, run_bench(recipe, out, progress=False)


def test_a_lancet_column_repairs_with_the_detect_cells_trigger(lancet_run):
    recipe, out, summary = lancet_run
    records = {r["id"]: r for r in summary.records}
    detect, flip = records[f"{BASE}--detect"], records[f"{BASE}--lancet-flip"]
    cells = {c.id: c for c in enumerate_cells(recipe)}
    assert cell_spec(recipe, cells[flip["id"]])["trigger"] == detect["spec"]  # part of its identity
    flagged = detect["info"]["flagged"]
    chosen = flagged[0] if flagged else detect["info"]["smallest_norm_label"]
    trigger = BenchStore(out).cell_output_files(recipe, cells[detect["id"]])
    assert flip["trigger"] == {
        "cell": detect["id"],
        "digest": output_digest(trigger),
        "label": chosen,
        "flagged": bool(flagged),
    }
    assert flip["info"]["target"] == chosen and flip["info"]["trigger"] == f"reversed by {detect['id']}"
    assert "reverse_seconds" not in flip["info"]  # it reversed no trigger of its own
    assert flip["metrics"]["weights_changed"] == flip["info"]["weights_changed"] > 0
    assert flip["metrics"]["changed_share"] == flip["info"]["fraction_of_layer"]
    assert "changed_indices" not in flip["info"]
    tables = (out / "tables.md").read_text()
    assert "**Reversed trigger taken from the detect cell**" in tables and f"seed 0: label {chosen}" in tables
    assert "**weights changed (share of the chosen layer's) %**" in tables and "**Weights changed**" in tables


def test_a_changed_or_recomputed_detect_cell_makes_its_takers_stale(lancet_run, tmp_path):
    recipe, out, _ = lancet_run
    shutil.copytree(out, tmp_path / "copy")
    store = BenchStore(tmp_path / "copy")
    cells = {c.id: c for c in enumerate_cells(recipe)}
    flip, detect = f"{BASE}--lancet-flip", f"{BASE}--detect"

    def todo(recipe) -> list[str]:
        return [c.id for c in plan_cells(recipe, store, enumerate_cells(recipe), keep_stale=False).todo]

    assert todo(recipe) == []
    assert todo(replace(recipe, detect=replace(recipe.detect, epochs=3))) == [detect, flip]
    record = store.record(recipe, cells[flip])
    store.write_record(cells[flip], {**record, "trigger": {**record["trigger"], "digest": "another"}})
    assert todo(recipe) == [flip]  # it took another reversed trigger than the stored one
    shutil.rmtree(store.cell_model_path(cells[detect]))
    assert todo(recipe) == [detect, flip]  # the trigger is computed again, and so is its taker


def test_a_repair_that_refuses_is_recorded_and_not_retried(tmp_path):
    recipe = smoke_recipe(recipe_from(LANCET))  # at smoke sizes the reversed trigger sends no image
    first = run_bench(recipe, tmp_path, progress=False)
    flip = next(r for r in first.records if r["method"] == "lancet-flip")
    assert flip["metrics"] == {} and "no erroneous samples found" in flip["info"]["refused"]
    assert flip["trigger"]["cell"] == f"{BASE}--detect"
    assert "**Refused**" in (tmp_path / "tables.md").read_text()
    assert run_bench(recipe, tmp_path, progress=False).computed == []


def test_a_cell_whose_source_refused_is_recorded_as_refused(tmp_path):
    text = LANCET.replace('repairs = ["lancet-flip"]', 'repairs = ["lancet-flip"]\nretune = ["lancet-flip"]')
    recipe = smoke_recipe(recipe_from(text))
    first = run_bench(recipe, tmp_path, progress=False)
    flip = next(r for r in first.records if r["kind"] == "repair")
    retune = next(r for r in first.records if r["kind"] == "retune")
    assert flip["method"] == retune["method"] == "lancet-flip"
    assert "no erroneous samples found" in flip["info"]["refused"]
    assert retune["metrics"] == {} and retune["source"] is None
    assert retune["info"]["refused"] == f"its source cell {BASE}--lancet-flip refused to run"
    assert run_bench(recipe, tmp_path, progress=False).computed == []


def test_trojan_is_planted_on_the_clean_rows_model(tmp_path):
    recipe = smoke_recipe(recipe_from(TROJAN))
    run_bench(recipe, tmp_path, progress=False)
    trojan, clean = (BaseKey("fashion-mnist", "small-cnn", a, 0) for a in ("trojan", "none"))
    assert attacker_of(recipe, trojan) == clean
    assert base_spec(recipe, trojan)["attacker"] == base_spec(recipe, clean)
    store = BenchStore(tmp_path)
    meta = json.loads((store.base_path(trojan) / "model.json").read_text())
    assert meta["bench_attacker"] == {
        "base": clean.id,
        "weights": output_digest(store.base_files(recipe, clean)),
    }
    assert meta["threat"]["info"]["clean_model"] == "given by the caller"  # no surrogate trained
    surrogate = replace(recipe, run=replace(recipe.run, attacker_model="surrogate"))
    assert "attacker" not in base_spec(surrogate, trojan)
    todo = [c.id for c in plan_cells(surrogate, store, enumerate_cells(surrogate), False).todo]
    assert todo == [f"{trojan.id}--none"]  # the clean row is unchanged


def test_an_extra_clean_model_is_the_attackers_and_its_settings_are_the_trojan_bases_identity():
    recipe = recipe_from(TROJAN.replace('"clean"', '"aug"') + "[base.aug]\nflip = true\n")
    trojan = BaseKey("fashion-mnist", "small-cnn", "trojan", 0)
    attacker = attacker_of(recipe, trojan)
    assert attacker == BaseKey("fashion-mnist", "small-cnn", "none", 0, train="aug")
    assert attacker.id == "fashion-mnist--small-cnn--none-aug--s0"
    assert base_spec(recipe, trojan)["attacker"]["train"]["flip"] is True
    assert base_spec(recipe, BaseKey("fashion-mnist", "small-cnn", "none", 0))["train"]["flip"] is False
    flipped = replace(recipe, bases={"aug": replace(recipe.bases["aug"], lr=0.01)})
    assert base_spec(flipped, trojan) != base_spec(recipe, trojan)


def test_agkd_distils_a_natural_teacher_trained_with_its_own_settings(tmp_path):
    recipe = smoke_recipe(recipe_from(AGKD))
    summary = run_bench(recipe, tmp_path, progress=False)
    agkd = next(c for c in enumerate_cells(recipe) if c.method == "agkd-bml")
    assert agkd.teacher == BaseKey("fashion-mnist", "small-cnn", None, 0, train="smooth")
    assert cell_spec(recipe, agkd)["teacher"]["train"]["label_smoothing"] == 0.5
    models = tmp_path / "models"
    smooth = json.loads((models / agkd.teacher.id / "model.json").read_text())
    natural = json.loads((models / "fashion-mnist--small-cnn--natural--s0" / "model.json").read_text())
    assert smooth["training"]["label_smoothing"] == 0.5 and natural["training"]["label_smoothing"] == 0.0
    record = next(r for r in summary.records if r["method"] == "agkd-bml")
    assert record["info"]["teacher"]["base"] == agkd.teacher.id
    # the student's seconds alone: the teacher's are kept beside them, not added
    assert record["metrics"]["train_seconds"] == record["info"]["train_seconds"]
    teacher_metrics = json.loads((models / agkd.teacher.id / "metrics.json").read_text())
    assert record["info"]["teacher"]["train_seconds"] == teacher_metrics["train_seconds"]
    assert (
        "masking_gap" in record["metrics"]
        and "**Gradient-masking flags**" in (tmp_path / "tables.md").read_text()
    )


def test_the_masking_flags_follow_the_robustness_report():
    report = {"acc": 0.9, "pgd-linf-20": 0.5, "worst_case": 0.3, "autoattack": 0.35, "aa_gap_flag": True}
    report["aa"] = {"images": 10, "version": "standard", "seconds": 2.0, "pgd_gap": 0.15}
    metrics, info = report_metrics(report)
    assert metrics["masking_gap"] == pytest.approx(0.2) and metrics["masking_gap"] > MASKING_GAP
    assert metrics["aa_gap"] == 0.15 and metrics["aa_gap_flag"] == 1.0 and metrics["aa_seconds"] == 2.0
    assert "aa" not in metrics and info["aa"]["images"] == 10
    recipe = recipe_from(AGKD)
    records = [
        {"id": f"x{s}", "data": "d", "model": "m", "attack": "natural", "method": "agkd-bml", "seed": s}
        | {"metrics": {**metrics, "aa_gap_flag": float(s == 0)}}
        for s in (0, 1)
    ]
    text = masking_table(recipe, records)
    assert "suspected gradient masking (PGD-20 − worst case 20.0 points)" in text
    assert "AutoAttack gap flagged on 1 of 2 seeds" in text


def test_the_robust_teachers_training_shows_its_progress(monkeypatch):
    """A robust teacher base (PGD-AT on the source half: about 16 minutes on the 2-core CPU) is trained
    with the run's progress output, as every other base is."""
    import mendnet.bench.work as work

    grid = 'data = ["fashion-mnist"]\nmodels = ["small-cnn"]\nrobustifiers = ["robust-kd"]\nseeds = [0]\n'
    recipe = recipe_from('name = "kd"\n[grid]\n' + grid)
    teacher = next(c.teacher for c in enumerate_cells(recipe) if c.method == "robust-kd")
    assert teacher.teacher == "pgd-at"
    said = {}

    def stop(*args, **kwargs):
        bound = inspect.signature(robustify).bind(*args, **kwargs)
        said["progress"] = bound.arguments.get("progress", False)
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(work, "load_sets", lambda *args: (None, None))
    monkeypatch.setattr(work, "robustify", stop)
    with pytest.raises(RuntimeError, match="stopped before training"):
        work.train_base(recipe, teacher, progress=True)
    assert said["progress"] is True
