"""mend's scan against Neural Cleanse's full reversal on the same model (issue 29): on each base that has
both a detect cell and a mend cell, per seed, the labels each flags, the true target's anomaly index in
each (when the base records a backdoor) and in the scan's norms at its focus point (where every label had
run the same epochs; records made before the scan kept them show "–"), the smallest-norm label of each
and the seconds of each.

The scan reverses on mend's repair part (its validation part held out: `mend.run.split_parts`), the detect
cell on all the defender data, and after `focus_after` epochs the scan flags on the norms then and
optimises only the flagged labels, or at least the `focus` smallest-norm ones (docs/methods.md §10), so
its norms may differ from the full reversal's even where both find the same labels."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import torch

from mendnet.bench.grid import DETECT, MEND
from mendnet.bench.markdown import head, lead, mark, table
from mendnet.bench.recipe import Recipe
from mendnet.bench.taken_trigger import smallest_norm_label
from mendnet.detect.outliers import anomaly_index


def _key(record: dict) -> tuple:
    return record["data"], record["model"], record["attack"], record["seed"]


def _index(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _scan_columns(full: dict, fast: dict) -> list[str]:
    """One seed's comparison: flagged (full / scan), the same flags, the target's anomaly index (full /
    scan / the scan's at its focus point), the smallest-norm label (full / scan), seconds (full / scan)."""
    scan: dict[str, Any] = fast["info"]["scan"]
    target = full["info"]["target"]
    full_flags, scan_flags = sorted(full["info"]["flagged"]), sorted(fast["info"]["flagged"])
    index = "–"
    if target is not None:
        full_index = full["info"]["labels"][target]["anomaly_index"]
        at_focus = None
        if scan.get("focus_norms") is not None:
            value = float(anomaly_index(torch.tensor(scan["focus_norms"]))[target])
            at_focus = value if math.isfinite(value) else None
        index = f"{_index(full_index)} / {_index(scan['anomaly_index'][target])} / {_index(at_focus)}"
    norms = scan["norms"]
    smallest = min(range(len(norms)), key=norms.__getitem__)
    return [
        f"{full_flags} / {scan_flags}",
        "yes" if full_flags == scan_flags else "no",
        index,
        f"{smallest_norm_label(full['info']['labels'])} / {smallest}",
        f"{full['metrics']['seconds']:.0f} / {fast['info']['seconds']['scan']:.0f}",
    ]


def scan_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """The comparison, a line per (data, model, attack) and seed with both cells; None without such pairs
    (or with mend records made before they kept their scan)."""
    detected = {_key(r): r for r in records if r["kind"] == DETECT}
    pairs = [
        (detected[_key(r)], r)
        for r in records
        if r["kind"] == MEND and _key(r) in detected and "scan" in r["info"]
    ]
    if not pairs:
        return None
    lines = []
    for full, fast in sorted(pairs, key=lambda pair: _key(pair[0])):
        columns = _scan_columns(full, fast)
        columns[-1] += mark([full, fast], stale)
        row = (full["data"], full["model"], full["attack"])
        lines.append([*head(recipe, row), str(full["seed"]), *columns])
    heads = [
        "seed",
        "flagged (full / scan)",
        "same flags",
        "target's anomaly index (full / scan / scan at its focus point)",
        "smallest-norm label (full / scan)",
        "seconds (full / scan)",
    ]
    title = (
        "**mend's scan against the full reversal** (Neural Cleanse's detect cell on all the defender data "
        "/ mend's scan on its repair part: after a few epochs it flags on the norms then, its focus point, "
        "and only the flagged or smallest-norm labels go on; scans recorded before it flagged there took "
        "their final norms)"
    )
    return table(title, [*lead(recipe), *heads], lines)
