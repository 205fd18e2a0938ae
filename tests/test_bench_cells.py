"""`mendnet bench` recipes beyond methods × attacks: variants of a method's settings, a teacher taken from
another column's cell, clean rows, and the detect, mend and retune cells (parsing, a small real run at the
smoke sizes, and which cells a changed teacher makes stale)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from mendnet.bench import parse_recipe, run_bench, smoke_recipe
from mendnet.bench.cells import cell_spec, enumerate_cells
from mendnet.bench.plan import plan_cells
from mendnet.bench.recipe import tomllib
from mendnet.bench.store import BenchStore
from mendnet.bench.stored import output_digest
from mendnet.errors import MendnetError

# Two rows (BadNets and a clean model), FT and a NAD variant whose attention teacher is FT's model, Neural
# Cleanse, mend (FT as its only candidate) and the retuning attack on the NAD variant; run at the smoke
# sizes.
RECIPE = """
name = "features"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["badnets", "none"]
repairs = ["finetune", "nad-ft"]
seeds = [0]
detect = true
mend = true
retune = ["nad-ft"]
[train]
lr = 0.05
[poison]
rate = 0.2
[variant.nad-ft]
method = "nad"
teacher = "finetune"
lr = 0.02
betas = [500, 1000]
[detect]
threshold = 2.0
[mend]
candidates = ["finetune"]
"""
BASES = ("fashion-mnist--small-cnn--badnets--s0", "fashion-mnist--small-cnn--none--s0")


def recipe_from(text: str):
    return parse_recipe(tomllib.loads(text))


def test_a_variant_is_a_column_of_its_own():
    recipe = recipe_from(RECIPE)
    variant = recipe.columns["nad-ft"]
    assert variant.method == "nad" and variant.teacher == "finetune"
    assert variant.config.lr == 0.02 and variant.config.betas == (500.0, 1000.0)
    assert recipe.columns["finetune"].teacher is None
    nad = next(c for c in enumerate_cells(recipe) if c.method == "nad-ft")
    spec = cell_spec(recipe, nad)
    assert spec["method"] == "nad-ft" and spec["registered"] == "nad" and spec["config"]["lr"] == 0.02
    assert spec["source"]["method"] == "finetune"  # the teacher's settings are part of the cell's identity


def test_cells_come_after_the_cells_whose_model_they_take():
    recipe = recipe_from(
        RECIPE.replace('repairs = ["finetune", "nad-ft"]', 'repairs = ["nad-ft", "finetune"]')
    )
    cells = enumerate_cells(recipe)
    assert [c.id for c in cells] == [
        f"{BASES[0]}--none",
        f"{BASES[0]}--detect",
        f"{BASES[0]}--finetune",
        f"{BASES[0]}--nad-ft",
        f"{BASES[0]}--mend",
        f"{BASES[0]}--retune--nad-ft",
        f"{BASES[1]}--none",  # the clean row: no retuning (no trigger)
        f"{BASES[1]}--detect",
        f"{BASES[1]}--finetune",
        f"{BASES[1]}--nad-ft",
        f"{BASES[1]}--mend",
    ]
    by_id = {c.id: c for c in cells}
    assert by_id[f"{BASES[0]}--nad-ft"].source == by_id[f"{BASES[0]}--finetune"]
    assert by_id[f"{BASES[0]}--retune--nad-ft"].source == by_id[f"{BASES[0]}--nad-ft"]
    assert by_id[f"{BASES[0]}--retune--nad-ft"].key()["method"] == "nad-ft"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('method = "nad"', 'method = "nap"'), r"\[variant.nad-ft\]: unknown method 'nap'"),
        (('method = "nad"', ""), r"\[variant.nad-ft\]: unknown method None"),
        (("[variant.nad-ft]", "[variant.nad]"), "'nad' is already a method or column name"),
        (("[variant.nad-ft]", "[variant.nad--ft]"), "a variant's name is letters and digits"),
        (('teacher = "finetune"', 'teacher = "fst"'), r"teacher 'fst' is not a column of grid.repairs"),
        (('teacher = "finetune"', 'teacher = "nad-ft"'), "a column cannot be its own teacher"),
        (
            ("[mend]", '[repair.finetune]\nteacher = "nad-ft"\n[mend]'),
            "finetune takes no teacher from a column",
        ),
        (('retune = ["nad-ft"]', 'retune = ["fst"]'), r"grid.retune: 'fst' is not a repair column"),
        (('"badnets", "none"]', '"none"]'), "grid.retune needs a backdoor attack"),
        (("rate = 0.2", 'rate = 0.2\nmode = "all-to-all"'), 'grid.retune needs poison.mode = "all-to-one"'),
        (
            ("[mend]", '[variant.fst-long]\nmethod = "fst"\n[mend]'),
            r"\[variant.fst-long\]: 'fst-long' is not in grid.rep",
        ),
        (("detect = true", "detect = false"), r"\[detect\] sets detect cells, but grid.detect"),
        (("detect = true", "detect = 1"), "grid.detect must be true or false"),
        (('candidates = ["finetune"]', 'candidates = ["fine"]'), "mend: unknown candidate fine"),
        (("[poison]", "[attack.none]\nx = 1\n[poison]"), r"\[attack.none\]: the clean row has no trigger"),
    ],
)
def test_recipe_feature_mistakes_are_one_line_errors(change, message):
    old, new = change
    assert old in RECIPE
    with pytest.raises(MendnetError, match=message) as info:
        recipe_from(RECIPE.replace(old, new))
    assert "\n" not in str(info.value)


def test_a_robustifier_with_a_required_teacher_takes_no_teacher_column():
    text = (
        'name = "r"\n[grid]\ndata = ["fashion-mnist"]\nmodels = ["small-cnn"]\nrobustifiers = ["agkd-bml"]\n'
        'seeds = [0]\n[robustify.agkd-bml]\nteacher = "natural"\n'
    )
    with pytest.raises(
        MendnetError, match=r"\[robustify.agkd-bml\]: agkd-bml takes no teacher from a column"
    ):
        recipe_from(text)


@pytest.fixture(scope="module")
def feature_runs(tmp_path_factory):
    """The grid at the smoke sizes, run locally (and run again, which computes nothing)."""
    recipe = smoke_recipe(recipe_from(RECIPE))
    out = tmp_path_factory.mktemp("bench") / "features"
    first = run_bench(recipe, out, progress=False)
    again = run_bench(recipe, out, progress=False)
    return recipe, out, first, again


@pytest.mark.slow
def test_every_new_kind_of_cell_has_its_metrics(feature_runs):
    recipe, out, first, again = feature_runs
    cells = enumerate_cells(recipe)
    assert first.computed == [c.id for c in cells] and again.computed == [] and len(again.skipped) == 11
    records = {r["id"]: r for r in first.records}

    def backdoored(method: str) -> dict:
        return records[f"{BASES[0]}--{method}"]

    def clean(method: str) -> dict:
        return records[f"{BASES[1]}--{method}"]

    assert backdoored("nad-ft")["method"] == "nad-ft" and backdoored("nad-ft")["spec"]["registered"] == "nad"
    ft_model = BenchStore(out).cell_output_files(
        recipe, next(c for c in cells if c.id == f"{BASES[0]}--finetune")
    )
    assert backdoored("nad-ft")["source"] == {
        "cell": f"{BASES[0]}--finetune",
        "weights": output_digest(ft_model),
    }
    assert backdoored("nad-ft")["info"]["teacher"] == "given"  # NAD distilled the FT cell's model
    for method in ("none", "finetune", "nad-ft", "mend"):
        assert "acc" in clean(method)["metrics"] and "asr" not in clean(method)["metrics"], method
        assert {"acc", "asr"} <= set(backdoored(method)["metrics"]), method
    detect = backdoored("detect")
    wanted = {"flagged", "smallest_norm_label", "max_below_median_index", "target_flagged", "seconds"}
    assert wanted <= set(detect["metrics"])
    assert isinstance(detect["info"]["flagged"], list) and detect["info"]["target"] == 0
    assert "target_flagged" not in clean("detect")["metrics"]  # a clean model has no target
    assert backdoored("mend")["info"]["chosen"] in ("original", "finetune")
    assert set(backdoored("mend")["info"]["seconds"]) == {"scan", "finetune", "scoring", "total"}
    retune = records[f"{BASES[0]}--retune--nad-ft"]
    assert retune["method"] == "nad-ft" and {"retune_acc", "retune_asr", "retune_seconds"} <= set(
        retune["metrics"]
    )
    assert retune["source"]["cell"] == f"{BASES[0]}--nad-ft"
    tables = (out / "tables.md").read_text()
    for text in (
        "| attack | none | finetune | nad-ft | mend |",
        "none (clean model)",
        "**ASR after retuning %**",
    ):
        assert text in tables
    assert "**mend's choice**" in tables and "**Neural Cleanse detection**" in tables
    scans = tables.split("**mend's scan against the full reversal**")[1].split("**")[0]
    assert "| badnets | 0 | [" in scans and "| none (clean model) | 0 | [" in scans
    assert set(backdoored("mend")["info"]["scan"]) == {
        "norms",
        "anomaly_index",
        "epochs",
        "stopped_by_focus",
        "focus_norms",
        "focus_anomaly_index",
    }
    scores = backdoored("mend")["info"]["scores"]  # every candidate's, for comparing rules offline
    assert {s["name"] for s in scores} == {"original", "finetune"} and all("proxy" in s for s in scores)
    measured = backdoored("mend")["info"]["candidates_measured"]  # what each candidate would have given
    assert set(measured) == {"finetune"} and {"acc", "asr"} <= set(measured["finetune"])
    asr_table = tables.split("**ASR %**")[1].split("**")[0]
    assert "clean model" not in asr_table  # no ASR on a clean model, not a row of dashes
    csv = (out / "results.csv").read_text()
    assert "fashion-mnist,small-cnn,badnets,nad-ft,0,retune_asr," in csv


@pytest.mark.slow
def test_editing_the_teacher_makes_the_cells_that_took_its_model_stale(feature_runs):
    recipe, out, _, _ = feature_runs
    store = BenchStore(out)
    ft = recipe.columns["finetune"]
    changed = replace(
        recipe, columns={**recipe.columns, "finetune": replace(ft, config=replace(ft.config, lr=0.02))}
    )
    stale = [c.id for c in plan_cells(changed, store, enumerate_cells(changed), keep_stale=False).todo]
    assert stale == [
        f"{BASES[0]}--finetune",
        f"{BASES[0]}--nad-ft",
        f"{BASES[0]}--retune--nad-ft",
        f"{BASES[1]}--finetune",
        f"{BASES[1]}--nad-ft",
    ]


@pytest.mark.slow
def test_a_recomputed_teacher_makes_its_takers_stale(feature_runs, tmp_path):
    recipe, out, _, _ = feature_runs
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    ft = f"{BASES[0]}--finetune"
    shutil.rmtree(copy / "cell-models" / ft)  # its model is gone: the cell is computed again
    summary = run_bench(recipe, copy, progress=False)
    assert summary.computed == [ft, f"{BASES[0]}--nad-ft", f"{BASES[0]}--retune--nad-ft"]
    record = json.loads((copy / "cells" / f"{BASES[0]}--nad-ft.json").read_text())
    assert record["source"]["weights"] == BenchStore(copy).digest(
        recipe, next(c for c in enumerate_cells(recipe) if c.id == ft)
    )


def test_a_robustifier_variant_is_a_column_and_can_be_the_robust_teacher():
    text = (
        'name = "r"\n[grid]\ndata = ["fashion-mnist"]\nmodels = ["small-cnn"]\n'
        'robustifiers = ["shafahi", "pgd-short"]\nseeds = [0]\n[run]\nrobust_teacher = "pgd-short"\n'
        '[variant.pgd-short]\nmethod = "pgd-at"\nepochs = 1\n'
    )
    recipe = recipe_from(text)
    assert recipe.columns["pgd-short"].method == "pgd-at" and recipe.columns["pgd-short"].config.epochs == 1
    shafahi = next(c for c in enumerate_cells(recipe) if c.method == "shafahi")
    assert shafahi.teacher.teacher == "pgd-short"
    assert cell_spec(recipe, shafahi)["teacher"]["teacher"] == {
        "method": "pgd-at",
        "config": cell_spec(recipe, next(c for c in enumerate_cells(recipe) if c.method == "pgd-short"))[
            "config"
        ],
    }
