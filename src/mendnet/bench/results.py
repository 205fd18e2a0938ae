"""A grid's results: one tidy CSV (a row per cell and metric), one JSON (a record per cell), and Markdown
tables with mean ± std over seeds (rows: data set, model, attack; columns: methods, mend, and under a
repaired column the retuning attack's metrics), where STALE marks a table cell that includes a stale
record (one computed by other code, kept with `--keep-stale`); in a repair grid with several backdoor
attacks, the ACC, ASR, RA, DER and retuning tables end each (data, model) with an average row over the
attacks, and the ACC table is followed by each repair column's average ACC drop from no repair (points);
in a robust grid with the PGD-AT column, the training-seconds table is followed by each robustifier's
training time relative to PGD-AT's (the robust table's "× PGD-AT time"); then mend's choices,
Neural Cleanse's detection, mend's scan against the full reversal (mendnet.bench.scan_table), AI-Lancet's
general defects (mendnet.bench.defect_tables), the reversed triggers taken from detect cells, the weights
a repair changed, the robust rows' gradient-masking flags, their AutoAttack against the authors' package
(run.aa_check) and the repairs that refused to run, each a table of its own. A recipe's selection rules'
tables (every candidate's validation figures and the rule's choice, mendnet.bench.selection_table) come
first."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from mendnet.bench.defect_tables import defect_tables
from mendnet.bench.grid import CLEAN, DEFECTS, DETECT, MEND, NATURAL, NO_REPAIR
from mendnet.bench.inputs import REFUSED
from mendnet.bench.markdown import Row, head, lead, mark, rows_of, seed_table, summarise, table
from mendnet.bench.masking import FLAG, PACKAGE_METRICS, masking_table, package_table
from mendnet.bench.recipe import Recipe
from mendnet.bench.scan_table import scan_table
from mendnet.bench.selection_table import selection_tables
from mendnet.registry import ROBUSTIFIERS

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
    "autoattack": "AutoAttack (standard version)",
    "aa_gap": "PGD-20 − AutoAttack (on AutoAttack's images)",
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
UNTABLED = (FLAG, *PACKAGE_METRICS)
"""Metrics in the CSV and JSON but in no metric table (the flags and package tables show them)."""
AVERAGED = ("acc", "asr", "ra", "der", "retune_asr", "retune_acc")
"""Fractions whose tables end each (data, model) of a repair grid with the average over its backdoor
attacks (`attack_averages`)."""
MISSING = "–"
"""A table cell without a value."""
PGD_AT = ROBUSTIFIERS["pgd-at"].name
"""The robustifier column whose training seconds the others' are compared with (`time_ratios`)."""

Group = tuple[str, str]
"""A group of rows: (data, model)."""


@dataclass(frozen=True)
class Average:
    """One column's average over the backdoor attacks of a (data, model), fractions in [0, 1]: `mean` is the
    mean over the attacks of each attack's mean over seeds, `std` the sample std of those per-attack means
    (the spread over attacks, not over seeds); `records` the records it includes; `partial` the attacks
    averaged over fewer than the grid's seeds (their unrepaired model lacks the others), with those seeds."""

    mean: float
    std: float
    records: tuple[dict, ...]
    partial: tuple[tuple[str, tuple[int, ...]], ...] = ()


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


def _chosen(records: Sequence[dict], row: Row, method: str) -> list[dict]:
    """The records of column `method` on `row` (one per finished seed)."""
    return [r for r in records if (r["data"], r["model"], r["attack"], r["method"]) == (*row, method)]


def backdoor_attacks(recipe: Recipe) -> list[str]:
    """The grid's backdoor attacks: its attacks but the clean row."""
    return [a for a in recipe.grid.attacks if a != CLEAN]


def row_seeds(records: Sequence[dict], row: Row, seeds: Sequence[int]) -> tuple[int, ...]:
    """The grid's `seeds` on which `row`'s unrepaired model (its none record) finished, or all of them when
    it finished on none: a backdoor that could not be planted on a seed has no row there."""
    done = {r["seed"] for r in _chosen(records, row, NO_REPAIR)}
    return tuple(s for s in seeds if s in done) or tuple(seeds)


def attack_averages(
    recipe: Recipe, records: Sequence[dict], metric: str, bases: Sequence[dict] = ()
) -> dict[Group, dict[str, Average | None]]:
    """For each (data, model) with records of `metric` when the grid has more than one backdoor attack:
    each repair-grid column (none, the repairs, mend) with a record of `metric` on a backdoored row →
    its Average over the backdoor attacks (the clean row and the robust rows left out), or None unless
    every backdoor attack has it on every seed of its `row_seeds` (read from `bases`, records that hold
    the none column whatever `metric` is; default `records`). Empty for other grids. Values are fractions
    in [0, 1]."""
    g = recipe.grid
    attacks = backdoor_attacks(recipe)
    if len(attacks) < 2:
        return {}
    columns = [NO_REPAIR, *g.repairs, *([MEND] if g.mend else [])]
    have = [r for r in records if r["kind"] != DETECT and metric in r["metrics"] and r["attack"] in attacks]
    out: dict[Group, dict[str, Average | None]] = {}
    for group in dict.fromkeys((r["data"], r["model"]) for r in have):
        expected = {a: row_seeds(bases or records, (*group, a), g.seeds) for a in attacks}
        partial = tuple((a, s) for a, s in expected.items() if len(s) < len(g.seeds))
        averages: dict[str, Average | None] = {}
        for column in columns:
            chosen = {
                a: [r for r in _chosen(have, (*group, a), column) if r["seed"] in expected[a]]
                for a in attacks
            }
            if not any(chosen.values()):
                continue
            if any({r["seed"] for r in chosen[a]} != set(expected[a]) for a in attacks):
                averages[column] = None
                continue
            means = [statistics.mean(r["metrics"][metric] for r in seeds) for seeds in chosen.values()]
            included = tuple(r for seeds in chosen.values() for r in seeds)
            averages[column] = Average(statistics.mean(means), statistics.stdev(means), included, partial)
        out[group] = averages
    return out


def acc_drops(averages: dict[str, Average | None]) -> dict[str, float | None]:
    """Each repair column's average ACC drop from no repair, in points: 100 × (the none column's average ACC
    minus the column's; positive: the repair lost accuracy), None where either average is missing. Empty
    without the none column or a repair column."""
    columns = [c for c in averages if c != NO_REPAIR]
    if NO_REPAIR not in averages or not columns:
        return {}
    base = averages[NO_REPAIR]
    return {
        c: None if base is None or (a := averages[c]) is None else 100 * (base.mean - a.mean) for c in columns
    }


def _stale(averages: Sequence[Average | None], stale: Collection[str]) -> str:
    """STALE (after a space) when one of the averages includes a stale record, else nothing."""
    return mark([r for a in averages if a is not None for r in a.records], stale)


def average_row(
    recipe: Recipe,
    group: Group,
    averages: dict[str, Average | None],
    columns: Sequence[str],
    stale: Collection[str],
) -> list[str]:
    """The row "average (N attacks)" of a group: per column, the mean ± the std over the attacks of the
    per-attack means, in percent (MISSING where not every attack has the column on every seed of its
    `row_seeds`); the label names the attacks averaged over fewer seeds."""
    partial = next((a.partial for a in averages.values() if a is not None), ())
    fewer = "".join(
        f"; {attack} on seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"
        for attack, seeds in partial
    )
    label = f"average ({len(backdoor_attacks(recipe))} attacks{fewer})"
    cells = []
    for column in columns:
        average = averages.get(column)
        if average is None:
            cells.append(MISSING)
        else:
            cells.append(f"{100 * average.mean:.2f} ± {100 * average.std:.2f}" + _stale([average], stale))
    return [*head(recipe, (*group, label)), *cells]


def drop_line(
    recipe: Recipe, group: Group, averages: dict[str, Average | None], stale: Collection[str]
) -> str | None:
    """The line of a group's average ACC drops from no repair, in points, or None without one
    (`acc_drops`)."""
    drops = acc_drops(averages)
    if not drops:
        return None
    g = recipe.grid
    shown = [name for name, axis in zip(group, (g.data, g.models), strict=True) if len(axis) > 1]
    parts = [
        f"{c} " + (MISSING if d is None else f"{d:.2f}") + _stale([averages[NO_REPAIR], averages[c]], stale)
        for c, d in drops.items()
    ]
    where = f" ({', '.join(shown)})" if shown else ""
    return (
        f"Average ACC drop (points) from no repair{where}: {', '.join(parts)} (the average row's none minus "
        "the column's)."
    )


def time_ratios(recipe: Recipe, records: Sequence[dict]) -> dict[Row, dict[str, float | None]]:
    """For a grid whose robustifiers include PGD_AT: for each row with a robustifier record of
    "train_seconds", each robustifier column → the ratio of its mean training seconds over its finished
    seeds to PGD-AT's mean on the same row (dimensionless; PGD-AT's own is 1.0), None where either
    column has no record on the row (or PGD-AT's mean is 0 seconds). Empty for other grids. The seconds
    are the student's alone: a distilled teacher's training is not in them."""
    columns = recipe.grid.robustifiers
    if PGD_AT not in columns:
        return {}
    have = [r for r in records if r["method"] in columns and "train_seconds" in r["metrics"]]
    out: dict[Row, dict[str, float | None]] = {}
    for row in rows_of(have):
        means = {}
        for column in columns:
            seconds = [r["metrics"]["train_seconds"] for r in _chosen(have, row, column)]
            means[column] = statistics.mean(seconds) if seconds else None
        at = means[PGD_AT]
        out[row] = {c: None if m is None or not at else m / at for c, m in means.items()}
    return out


def time_ratio_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """The table of `time_ratios` ("0.43×": the column's mean training seconds over PGD-AT's on the row;
    MISSING where either is missing), a row per row with training seconds and a column per robustifier
    with any, each cell followed by STALE when the column's or PGD-AT's records on the row include a stale
    one; its title names the columns that distil a teacher, whose training is not included (each of their
    records' info "teacher" holds its train_seconds). None without ratios."""
    ratios = time_ratios(recipe, records)
    if not ratios:
        return None
    have = [r for r in records if "train_seconds" in r["metrics"]]
    used = [c for c in recipe.grid.robustifiers if any(r["method"] == c for r in have)]
    lines = []
    for row, by_column in ratios.items():
        cells = []
        for column in used:
            ratio = by_column[column]
            text = MISSING if ratio is None else f"{ratio:.2f}×"
            cells.append(text + mark([*_chosen(have, row, column), *_chosen(have, row, PGD_AT)], stale))
        lines.append([*head(recipe, row), *cells])
    title = (
        "**time relative to PGD-AT** (each column's mean training seconds over its finished seeds ÷ the "
        f"{PGD_AT} column's on the same row"
    )
    distil = [c for c in used if ROBUSTIFIERS[recipe.columns[c].method].teacher is not None]
    if distil:
        title += (
            f"; the teacher's training is not included for {', '.join(distil)}: their records' info "
            '"teacher" holds its seconds'
        )
    return table(title + ")", [*lead(recipe), *used], lines)


def _row_line(
    recipe: Recipe,
    have: Sequence[dict],
    row: Row,
    metric: str,
    columns: Sequence[str],
    stale: Collection[str],
) -> list[str]:
    """A row of a metric's table: per column, the mean ± std over the seeds finished (with STALE)."""
    cells = []
    for method in columns:
        chosen = _chosen(have, row, method)
        values = [r["metrics"][metric] for r in chosen]
        percent = metric not in SECONDS_NAMES and metric not in COUNT_NAMES
        text = summarise(values, percent, len(recipe.grid.seeds)) if values else MISSING
        cells.append(text + mark(chosen, stale))
    return [*head(recipe, row), *cells]


def metric_tables(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> list[str]:
    """One Markdown table per metric: a row per (data, model, attack) that has the metric, a column per
    method, each cell the mean ± std over the seeds finished, followed by STALE when one of its
    records' ids is in `stale`. In a repair grid with several backdoor attacks, the AVERAGED tables end
    each (data, model) with `average_row` (the mean ± std over attacks of the per-attack means; its
    title says so), and the ACC table is followed by `drop_line`. In a robust grid with the PGD_AT
    column, the training-seconds table is followed by `time_ratio_table`. Detection and defects records
    have tables of their own."""
    g = recipe.grid
    methods = (
        ([NO_REPAIR] if g.attacks else [])
        + list(g.repairs)
        + ([MEND] if g.mend else [])
        + ([NATURAL, *g.robustifiers] if g.robustifiers else [])
    )
    scored = [r for r in records if r["kind"] not in (DETECT, DEFECTS)]
    out = []
    for metric in metric_order(scored):
        have = [r for r in scored if metric in r["metrics"]]
        used = [m for m in methods if any(r["method"] == m for r in have)]
        averages = attack_averages(recipe, have, metric, scored) if metric in AVERAGED else {}
        rows = rows_of(have)
        lines = []
        for i, row in enumerate(rows):
            lines.append(_row_line(recipe, have, row, metric, used, stale))
            group = (row[0], row[1])
            if group in averages and all((r[0], r[1]) != group for r in rows[i + 1 :]):
                lines.append(average_row(recipe, group, averages[group], used, stale))
        title = f"**{metric_title(metric)}** (mean ± std over seeds {', '.join(map(str, g.seeds))}"
        if averages:
            title += (
                "; average rows: the mean over the backdoor attacks of each attack's mean over seeds, "
                "± the std over attacks, without the clean row"
            )
        text = table(title + ")", [*lead(recipe), *used], lines)
        if metric == "acc":
            drops = (drop_line(recipe, group, a, stale) for group, a in averages.items())
            text = "\n\n".join([text, *(d for d in drops if d)])
        if metric == "train_seconds" and (ratios := time_ratio_table(recipe, scored, stale)):
            text = "\n\n".join([text, ratios])
        out.append(text)
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
    """The Markdown of `records`: the metric tables, then (when the grid has such cells) mend's choices, the
    detection table, mend's scan against the detect cells' full reversal, the general-defect tables, the
    reversed trigger each taker took from its detect cell, the weights changed in the chosen layer, the
    gradient-masking flags, the check of AutoAttack against the authors' package and the refused
    repairs; before all of them, the selection rules' tables."""
    tables = [*selection_tables(recipe, records, stale), *metric_tables(recipe, records, stale)]
    takers = [r for r in records if r.get("trigger")]
    changers = [r for r in records if "weights_changed" in r["metrics"] and "layer" in r["info"]]
    refused = [r for r in records if REFUSED in r["info"]]
    more = (
        mend_table(recipe, records, stale),
        detect_table(recipe, records, stale),
        scan_table(recipe, records, stale),
        *defect_tables(recipe, records, stale),
        seed_table(recipe, takers, "**Reversed trigger taken from the detect cell**", _trigger_note, stale),
        seed_table(recipe, changers, "**Weights changed** (in the chosen layer)", _changes_note, stale),
        masking_table(recipe, records, stale),
        package_table(recipe, records, stale),
        seed_table(recipe, refused, "**Refused** (the method's error; no metrics)", _refused_note, stale),
    )
    return "\n\n".join([*tables, *(t for t in more if t)]) + "\n"
