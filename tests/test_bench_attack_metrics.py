"""`mendnet bench` base cells report what the attack zoo's table shows beside ACC, ASR and RA: the clean
row's model's ASR under each attack's trigger, the target-class ACC and the number of poisoned training
images; a backdoored base depends on the clean row's base for the first."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from mendnet.artefact import load_artefact
from mendnet.bench import parse_recipe, run_bench
from mendnet.bench.cells import BaseKey, base_spec, clean_row_of, enumerate_cells, given_bases
from mendnet.bench.engines import needed_bases
from mendnet.bench.plan import plan_cells
from mendnet.bench.recipe import tomllib
from mendnet.bench.store import BenchStore
from mendnet.bench.stored import output_digest
from mendnet.bench.work import CLEAN_ROW_KEY, cell_environment, load_sets
from mendnet.evaluate import accuracy, backdoor_metrics
from mendnet.threats.backdoor.spec import backdoor_test_for, threat_of

pytestmark = pytest.mark.slow  # trains small models on Fashion-MNIST

# A backdoored row before the clean row (so the clean base is trained on demand, first), at sizes where
# the models are not constant (about 4 s each on one thread).
RECIPE = """
name = "attack-metrics"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["badnets", "none"]
seeds = [0]
[run]
train_subset = 1000
test_images = 200
[train]
epochs = 2
batch_size = 64
lr = 0.05
[poison]
target = 2
rate = 0.1
"""
BADNETS = BaseKey("fashion-mnist", "small-cnn", "badnets", 0)
CLEAN = BaseKey("fashion-mnist", "small-cnn", "none", 0)


def recipe_from(text: str):
    return parse_recipe(tomllib.loads(text))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    recipe = recipe_from(RECIPE)
    out = tmp_path_factory.mktemp("bench") / "metrics"
    summary = run_bench(recipe, out, progress=False)
    return recipe, out, {r["id"]: r for r in summary.records}


def test_a_backdoored_base_depends_on_the_clean_rows_base():
    recipe = recipe_from(RECIPE)
    assert clean_row_of(recipe, BADNETS) == CLEAN and clean_row_of(recipe, CLEAN) is None
    assert given_bases(recipe, BADNETS) == [CLEAN]  # BadNets needs no attacker model
    assert base_spec(recipe, BADNETS)["clean_row"] == base_spec(recipe, CLEAN)
    assert base_spec(recipe, CLEAN)["target"] == 2  # the clean row's target-class ACC is on it
    assert needed_bases(recipe, enumerate_cells(recipe)) == [CLEAN, BADNETS]  # the clean base first


def test_base_cells_report_the_clean_asr_the_target_class_acc_and_the_poisoned_count(run):
    recipe, out, records = run
    store = BenchStore(out)
    backdoored = records[f"{BADNETS.id}--none"]["metrics"]
    clean = records[f"{CLEAN.id}--none"]["metrics"]
    art = load_artefact(store.base_path(BADNETS))
    clean_art = load_artefact(store.base_path(CLEAN))
    train, test = load_sets("fashion-mnist", None, recipe.run.test_images)
    assert backdoored["poisoned"] == art.meta["threat"]["poisoned_count"] == 100  # 10% of 1,000
    trigger = backdoor_test_for(threat_of(art.meta), test, train)
    target_test = test.subset(torch.nonzero(test.labels == 2).flatten())
    with cell_environment(recipe.run.threads, 0):  # the cells' thread count: the same float sums
        assert backdoored["clean_asr"] == backdoor_metrics(clean_art.model, test, trigger)["asr"]
        assert backdoored["target_acc"] == accuracy(art.model, target_test)
        assert clean["target_acc"] == accuracy(clean_art.model, target_test)
    digest = output_digest(store.base_files(recipe, CLEAN))
    assert art.meta[CLEAN_ROW_KEY] == {"base": CLEAN.id, "weights": digest}  # the model it was measured on
    assert backdoored["clean_asr"] < backdoored["asr"]  # the floor, measured on another model
    assert "poisoned" not in clean and "clean_asr" not in clean  # the clean row has no trigger
    tables = (out / "tables.md").read_text()
    for title in ("**clean model's ASR %**", "**target-class ACC %**", "**poisoned training images**"):
        assert title in tables
    assert "| none (clean model) |" in tables.split("**target-class ACC %**")[1].split("**")[0]


def test_a_changed_target_recomputes_the_clean_row_too(run):
    recipe, out, _ = run
    moved = replace(recipe, poison=replace(recipe.poison, target=3))
    todo = plan_cells(moved, BenchStore(out), enumerate_cells(moved), keep_stale=False).todo
    assert [c.base for c in todo] == [BADNETS, CLEAN]


def test_without_a_clean_row_there_is_no_clean_asr(tmp_path):
    text = RECIPE.replace('attacks = ["badnets", "none"]', 'attacks = ["badnets"]')
    recipe = recipe_from(text.replace("epochs = 2", "epochs = 1"))
    assert clean_row_of(recipe, BADNETS) is None and "clean_row" not in base_spec(recipe, BADNETS)
    (record,) = run_bench(recipe, tmp_path, progress=False).records
    assert {"acc", "asr", "target_acc", "poisoned"} <= set(record["metrics"])
    assert "clean_asr" not in record["metrics"]
    assert CLEAN_ROW_KEY not in json.loads((tmp_path / "models" / BADNETS.id / "model.json").read_text())
