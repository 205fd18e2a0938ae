"""`mendnet bench`'s defects cells (AI-Lancet's general-defect experiment, mendnet.bench.defects): which
bases get one, the figures and tables of a small real run, the settings as the cell's identity, and
one-line errors for bad settings."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from mendnet.bench import parse_recipe, run_bench
from mendnet.bench.cells import cell_spec, enumerate_cells
from mendnet.bench.defects import DefectsConfig, defect_figures, random_mask, seeded_halves
from mendnet.bench.plan import plan_cells
from mendnet.bench.recipe import tomllib
from mendnet.bench.store import BenchStore
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError

# A clean model of the tiny MLP below on 2,000 training images (about 78% test accuracy after one epoch:
# it misclassifies enough for the experiment, and its mask companions are found in a few steps), 40 test
# images (halves of 20), 180 defender images, everything else at its smallest.
RECIPE = """
name = "defects"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["none"]
seeds = [0]
defects = true
[run]
train_subset = 2000
test_images = 40
clean_fraction = 0.003
[train]
epochs = 1
batch_size = 64
lr = 0.1
[defects]
pairs = 6
mask_steps = 40
copies = 1
tune_epochs = 1
shares = [0.5]
"""
FACTORY = """
from torch import nn


def make(num_classes, in_channels, input_size):
    h, w = input_size
    hidden = nn.Linear(in_channels * h * w, 32)
    return nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), nn.Linear(32, num_classes))
"""
FRACTIONS = [f"{m}.{s}" for m in ("original", "lancet", "random", "plain") for s in ("acc", "fixed")]
DOSE = [
    "dose_0.5.k",
    *(f"dose_0.5.{m}.{s}" for m in ("lancet", "random") for s in ("acc", "fixed", "seconds")),
]
COUNTS = ["trained_weights", "wrong_half1", "wrong_half2", "layer_weights", "pairs", "corrected", "voted"]


def recipe_from(text: str):
    return parse_recipe(tomllib.loads(text))


@pytest.fixture(scope="module")
def defects_run(tmp_path_factory):
    """The recipe with the tiny MLP, run locally."""
    root = tmp_path_factory.mktemp("defects")
    (root / "tiny.py").write_text(FACTORY)
    recipe = recipe_from(RECIPE.replace('"small-cnn"', f'"{root / "tiny.py"}:make"'))
    out = root / "out"
    return recipe, out, run_bench(recipe, out, progress=False)


def test_each_clean_base_gets_a_defects_cell_and_no_backdoored_one():
    recipe = recipe_from(RECIPE.replace('attacks = ["none"]', 'attacks = ["badnets", "none"]'))
    assert [(c.base.attack, c.method) for c in enumerate_cells(recipe) if c.kind == "defects"] == [
        ("none", "defects")
    ]
    assert recipe.defects == DefectsConfig(pairs=6, mask_steps=40, copies=1, tune_epochs=1, shares=(0.5,))
    assert DefectsConfig().vote_share == 0.05 and DefectsConfig().finetune_config().misclassified


def test_the_defects_cell_records_the_scripts_figures(defects_run):
    recipe, out, summary = defects_run
    record = next(r for r in summary.records if r["kind"] == "defects")
    m = record["metrics"]
    assert set(m) == {*FRACTIONS, *(f"{r}.seconds" for r in ("lancet", "random", "plain")), *COUNTS,
                      "ratio_q1", "ratio_median", "ratio_q3", *DOSE}  # fmt: skip
    assert all(0 <= m[k] <= 1 for k in FRACTIONS) and m["original.fixed"] == 0  # by definition
    assert m["wrong_half2"] == round(20 * (1 - m["original.acc"]))  # half 2: 20 of the 40 test images
    assert 0 < m["trained_weights"] <= m["voted"] <= m["layer_weights"]
    assert 0 < m["corrected"] <= m["pairs"] <= min(recipe.defects.pairs, m["wrong_half1"])
    assert 0 < m["ratio_q1"] <= m["ratio_median"] <= m["ratio_q3"] <= 1
    assert m["dose_0.5.k"] == min(round(0.5 * m["layer_weights"]), m["voted"])
    assert record["info"] == {"layer": record["info"]["layer"], "half_seed": 0}
    tables = (out / "tables.md").read_text()
    for text in (
        "**General defects**",
        "| AI-Lancet neuron fine-tuning |",
        "| plain fine-tuning |",
        "| 50% |",
        "**Located** (general defects)",
        f"seed 0: `{record['info']['layer']}`",
    ):
        assert text in tables, text
    assert "lancet.acc %" not in tables  # no metric table per figure
    assert "defects,0,lancet.fixed," in (out / "results.csv").read_text()


@pytest.mark.parametrize(
    "change",
    [{"copies": 2}, {"vote_share": 0.1}, {"shares": (0.5, 0.1)}, {"half_seed": 3}, {"layers": ("net.3",)}],
)
def test_a_changed_setting_recomputes_the_defects_cell_only(defects_run, change):
    recipe, out, _ = defects_run
    store = BenchStore(out)
    assert plan_cells(recipe, store, enumerate_cells(recipe), keep_stale=False).todo == []
    changed = replace(recipe, defects=replace(recipe.defects, **change))
    cells = enumerate_cells(changed)
    defects = next(c for c in cells if c.kind == "defects")
    assert cell_spec(changed, defects)["config"] != cell_spec(recipe, defects)["config"]
    assert plan_cells(changed, store, cells, keep_stale=False).todo == [defects]


def test_the_halves_and_the_random_weights_are_seeded():
    images = torch.zeros(11, 1, 4, 4, dtype=torch.uint8)
    data = ImageSet(images, torch.arange(11) % 2, ("a", "b"), (0.5,), (0.5,))
    first, second = seeded_halves(data, 0)
    assert (len(first), len(second)) == (5, 6)
    assert torch.equal(first.images, seeded_halves(data, 0)[0].images)
    mask = random_mask(torch.zeros(3, 4), 5, seed=1)
    assert (
        mask.shape == (3, 4)
        and int(mask.sum()) == 5
        and torch.equal(mask, random_mask(torch.zeros(3, 4), 5, 1))
    )


def test_a_model_that_misclassifies_nothing_has_no_defects():
    data = ImageSet(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), ("a", "b"),
                    (0.5,), (0.5,))  # fmt: skip
    always_a = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    nn.init.zeros_(always_a[1].weight)
    with torch.no_grad():
        always_a[1].bias.copy_(torch.tensor([1.0, 0.0]))
    with pytest.raises(MendnetError, match="misclassifies none of test half 1's 4 images"):
        defect_figures(always_a, data, data, DefectsConfig(), 0, torch.device("cpu"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("defects = true", "defects = 1"), "grid.defects must be true or false"),
        (('attacks = ["none"]', 'attacks = ["badnets"]'), 'grid.defects needs the clean row: add "none"'),
        (
            ("defects = true", "defects = false"),
            r"\[defects\] sets defects cells, but grid.defects asks for none",
        ),
        (("shares = [0.5]", "shares = [0]"), r"defects: shares must lie in \(0, 1\]"),
        (("shares = [0.5]", "shares = [0.5, 0.5]"), "defects: shares repeats a share"),
        (("shares = [0.5]", "shares = 0.5"), "defects.shares must be a list"),
        (("pairs = 6", "pairs = 0"), "defects: lancet: pairs must be ≥ 1"),
        (("copies = 1", "copies = 0"), "defects: lancet-finetune: epochs, batch size and copies must be ≥ 1"),
        (("copies = 1", "vote_share = 1.5"), r"defects: lancet-finetune: vote share must lie in \[0, 1\]"),
        (("mask_steps = 40", "mask_steps = 0"), "defects: mask_steps must be ≥ 1"),
        (("copies = 1", "half_seed = 0.5"), "defects.half_seed must be an integer"),
        (("copies = 1", "epochs = 3"), "defects: unknown setting epochs"),
        (("[defects]", '[variant.defects]\nmethod = "finetune"\n[defects]'), "'defects' is already a method"),
    ],
)
def test_bad_defects_settings_are_one_line_errors(change, message):
    old, new = change
    assert old in RECIPE
    with pytest.raises(MendnetError, match=message) as info:
        recipe_from(RECIPE.replace(old, new))
    assert "\n" not in str(info.value)
