"""The bench's average rows over the backdoor attacks and the average ACC drop line, on hand-made
records: no model is trained."""

from __future__ import annotations

import pytest

from mendnet.bench import parse_recipe
from mendnet.bench.markdown import STALE
from mendnet.bench.recipe import tomllib
from mendnet.bench.results import acc_drops, attack_averages, metric_tables
from tests.test_bench_summary import record

GRID = """
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = {attacks}
repairs = {repairs}
seeds = [0, 1]
"""
# (attack, method) → metrics of seeds 0 and 1 (fractions); the clean row's ACC is far from the others, so
# that counting it would show in the average.
METRICS = {
    ("badnets", "none"): [{"acc": 0.90, "asr": 1.00}, {"acc": 0.92, "asr": 0.98}],
    ("blend", "none"): [{"acc": 0.80, "asr": 0.96}, {"acc": 0.82, "asr": 0.94}],
    ("none", "none"): [{"acc": 0.10}, {"acc": 0.12}],
    ("badnets", "finetune"): [{"acc": 0.88, "asr": 0.10}, {"acc": 0.90, "asr": 0.12}],
    ("blend", "finetune"): [{"acc": 0.77, "asr": 0.20}, {"acc": 0.79, "asr": 0.30}],
    ("none", "finetune"): [{"acc": 0.11}, {"acc": 0.13}],
}


def recipe(attacks=("badnets", "blend", "none"), repairs=("finetune",)):
    text = GRID.format(attacks=list(attacks), repairs=list(repairs)).replace("'", '"')
    return parse_recipe(tomllib.loads(text))


def records(skip=()):
    """The records of METRICS, leaving out the (attack, method, seed) in `skip`."""
    return [
        record(attack, method, seed, "base" if method == "none" else "repair", **metrics)
        for (attack, method), per_seed in METRICS.items()
        for seed, metrics in enumerate(per_seed)
        if (attack, method, seed) not in skip
    ]


def section(tables: list[str], title: str) -> str:
    return next(t for t in tables if t.startswith(f"**{title} %**"))


def cells(text: str, first: str) -> list[str]:
    """The cells after the row heading of the row that starts with `first`."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("| ").split("|")][1:]


def test_the_average_row_is_the_mean_and_std_over_attacks_of_the_per_attack_means():
    tables = metric_tables(recipe(), records())
    acc = section(tables, "ACC")
    assert "| attack | none | finetune |" in acc
    # none: attacks' means 91 and 81; finetune: 89 and 78 (the clean row's 11 and 12 left out)
    assert cells(acc, "average (2 attacks)") == ["86.00 ± 7.07", "83.50 ± 7.78"]
    assert acc.splitlines()[-3].startswith("| average (2 attacks) |")  # the group's last row
    assert "average rows: the mean over the backdoor attacks" in acc.splitlines()[0]
    # ASR: 99 and 95; 11 and 25
    assert cells(section(tables, "ASR"), "average (2 attacks)") == ["97.00 ± 2.83", "18.00 ± 9.90"]


def test_the_acc_drop_line_follows_the_acc_table():
    tables = metric_tables(recipe(), records())
    acc = section(tables, "ACC")
    assert acc.splitlines()[-1] == (
        "Average ACC drop (points) from no repair: finetune 2.50 (the average row's none minus the column's)."
    )
    assert "Average ACC drop" not in section(tables, "ASR")
    averages = attack_averages(recipe(), records(), "acc")[("fashion-mnist", "small-cnn")]
    assert averages["finetune"].mean == pytest.approx(0.835) and averages["finetune"].std > 0
    assert acc_drops(averages) == {"finetune": pytest.approx(2.5)}


def test_a_column_missing_a_seed_on_an_attack_has_no_average():
    tables = metric_tables(recipe(), records(skip={("blend", "finetune", 1)}))
    acc = section(tables, "ACC")
    assert cells(acc, "blend") == ["81.00 ± 1.41", "77.00 (1 of 2 seeds)"]
    assert cells(acc, "average (2 attacks)") == ["86.00 ± 7.07", "–"]
    assert "from no repair: finetune – (" in acc
    # a seed missing on the clean row changes nothing
    again = metric_tables(recipe(), records(skip={("none", "finetune", 1)}))
    assert cells(section(again, "ACC"), "average (2 attacks)") == ["86.00 ± 7.07", "83.50 ± 7.78"]


def test_an_attack_whose_unrepaired_model_lacks_a_seed_is_averaged_over_the_others():
    """A backdoor that could not be planted on seed 1 (no base, so no cells there): its row counts with seed
    0 alone, and the average row says so."""
    tables = metric_tables(recipe(), records(skip={("blend", "none", 1), ("blend", "finetune", 1)}))
    acc = section(tables, "ACC")
    # none: badnets 91, blend 80; finetune: badnets 89, blend 77
    assert cells(acc, "average (2 attacks; blend on seed 0)") == ["85.50 ± 7.78", "83.00 ± 8.49"]
    assert "from no repair: finetune 2.50 (" in acc
    # a column missing a seed that the attack's unrepaired model has still has no average
    gap = metric_tables(recipe(), records(skip={("blend", "none", 1), ("badnets", "finetune", 1)}))
    assert cells(section(gap, "ACC"), "average (2 attacks; blend on seed 0)")[1] == "–"


def test_a_stale_record_marks_the_averages_that_include_it():
    acc = section(metric_tables(recipe(), records(), stale={"blend--finetune--s1"}), "ACC")
    assert cells(acc, "average (2 attacks)") == ["86.00 ± 7.07", f"83.50 ± 7.78 {STALE}"]
    assert f"finetune 2.50 {STALE}" in acc
    clean_stale = section(metric_tables(recipe(), records(), stale={"none--finetune--s1"}), "ACC")
    assert cells(clean_stale, "average (2 attacks)") == ["86.00 ± 7.07", "83.50 ± 7.78"]


def test_one_backdoor_attack_or_no_repair_column_has_no_average_or_no_drop_line():
    one = metric_tables(recipe(attacks=("badnets", "none")), [r for r in records() if r["attack"] != "blend"])
    assert not any("average" in t or "Average ACC drop" in t for t in one)
    bare = [r for r in records() if r["method"] == "none"]
    tables = metric_tables(recipe(repairs=()), bare)
    assert cells(section(tables, "ACC"), "average (2 attacks)") == ["86.00 ± 7.07"]
    assert not any("Average ACC drop" in t for t in tables)


def test_robust_rows_get_no_average():
    text = GRID.replace("attacks = {attacks}", "").replace("repairs = {repairs}", 'robustifiers = ["pgd-at"]')
    robust = parse_recipe(tomllib.loads(text))
    natural = [
        {
            "id": f"natural--{method}",
            "kind": "base" if method == "natural" else "robustify",
            "data": "fashion-mnist",
            "model": "small-cnn",
            "attack": "natural",
            "method": method,
            "seed": 0,
            "metrics": {"acc": acc},
            "info": {},
        }
        for method, acc in (("natural", 0.9), ("pgd-at", 0.8))
    ]
    tables = metric_tables(robust, natural)
    assert attack_averages(robust, natural, "acc") == {}
    assert not any("average" in t or "Average ACC drop" in t for t in tables)
