"""`mendnet bench RECIPE --smoke`: every shipped recipe runs at a tiny size (so recipes cannot drift from
the code), into a folder of its own, and a second run computes nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mendnet.bench import load_recipe, smoke_recipe
from mendnet.bench.cells import cell_spec, enumerate_cells, smoke_rows
from mendnet.bench.smoke import CAPS, SMOKE_FOLDER, TEST_IMAGES, TRAIN_IMAGES, cap, smoke_mend
from mendnet.bench.work import load_sets
from mendnet.cli import main
from mendnet.mend.run import MendConfig

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.toml"))


def test_caps_bound_ints_by_name_only():
    assert cap("epochs", 20) == 1 and cap("teacher_epochs", 10) == 1 and cap("unlearn_epochs", 1) == 1
    assert cap("steps", 1000) == CAPS["steps"] and cap("steps", 1) == 1
    assert cap("lr", 0.1) == 0.1 and cap("batch_size", 128) == 128 and cap("epochs", None) is None
    assert cap("lr_drop_epoch", 2) == 2  # an epoch index, not a count


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_smoke_recipe_keeps_the_grid_and_shrinks_the_work(path):
    recipe = load_recipe(path)
    smoke = smoke_recipe(recipe)
    assert smoke.smoke and smoke.name != recipe.name and smoke.grid.seeds == recipe.grid.seeds[:1]
    rows = smoke_rows(smoke)
    kept = {*smoke.grid.repairs, *smoke.grid.robustifiers}
    first_seed = [
        c.id
        for c in enumerate_cells(recipe)
        if c.base.seed == recipe.grid.seeds[0]
        and (c.kind == "base" or c.base.attack in rows or c.kind == "robustify")
        and (c.kind not in ("repair", "robustify") or c.method in kept)
    ]
    cells = enumerate_cells(smoke)
    assert [c.id for c in cells] == first_seed
    # every attack's base and every registered method with each of its wirings (teacher column, trigger
    # source) still runs, as do detection, mend and retuning
    assert {c.base.attack for c in cells} == {c.base.attack for c in enumerate_cells(recipe)}
    columns = ("repair", "robustify")
    ran = {(c.kind, c.method) for c in cells if c.kind not in columns}
    assert ran == {(c.kind, c.method) for c in enumerate_cells(recipe) if c.kind not in columns}
    wiring = {n: (c.method, c.teacher, c.trigger) for n, c in recipe.columns.items()}
    everything = {*recipe.grid.repairs, *recipe.grid.robustifiers}
    assert {wiring[n] for n in kept} == {wiring[n] for n in everything}
    run = smoke.run
    assert run.train_subset <= TRAIN_IMAGES and run.test_images <= TEST_IMAGES and run.aa_images == 0
    assert run.threads == recipe.run.threads and run.split == recipe.run.split
    configs = [c.config for c in smoke.columns.values()]
    for config in (smoke.train, *configs, *smoke.bases.values(), smoke.detect, smoke.mend, smoke.retune):
        for field in dataclasses.fields(config):
            if field.name == "epochs" or field.name.endswith("_epochs"):
                assert getattr(config, field.name) <= 1, (config, field.name)
    assert all(cell_spec(smoke, c)["smoke"] for c in enumerate_cells(smoke))


@pytest.fixture(scope="session")
def bench_data():
    """Fashion-MNIST, loaded once into the bench engine's per-process cache."""
    return load_sets("fashion-mnist", None, None)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_runs_in_smoke_mode(path, bench_data, tmp_path, capsys):
    cells = len(enumerate_cells(smoke_recipe(load_recipe(path))))
    argv = ["bench", str(path), "--smoke", "--out", str(tmp_path / "real"), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    assert f"{cells} cells computed, 0 already finished, 0 left" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "real").iterdir()] == [SMOKE_FOLDER]  # apart from real results
    results = json.loads((tmp_path / "real" / SMOKE_FOLDER / "results.json").read_text())
    assert results["smoke"] and results["finished"] == results["cells"] == cells and not results["stale"]
    assert "not results" in (tmp_path / "real" / SMOKE_FOLDER / "tables.md").read_text()
    assert main(argv) == 0  # a second run of the finished recipe computes no cell
    assert f"0 cells computed, {cells} already finished" in capsys.readouterr().out


def test_smoke_runs_write_no_doc_section(tmp_path, capsys):
    doc = tmp_path / "benchmarks.md"
    argv = ["bench", str(RECIPES[0]), "--smoke", "--doc", str(doc), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("mendnet: error: --doc does not take a --smoke run")
    assert list(tmp_path.iterdir()) == []


def test_smoke_mend_caps_the_scan_and_the_candidates_it_builds(tmp_path):
    mend = smoke_recipe(load_recipe(RECIPES[0]))  # any recipe: mend's settings are the defaults
    config = dataclasses.replace(mend.mend, candidates=("nad", "fst"))
    assert (
        config.scan_config().epochs == 1
        and config.scan_config().batches_per_epoch == CAPS["batches_per_epoch"]
    )
    nad = config.candidate_config("nad", tmp_path / "trigger", 0)
    assert nad.epochs == 1 and nad.teacher_epochs == 1 and nad.lr == MendConfig().nad_lr
    assert smoke_mend(MendConfig()).candidates == MendConfig().candidates[:1]
