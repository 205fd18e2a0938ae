"""`mendnet bench` selection runs: `run.evaluate_on = "validation"` (models trained without the carved
validation images, every figure measured on them, the test set never loaded) and `[select.NAME]` rules with
their table (recipes/tune_*.toml)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mendnet.artefact import load_artefact
from mendnet.bench import load_recipe, parse_recipe, run_bench, work
from mendnet.bench.cells import cell_spec, enumerate_cells
from mendnet.bench.recipe import tomllib
from mendnet.bench.run_settings import TEST
from mendnet.bench.selection import Rule, choose
from mendnet.bench.selection_table import selection_tables
from mendnet.bench.store import BenchStore
from mendnet.data.imageset import ImageSet
from mendnet.data.tuning import VALIDATION_IMAGES, carve_validation
from mendnet.errors import MendnetError
from mendnet.evaluate import accuracy

TUNING = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("tune_*.toml"))

# A tiny selection run on a synthetic stand-in for Fashion-MNIST (the fixture below): a small CNN on 200
# images of the training set less the carved validation images, figures on the first 40 of those.
RECIPE = """
name = "tiny-select"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["badnets"]
repairs = ["ft-a", "ft-b"]
seeds = [100]
[run]
evaluate_on = "validation"
train_subset = 200
test_images = 40
clean_fraction = 0.05
[train]
epochs = 1
batch_size = 64
[poison]
rate = 0.2
[variant.ft-a]
method = "finetune"
epochs = 1
[variant.ft-b]
method = "finetune"
epochs = 1
lr = 0.02
[select.ft-lr]
candidates = ["ft-a", "ft-b"]
default = "ft-a"
metric = "acc"
prefer = "higher"
margin = 0.005
asr_bound = 1.0
"""


def recipe_from(text: str):
    return parse_recipe(tomllib.loads(text))


@pytest.fixture
def no_test_set(monkeypatch):
    """A random 5,600-image training set (5,000 to carve) in place of every data set's files, and a test
    set whose loading fails the test."""
    gen = torch.Generator().manual_seed(0)
    train = ImageSet(
        torch.randint(0, 256, (VALIDATION_IMAGES + 600, 1, 28, 28), dtype=torch.uint8, generator=gen),
        torch.randint(0, 10, (VALIDATION_IMAGES + 600,), generator=gen),
        tuple(map(str, range(10))),
        (0.5,),
        (0.25,),
        "fashion-mnist",
    )

    def load(name, split="train", *args, **kwargs):
        assert split != "test", "the test set was loaded"
        return train

    monkeypatch.setattr("mendnet.data.ref.load_dataset", load)
    monkeypatch.setattr(work, "_SPLITS", {})
    return train


def test_validation_sets_are_the_carved_split(no_test_set):
    rest, validation = carve_validation(no_test_set)
    train, evaluation = work.load_sets("fashion-mnist", None, 40, "validation")
    assert torch.equal(train.images, rest.images) and len(train) == len(no_test_set) - VALIDATION_IMAGES
    assert torch.equal(evaluation.images, validation.images[:40])
    assert torch.equal(evaluation.labels, validation.labels[:40])


def test_a_selection_run_never_loads_the_test_set(no_test_set, tmp_path):
    recipe = recipe_from(RECIPE)
    summary = run_bench(recipe, tmp_path, progress=False)
    assert len(summary.computed) == 3
    base = next(r for r in summary.records if r["method"] == "none")
    model = load_artefact(BenchStore(tmp_path).base_path(enumerate_cells(recipe)[0].base)).model
    validation = carve_validation(no_test_set)[1]
    assert base["metrics"]["acc"] == accuracy(model, validation.subset(torch.arange(40)))
    tables = (tmp_path / "tables.md").read_text()
    assert "figures measured on the first 40 of the 5,000 validation images" in tables
    assert "the test set was never loaded" in tables
    assert "**Selection `ft-lr`**" in tables and "Chosen by the rule: **ft-" in tables
    assert json.loads((tmp_path / "results.json").read_text())["finished"] == 3


def test_the_validation_split_is_part_of_every_cells_identity():
    recipe = recipe_from(RECIPE)
    on_test = replace(recipe, run=replace(recipe.run, evaluate_on=TEST), select={})
    for cell, other in zip(enumerate_cells(recipe), enumerate_cells(on_test), strict=True):
        spec, test_spec = cell_spec(recipe, cell), cell_spec(on_test, other)
        assert spec["evaluate_on"] == {"split": "validation", "images": 5000, "carving_seed": 100}
        assert "evaluate_on" not in test_spec  # test-set cells keep the identity they had
        assert {k: v for k, v in spec.items() if k != "evaluate_on"} == test_spec


NAD_SEEDS = Rule(
    candidates=("paper", "lr0.045", "lr0.03", "lr0.02"),
    default="paper",
    metric="acc",
    prefer="higher",
    margin=0.005,
    asr_bound=0.05,
)
SEEDS = (100, 101, 102)


def figures(*per_seed: tuple[float, float]) -> dict[int, dict[str, float]]:
    """Seed → {"acc", "asr"} from (ACC, ASR) pairs in percent, one per seed of SEEDS."""
    return {s: {"acc": a / 100, "asr": r / 100} for s, (a, r) in zip(SEEDS, per_seed, strict=True)}


# the former benchmarks/tune_defaults.py's run, part nad-seeds (val ACC / ASR % at seeds 100, 101, 102;
# its docs section is in git history)
NAD_FIGURES = {
    "paper": figures((78.68, 3.19), (82.26, 4.41), (82.28, 3.28)),
    "lr0.045": figures((88.74, 1.77), (89.52, 2.88), (89.94, 2.61)),
    "lr0.03": figures((89.70, 1.88), (89.76, 8.31), (90.50, 2.88)),
    "lr0.02": figures((90.20, 3.17), (90.12, 13.31), (90.66, 3.54)),
}


def test_the_rule_bounds_asr_at_every_seed_or_on_the_mean():
    assert choose(NAD_SEEDS, NAD_FIGURES, SEEDS).chosen == "lr0.045"
    assert NAD_SEEDS.shortfall(NAD_FIGURES["lr0.03"], SEEDS) == "ASR above 5% at seed 101"
    on_mean = replace(NAD_SEEDS, bound_at="mean")  # lr0.03's mean ASR is 4.36%, lr0.02's 6.68%
    assert choose(on_mean, NAD_FIGURES, SEEDS).chosen == "lr0.03"
    assert choose(NAD_SEEDS, NAD_FIGURES, SEEDS[:1]).chosen == "lr0.02"  # seed 100 alone


def test_the_default_stays_unless_beaten_by_more_than_the_margin():
    close = {"paper": figures((90, 1), (90, 1), (90, 1)), "lr0.045": figures((90.4, 1), (90.4, 1), (90.4, 1))}
    rule = replace(NAD_SEEDS, candidates=("paper", "lr0.045"))
    assert choose(rule, close, SEEDS).chosen == "paper"
    assert choose(replace(rule, margin=0.003), close, SEEDS).chosen == "lr0.045"
    failing = {**close, "paper": figures((95, 9), (95, 1), (95, 1))}  # the default does not qualify
    assert choose(rule, failing, SEEDS).chosen == "lr0.045"
    tie = {"paper": close["lr0.045"], "lr0.045": close["lr0.045"]}
    assert choose(replace(rule, default="lr0.045", margin=0.0), tie, SEEDS).chosen == "lr0.045"
    assert choose(replace(rule, margin=0.0), tie, SEEDS).chosen == "paper"


def test_lower_is_better_and_nothing_is_chosen_without_a_qualifier_or_every_record():
    nc = Rule(("nc1", "nc2"), "nc1", "asr", "lower", 0.01)  # part nc-unlearn: 48.27% against 1.79%
    one = {"nc1": {100: {"acc": 0.877, "asr": 0.4827}}, "nc2": {100: {"acc": 0.8958, "asr": 0.0179}}}
    assert choose(nc, one, (100,)).chosen == "nc2"
    assert choose(nc, {**one, "nc2": {100: {"acc": 0.9, "asr": 0.4757}}}, (100,)).chosen == "nc1"
    bounded = replace(nc, asr_bound=0.01)
    assert choose(bounded, one, (100,)).text() == "none (no candidate qualifies)"
    unfinished = choose(NAD_SEEDS, {**NAD_FIGURES, "lr0.02": {100: NAD_FIGURES["lr0.02"][100]}}, SEEDS)
    assert unfinished.chosen is None and "lr0.02 not finished" in unfinished.text()
    refused = {**one, "nc2": {100: {}}}  # a refused repair: a record without metrics
    assert choose(nc, refused, (100,)).chosen == "nc1"
    assert nc.shortfall(refused["nc2"], (100,)) == "no ASR at seed 100"


def test_the_rule_in_words():
    assert NAD_SEEDS.text(SEEDS) == (
        "among the candidates whose validation ASR is at most 5% at every seed (100, 101, 102), the highest "
        "validation ACC (mean over seeds 100, 101, 102); `paper` is kept when it qualifies unless another "
        "candidate's is higher by more than 0.5 points"
    )
    assert Rule(("a", "b"), "a", "asr", "lower", 0.01).text((100,)) == (
        "the lowest validation ASR (seed 100); `a` is kept unless another candidate's is lower by more "
        "than 1 point"
    )


def test_the_selection_table_lists_every_candidate_and_marks_the_choice():
    recipe = recipe_from(RECIPE.replace("seeds = [100]", "seeds = [100, 101, 102]"))
    rule = replace(NAD_SEEDS, candidates=("ft-a", "ft-b"), default="ft-a")
    recipe = replace(recipe, select={"ft-lr": rule})
    records = [
        {
            "id": f"{method}-{seed}",
            "data": "fashion-mnist",
            "model": "small-cnn",
            "attack": "badnets",
            "method": method,
            "seed": seed,
            "kind": "repair",
            "metrics": metrics,
            "info": {},
        }
        for method, name in (("ft-a", "paper"), ("ft-b", "lr0.03"))
        for seed, metrics in NAD_FIGURES[name].items()
    ]
    [text] = selection_tables(recipe, records, stale={"ft-b-101"})
    assert (
        "| ft-a (default) | 78.68 / 3.19 | 82.26 / 4.41 | 82.28 / 3.28 | 81.07 / 3.63 | **chosen** |" in text
    )
    assert (
        "| ft-b | 89.70 / 1.88 | 89.76 / 8.31 | 90.50 / 2.88 | 89.99 / 4.36 | ASR above 5% at seed 101 †"
        in text
    )
    assert rule.text(recipe.grid.seeds) in text and text.endswith("Chosen by the rule: **ft-a**.")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("[select.ft-lr]", "[select.ft-lr]\nbound = 1"),
            "select.ft-lr: unknown setting bound; valid: candidates",
        ),
        (
            ('default = "ft-a"', 'default = "ft-c"'),
            "select.ft-lr: default 'ft-c' is not among the candidates",
        ),
        (
            ('candidates = ["ft-a", "ft-b"]', 'candidates = ["ft-a", "nad"]'),
            "[select.ft-lr]: nad not in grid.repairs",
        ),
        (('candidates = ["ft-a", "ft-b"]', 'candidates = ["ft-a"]'), "two or more distinct columns"),
        (
            ('default = "ft-a"\n', ""),
            "[select.ft-lr]: give candidates, default, metric, prefer (missing: default)",
        ),
        (('metric = "acc"', 'metric = "seconds"'), "metric must be one of acc, asr, ra, der, got 'seconds'"),
        (('prefer = "higher"', 'prefer = "more"'), 'prefer must be "higher" or "lower"'),
        (("margin = 0.005", "margin = 1.5"), "margin must lie in [0, 1) (a fraction), got 1.5"),
        (("margin = 0.005", 'margin = "half"'), "select.ft-lr.margin must be a number"),
        (("asr_bound = 1.0", "asr_bound = 0"), "asr_bound must lie in (0, 1]"),
        (("asr_bound = 1.0", 'bound_at = "mean"'), "[select.ft-lr]: bound_at needs asr_bound"),
        (
            ("asr_bound = 1.0", 'asr_bound = 1.0\nbound_at = "median"'),
            'bound_at must be "every-seed" or "mean"',
        ),
        (
            ('evaluate_on = "validation"', 'evaluate_on = "test"'),
            "a selection chooses on the validation split",
        ),
        (
            ('evaluate_on = "validation"', 'evaluate_on = "val"'),
            "run.evaluate_on must be one of test, validation",
        ),
        (
            ('attacks = ["badnets"]', 'attacks = ["refool"]'),
            'run.evaluate_on = "validation" does not take refool',
        ),
    ],
)
def test_selection_mistakes_are_one_line_errors(change, message):
    old, new = change
    assert old in RECIPE
    with pytest.raises(MendnetError) as err:
        recipe_from(RECIPE.replace(old, new))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_selection_that_is_not_a_table_is_one_line_error():
    text = RECIPE[: RECIPE.index("[select.ft-lr]")] + "[select]\nft-lr = 1\n"
    with pytest.raises(MendnetError, match=r"^\[select.ft-lr\] must be a table"):
        recipe_from(text)


@pytest.mark.parametrize("path", TUNING, ids=lambda p: p.stem)
def test_tuning_recipes_parse_with_their_rules(path):
    recipe = load_recipe(path)
    assert recipe.run.evaluate_on == "validation" and recipe.select
    for rule in recipe.select.values():
        assert set(rule.candidates) <= set(recipe.grid.repairs)
