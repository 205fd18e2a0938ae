"""The bench's training time relative to PGD-AT (the robust table's "× PGD-AT time"), on
hand-made records: no model is trained."""

from __future__ import annotations

import pytest

from mendnet.bench import parse_recipe
from mendnet.bench.markdown import STALE
from mendnet.bench.recipe import tomllib
from mendnet.bench.results import metric_tables, time_ratios

GRID = """
[grid]
data = ["fashion-mnist"]
models = {models}
robustifiers = {robustifiers}
seeds = [0, 1]
"""
ROW = ("fashion-mnist", "small-cnn", "natural")
# method → training seconds of seeds 0 and 1; pgd-at's mean is 100 s
SECONDS = {
    "natural": [10.0, 12.0],
    "pgd-at": [90.0, 110.0],
    "fgsm-rs": [20.0, 30.0],
    "robust-kd": [40.0, 46.0],
}


def recipe(robustifiers=("pgd-at", "fgsm-rs", "robust-kd"), models=("small-cnn",)):
    text = GRID.format(robustifiers=list(robustifiers), models=list(models)).replace("'", '"')
    return parse_recipe(tomllib.loads(text))


def records(skip=(), model="small-cnn"):
    """The records of SECONDS on `model`'s natural row, leaving out the (method, seed) in `skip`."""
    return [
        {
            "id": f"{model}--{method}--s{seed}",
            "kind": "base" if method == "natural" else "robustify",
            "data": "fashion-mnist",
            "model": model,
            "attack": "natural",
            "method": method,
            "seed": seed,
            "metrics": {"acc": 0.8, "train_seconds": seconds},
            "info": {"teacher": {"base": "teacher", "train_seconds": 99.0}} if method == "robust-kd" else {},
        }
        for method, per_seed in SECONDS.items()
        for seed, seconds in enumerate(per_seed)
        if (method, seed) not in skip
    ]


def seconds_table(tables: list[str]) -> str:
    return next(t for t in tables if t.startswith("**training seconds**"))


def cells(text: str, first: str, heads: int = 1) -> list[str]:
    """The cells after the `heads` row headings of the ratio table's row that starts with `first`."""
    ratio = text[text.index("**time relative to PGD-AT**") :]
    line = next(line for line in ratio.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("| ").split("|")][heads:]


def test_each_column_s_mean_seconds_over_pgd_at_s():
    ratios = time_ratios(recipe(), records())
    assert ratios == {
        ROW: {"pgd-at": pytest.approx(1.0), "fgsm-rs": pytest.approx(0.25), "robust-kd": pytest.approx(0.43)}
    }
    text = seconds_table(metric_tables(recipe(), records()))
    assert "| attack | pgd-at | fgsm-rs | robust-kd |" in text
    assert cells(text, "natural") == ["1.00×", "0.25×", "0.43×"]
    title = next(line for line in text.splitlines() if line.startswith("**time relative to PGD-AT**"))
    # the teacher's training is mentioned once, for the column that distils one
    assert "the teacher's training is not included for robust-kd:" in title and "fgsm-rs" not in title
    assert '"teacher"' in title
    # the training-seconds table itself is unchanged, the natural column first
    assert "| attack | natural | pgd-at | fgsm-rs | robust-kd |" in text


def test_the_mean_is_over_the_finished_seeds():
    ratios = time_ratios(recipe(), records(skip={("fgsm-rs", 1)}))
    assert ratios[ROW]["fgsm-rs"] == pytest.approx(0.2)


def test_missing_pgd_at_or_column_on_a_row_shows_a_dash():
    both = records() + records(model="resnet-18")
    without = [r for r in both if not (r["model"] == "resnet-18" and r["method"] == "pgd-at")]
    grid = recipe(models=("small-cnn", "resnet-18"))
    ratios = time_ratios(grid, without)
    assert ratios[("fashion-mnist", "resnet-18", "natural")] == {
        "pgd-at": None,
        "fgsm-rs": None,
        "robust-kd": None,
    }
    assert ratios[ROW]["fgsm-rs"] == pytest.approx(0.25)
    text = seconds_table(metric_tables(grid, without))
    assert cells(text, "resnet-18", heads=2) == ["–", "–", "–"]
    assert cells(text, "small-cnn", heads=2) == ["1.00×", "0.25×", "0.43×"]
    # a column without a record on the row
    no_kd = [r for r in records() if r["method"] != "robust-kd"] + records(model="resnet-18")
    text = seconds_table(metric_tables(grid, no_kd))
    assert cells(text, "small-cnn", heads=2) == ["1.00×", "0.25×", "–"]
    assert time_ratios(grid, no_kd)[ROW]["robust-kd"] is None


def test_a_stale_record_marks_its_ratio_and_those_over_a_stale_pgd_at():
    text = seconds_table(metric_tables(recipe(), records(), stale={"small-cnn--fgsm-rs--s1"}))
    assert cells(text, "natural") == ["1.00×", f"0.25× {STALE}", "0.43×"]
    text = seconds_table(metric_tables(recipe(), records(), stale={"small-cnn--pgd-at--s0"}))
    assert cells(text, "natural") == [f"1.00× {STALE}", f"0.25× {STALE}", f"0.43× {STALE}"]


def test_no_ratio_without_the_pgd_at_column():
    grid = recipe(robustifiers=("fgsm-rs", "robust-kd"))
    kept = [r for r in records() if r["method"] != "pgd-at"]
    assert time_ratios(grid, kept) == {}
    assert not any("relative to PGD-AT" in t for t in metric_tables(grid, kept))


def test_no_ratio_in_a_repair_grid():
    text = GRID.format(robustifiers=[], models=["small-cnn"]).replace("'", '"')
    repair = parse_recipe(
        tomllib.loads(text.replace("robustifiers = []", 'attacks = ["badnets"]\nrepairs = ["finetune"]'))
    )
    rows = [
        {**r, "attack": "badnets", "method": method, "kind": "repair", "id": f"{method}-{r['seed']}"}
        for r in records()
        if r["method"] == "pgd-at"
        for method in ("none", "finetune")
    ]
    assert time_ratios(repair, rows) == {}
    assert not any("relative to PGD-AT" in t for t in metric_tables(repair, rows))
