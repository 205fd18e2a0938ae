"""A grid's results: one tidy CSV (a row per cell and metric), one JSON (a record per cell), and Markdown
tables with mean ± std over seeds (rows: data set, model, attack; columns: methods, mend, and under a
repaired column the retuning attack's metrics), where STALE marks a table cell that includes a stale
record (one computed by other code, kept with `--keep-stale`); then mend's choices, Neural Cleanse's
detection, the reversed triggers taken from detect cells, the weights a repair changed, the robust
rows' gradient-masking flags and the repairs that refused to run, each a table of its own."""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence

from mendnet.bench.grid import DETECT, MEND, NATURAL, NO_REPAIR
from mendnet.bench.inputs import REFUSED
from mendnet.bench.markdown import head, lead, mark, rows_of, seed_table, summarise, table
from mendnet.bench.masking import FLAG, masking_table
from mendnet.bench.recipe import Recipe

KEYS = ("data", "model", "attack", "method", "seed")
FRACTION_NAMES = {
    "acc": "ACC",
    "asr": "ASR",
    "ra": "RA",
    "der": "DER",
    "retune_asr": "ASR after retuning",
    "retune_acc": "ACC after retuning",
    "clean_asr": "clean model's ASR",
    "target_acc": "target-class ACC",
    "worst_case": "worst-case accuracy",
    "masking_gap": "PGD-20 − worst case",
    "aa_gap": "PGD-20 − AutoAttack",
    "changed_share": "weights changed (share of the chosen layer's)",
}
LATE = ("worst_case", "masking_gap", "aa_gap", "changed_share")
"""Fractions shown after the others (each attack's robust accuracy), in this order."""
COUNT_NAMES = {"poisoned": "poisoned training images", "weights_changed": "weights changed"}
SECONDS_NAMES = {
    "train_seconds": "training seconds",
    "seconds": "seconds",
    "retune_seconds": "retuning seconds",
    "aa_seconds": "AutoAttack seconds",
}
UNTABLED = (FLAG,)
"""Metrics in the CSV and JSON but in no metric table (the flags table shows them)."""


def tidy_csv(records: Sequence[dict]) -> str:
    """CSV text: data, model, attack, method, seed, metric, value (one row per cell and metric)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*KEYS, "metric", "value"])
    for r in records:
        for metric, value in sorted(r["metrics"].items()):
            writer.writerow([*(r[k] for k in KEYS), metric, repr(value)])
    return buf.getvalue()


def metric_title(metric: str) -> str:
    """A table heading for a metric name (fractions are shown in percent)."""
    if metric in SECONDS_NAMES:
        return SECONDS_NAMES[metric]
    if metric in COUNT_NAMES:
        return COUNT_NAMES[metric]
    return f"{FRACTION_NAMES.get(metric, metric)} %"


def metric_order(records: Sequence[dict]) -> list[str]:
    """The metrics of the tables, in reading order: ACC, ASR, RA, DER, the retuning attack's, the clean
    model's ASR and the target-class ACC of each row's base, the others (e.g. each attack's robust
    accuracy) as they first appear, the LATE fractions (the worst case first),
    counts, then seconds."""
    present = [m for m in dict.fromkeys(m for r in records for m in r["metrics"]) if m not in UNTABLED]
    fixed = [m for m in FRACTION_NAMES if m in present and m not in LATE]
    tail = [m for m in (*LATE, *COUNT_NAMES, *SECONDS_NAMES) if m in present]
    return fixed + [m for m in present if m not in fixed and m not in tail] + tail


def metric_tables(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> list[str]:
    """One Markdown table per metric: a row per (data, model, attack) that has the metric, a column per
    method, each cell the mean ± std over the seeds finished, followed by STALE when one of its
    records' ids is in `stale`. Detection records have a table of their own."""
    g = recipe.grid
    methods = (
        ([NO_REPAIR] if g.attacks else [])
        + list(g.repairs)
        + ([MEND] if g.mend else [])
        + ([NATURAL, *g.robustifiers] if g.robustifiers else [])
    )
    scored = [r for r in records if r["kind"] != DETECT]
    out = []
    for metric in metric_order(scored):
        have = [r for r in scored if metric in r["metrics"]]
        used = [m for m in methods if any(r["method"] == m for r in have)]
        lines = []
        for row in rows_of(have):
            cells = []
            for method in used:
                chosen = [
                    r for r in have if (r["data"], r["model"], r["attack"], r["method"]) == (*row, method)
                ]
                values = [r["metrics"][metric] for r in chosen]
                percent = metric not in SECONDS_NAMES and metric not in COUNT_NAMES
                text = summarise(values, percent, len(g.seeds)) if values else "–"
                cells.append(text + mark(chosen, stale))
            lines.append([*head(recipe, row), *cells])
        title = f"**{metric_title(metric)}** (mean ± std over seeds {', '.join(map(str, g.seeds))})"
        out.append(table(title, [*lead(recipe), *used], lines))
    return out


def mend_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """mend's kept model per row and seed ("fst (seed 0), nad (seed 1)"), or None without mend cells."""
    mended = [r for r in records if r["kind"] == MEND]
    if not mended:
        return None
    lines = []
    for row in rows_of(mended):
        chosen = sorted(
            (r for r in mended if (r["data"], r["model"], r["attack"]) == row), key=lambda r: r["seed"]
        )
        text = ", ".join(f"{r['info']['chosen']} (seed {r['seed']})" for r in chosen)
        lines.append([*head(recipe, row), text + mark(chosen, stale)])
    return table("**mend's choice** (the model it kept)", [*lead(recipe), "chosen"], lines)


def detect_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """Neural Cleanse on each row's base models: seeds with the target flagged, the target's anomaly
    index, the largest anomaly index below the median norm, the flagged labels and the smallest-norm
    label of each seed, seconds; None without detect cells."""
    detected = [r for r in records if r["kind"] == DETECT]
    if not detected:
        return None
    seeds = len(recipe.grid.seeds)
    lines = []
    for row in rows_of(detected):
        chosen = sorted(
            (r for r in detected if (r["data"], r["model"], r["attack"]) == row), key=lambda r: r["seed"]
        )
        hits = [r["metrics"]["target_flagged"] for r in chosen if "target_flagged" in r["metrics"]]
        index = [
            r["metrics"]["target_anomaly_index"] for r in chosen if "target_anomaly_index" in r["metrics"]
        ]
        lines.append(
            [
                *head(recipe, row),
                f"{int(sum(hits))} of {len(hits)}" if hits else "–",
                summarise(index, False, seeds, digits=2) if index else "–",
                summarise([r["metrics"]["max_below_median_index"] for r in chosen], False, seeds, digits=2),
                "; ".join(str(r["info"]["flagged"]) for r in chosen),
                "; ".join(str(r["info"]["smallest_norm_label"]) for r in chosen),
                summarise([r["metrics"]["seconds"] for r in chosen], False, seeds) + mark(chosen, stale),
            ]
        )
    heads = [
        "target flagged",
        "target's anomaly index",
        "largest index below the median norm",
        "flagged labels",
        "smallest-norm label",
        "seconds",
    ]
    title = "**Neural Cleanse detection** (per seed: " + ", ".join(map(str, recipe.grid.seeds)) + ")"
    return table(title, [*lead(recipe), *heads], lines)


def _trigger_note(record: dict) -> str:
    taken = record["trigger"]
    label = "the trigger's own flags" if taken["label"] is None else f"label {taken['label']}"
    return label + (" (flagged)" if taken["flagged"] else " (none flagged: the smallest norm's)")


def _refused_note(record: dict) -> str:
    return record["info"][REFUSED]


def _changes_note(record: dict) -> str:
    info = record["info"]
    return f"{info['weights_changed']} in `{info['layer']}` ({100 * info['fraction_of_layer']:.2f}%)"


def markdown_tables(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str:
    """The Markdown of `records`: the metric tables, then (when the grid has such cells) mend's choices,
    the detection table, the reversed trigger each taker took from its detect cell, the weights changed
    in the chosen layer, the gradient-masking flags and the refused repairs."""
    tables = metric_tables(recipe, records, stale)
    takers = [r for r in records if r.get("trigger")]
    changers = [r for r in records if "weights_changed" in r["metrics"] and "layer" in r["info"]]
    refused = [r for r in records if REFUSED in r["info"]]
    more = (
        mend_table(recipe, records, stale),
        detect_table(recipe, records, stale),
        seed_table(recipe, takers, "**Reversed trigger taken from the detect cell**", _trigger_note, stale),
        seed_table(recipe, changers, "**Weights changed** (in the chosen layer)", _changes_note, stale),
        masking_table(recipe, records, stale),
        seed_table(recipe, refused, "**Refused** (the method's error; no metrics)", _refused_note, stale),
    )
    return "\n\n".join([*tables, *(t for t in more if t)]) + "\n"
