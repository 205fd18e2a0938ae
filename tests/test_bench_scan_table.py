"""mend's scan against the full reversal (mendnet.bench.scan_table) on hand-made records."""

from __future__ import annotations

from mendnet.bench import parse_recipe
from mendnet.bench.recipe import tomllib
from mendnet.bench.scan_table import scan_table

RECIPE = parse_recipe(
    tomllib.loads(
        """
name = "scan"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["badnets"]
repairs = ["finetune"]
seeds = [0, 1]
detect = true
mend = true
"""
    )
)


def record(kind: str, seed: int, **info) -> dict:
    base = {"data": "fashion-mnist", "model": "small-cnn", "attack": "badnets", "seed": seed}
    return {**base, "id": f"{kind}{seed}", "kind": kind, "method": kind, "info": info, "metrics": {}}


def detect(seed: int, flagged: list[int], norms: list[float], index: list[float | None]) -> dict:
    labels = [
        {"label": i, "norm": n, "anomaly_index": a} for i, (n, a) in enumerate(zip(norms, index, strict=True))
    ]
    out = record("detect", seed, flagged=flagged, target=0, labels=labels)
    out["metrics"]["seconds"] = 420.4
    return out


def mend(
    seed: int, flagged: list[int], norms: list[float], index: list[float | None], focus: list[float] | None
) -> dict:
    scan = {"norms": norms, "anomaly_index": index, "epochs": [60] * 3, "stopped_by_focus": []}
    scan["focus_norms"] = focus
    return record("mend", seed, flagged=flagged, scan=scan, seconds={"scan": 150.6})


def test_each_seed_compares_flags_target_index_smallest_label_and_seconds():
    records = [
        detect(0, [0], [1.0, 9.0, 8.0], [3.1, None, None]),
        mend(0, [0], [1.2, 9.5, 7.0], [2.5, None, None], [2.0, 10.0, 8.0, 9.0, 11.0]),
        detect(1, [0], [1.0, 9.0, 8.0], [2.2, None, None]),
        mend(1, [], [7.9, 9.0, 7.5], [None, None, None], None),
    ]
    text = scan_table(RECIPE, records, stale={"mend1"})
    lines = [line for line in text.splitlines() if line.startswith("| badnets")]
    assert lines == [
        "| badnets | 0 | [0] / [0] | yes | 3.10 / 2.50 / 4.72 | 0 / 0 | 420 / 151 |",
        "| badnets | 1 | [0] / [] | no | 2.20 / – / – | 0 / 2 | 420 / 151 † |",
    ]


def test_no_table_without_pairs_or_with_mend_records_that_kept_no_scan():
    lone = detect(0, [0], [1.0, 9.0], [3.1, None])
    assert scan_table(RECIPE, [lone]) is None
    old = mend(0, [0], [1.0, 9.0], [3.1, None], None)
    del old["info"]["scan"]
    assert scan_table(RECIPE, [lone, old]) is None
