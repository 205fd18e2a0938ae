"""A grid's results: one tidy CSV (a row per cell and metric), one JSON (a record per cell), and Markdown
tables with mean ± std over seeds (rows: data set, model, attack; columns: methods, mend, and under a
repaired column the retuning attack's metrics), where STALE marks a table cell that includes a stale
record (one computed by other code, kept with `--keep-stale`); then mend's choices and Neural Cleanse's
detection, each a table of its own."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Collection, Sequence

from mendnet.bench.grid import CLEAN, DETECT, MEND, NATURAL, NO_REPAIR
from mendnet.bench.recipe import Recipe

KEYS = ("data", "model", "attack", "method", "seed")
FRACTION_NAMES = {
    "acc": "ACC",
    "asr": "ASR",
    "ra": "RA",
    "der": "DER",
    "retune_asr": "ASR after retuning",
    "retune_acc": "ACC after retuning",
    "worst_case": "worst-case accuracy",
}
SECONDS_NAMES = {
    "train_seconds": "training seconds",
    "seconds": "seconds",
    "retune_seconds": "retuning seconds",
}
STALE = "†"


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
    return f"{FRACTION_NAMES.get(metric, metric)} %"


def summarise(values: Sequence[float], percent: bool, seeds: int, digits: int | None = None) -> str:
    """'mean ± std' (sample std over seeds; one value: the value alone); '(n of N seeds)' if incomplete.
    digits: after the point (default: 2 in percent, else 1)."""
    scaled = [100 * v if percent else v for v in values]
    digits = digits if digits is not None else 2 if percent else 1
    text = f"{statistics.mean(scaled):.{digits}f}"
    if len(scaled) > 1:
        text += f" ± {statistics.stdev(scaled):.{digits}f}"
    if len(scaled) < seeds:
        text += f" ({len(scaled)} of {seeds} seeds)"
    return text


def metric_order(records: Sequence[dict]) -> list[str]:
    """The metrics present, in reading order: ACC, ASR, RA, DER, the others (e.g. each attack's robust
    accuracy) as they first appear, the worst case, then seconds."""
    present = list(dict.fromkeys(m for r in records for m in r["metrics"]))
    fixed = [m for m in FRACTION_NAMES if m in present and m != "worst_case"]
    tail = [m for m in ("worst_case", *SECONDS_NAMES) if m in present]
    return fixed + [m for m in present if m not in fixed and m not in tail] + tail


Row = tuple[str, str, str]
"""A table row: (data, model, attack)."""


def _rows(records: Sequence[dict]) -> list[Row]:
    return list(dict.fromkeys((r["data"], r["model"], r["attack"]) for r in records))


def _lead(recipe: Recipe) -> list[str]:
    """The row headings: data and model when the grid varies them, and the attack."""
    g = recipe.grid
    return [name for name, axis in (("data", g.data), ("model", g.models)) if len(axis) > 1] + ["attack"]


def _head(recipe: Recipe, row: Row) -> list[str]:
    """A row's headings; the clean row's attack reads "none (clean model)"."""
    data, model, attack = row
    shown = {"data": data, "model": model, "attack": f"{CLEAN} (clean model)" if attack == CLEAN else attack}
    return [shown[k] for k in _lead(recipe)]


def _mark(records: Sequence[dict], stale: Collection[str]) -> str:
    return f" {STALE}" if any(r["id"] in stale for r in records) else ""


def _table(title: str, head: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    return "\n".join(
        [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        + ["| " + " | ".join(line) + " |" for line in lines]
    )


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
        for row in _rows(have):
            cells = []
            for method in used:
                chosen = [
                    r for r in have if (r["data"], r["model"], r["attack"], r["method"]) == (*row, method)
                ]
                values = [r["metrics"][metric] for r in chosen]
                text = summarise(values, metric not in SECONDS_NAMES, len(g.seeds)) if values else "–"
                cells.append(text + _mark(chosen, stale))
            lines.append([*_head(recipe, row), *cells])
        title = f"**{metric_title(metric)}** (mean ± std over seeds {', '.join(map(str, g.seeds))})"
        out.append(_table(title, [*_lead(recipe), *used], lines))
    return out


def mend_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """mend's kept model per row and seed ("fst (seed 0), nad (seed 1)"), or None without mend cells."""
    mended = [r for r in records if r["kind"] == MEND]
    if not mended:
        return None
    lines = []
    for row in _rows(mended):
        chosen = sorted(
            (r for r in mended if (r["data"], r["model"], r["attack"]) == row), key=lambda r: r["seed"]
        )
        text = ", ".join(f"{r['info']['chosen']} (seed {r['seed']})" for r in chosen)
        lines.append([*_head(recipe, row), text + _mark(chosen, stale)])
    return _table("**mend's choice** (the model it kept)", [*_lead(recipe), "chosen"], lines)


def detect_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """Neural Cleanse on each row's base models: seeds with the target flagged, the target's anomaly
    index, the largest anomaly index below the median norm, the flagged labels and the smallest-norm
    label of each seed, seconds; None without detect cells."""
    detected = [r for r in records if r["kind"] == DETECT]
    if not detected:
        return None
    seeds = len(recipe.grid.seeds)
    lines = []
    for row in _rows(detected):
        chosen = sorted(
            (r for r in detected if (r["data"], r["model"], r["attack"]) == row), key=lambda r: r["seed"]
        )
        hits = [r["metrics"]["target_flagged"] for r in chosen if "target_flagged" in r["metrics"]]
        index = [
            r["metrics"]["target_anomaly_index"] for r in chosen if "target_anomaly_index" in r["metrics"]
        ]
        lines.append(
            [
                *_head(recipe, row),
                f"{int(sum(hits))} of {len(hits)}" if hits else "–",
                summarise(index, False, seeds, digits=2) if index else "–",
                summarise([r["metrics"]["max_below_median_index"] for r in chosen], False, seeds, digits=2),
                "; ".join(str(r["info"]["flagged"]) for r in chosen),
                "; ".join(str(r["info"]["smallest_norm_label"]) for r in chosen),
                summarise([r["metrics"]["seconds"] for r in chosen], False, seeds) + _mark(chosen, stale),
            ]
        )
    head = [
        "target flagged",
        "target's anomaly index",
        "largest index below the median norm",
        "flagged labels",
        "smallest-norm label",
        "seconds",
    ]
    title = "**Neural Cleanse detection** (per seed: " + ", ".join(map(str, recipe.grid.seeds)) + ")"
    return _table(title, [*_lead(recipe), *head], lines)


def markdown_tables(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str:
    """The Markdown of `records`: the metric tables, then mend's choices and the detection table (when
    the grid has such cells)."""
    tables = metric_tables(recipe, records, stale)
    tables += [t for t in (mend_table(recipe, records, stale), detect_table(recipe, records, stale)) if t]
    return "\n\n".join(tables) + "\n"
