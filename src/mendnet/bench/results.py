"""A grid's results: one tidy CSV (a row per cell and metric), one JSON (a record per cell), and Markdown
tables with mean ± std over seeds (rows: data set, model, attack; columns: methods), where STALE marks a
table cell that includes a stale record (one computed by other code, kept with `--keep-stale`)."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Collection, Sequence

from mendnet.bench.cells import NATURAL, NO_REPAIR
from mendnet.bench.recipe import Recipe

KEYS = ("data", "model", "attack", "method", "seed")
FRACTION_NAMES = {"acc": "ACC", "asr": "ASR", "ra": "RA", "der": "DER", "worst_case": "worst-case accuracy"}
SECONDS_NAMES = {"train_seconds": "training seconds", "seconds": "seconds"}
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


def summarise(values: Sequence[float], percent: bool, seeds: int) -> str:
    """'mean ± std' (sample std over seeds; one value: the value alone); '(n of N seeds)' if incomplete."""
    scaled = [100 * v if percent else v for v in values]
    digits = 2 if percent else 1
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


def markdown_tables(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str:
    """One Markdown table per metric: a row per (data, model, attack), a column per method, each cell the
    mean ± std over the seeds finished, followed by STALE when one of its records' ids is in `stale`.
    Data and model columns appear only when the grid varies them."""
    g = recipe.grid
    methods = (
        ([NO_REPAIR] if g.attacks else [])
        + list(g.repairs)
        + ([NATURAL, *g.robustifiers] if g.robustifiers else [])
    )
    rows = []
    for r in records:
        row = (r["data"], r["model"], r["attack"])
        if row not in rows:
            rows.append(row)
    lead = [name for name, axis in (("data", g.data), ("model", g.models)) if len(axis) > 1] + ["attack"]
    out = []
    for metric in metric_order(records):
        used = [m for m in methods if any(r["method"] == m and metric in r["metrics"] for r in records)]
        percent = metric not in SECONDS_NAMES
        lines = [
            f"**{metric_title(metric)}** (mean ± std over seeds {', '.join(map(str, g.seeds))})",
            "",
            "| " + " | ".join([*lead, *used]) + " |",
            "|" + "---|" * (len(lead) + len(used)),
        ]
        for data, model, attack in rows:
            shown = {"data": data, "model": model, "attack": attack}
            cells = []
            for method in used:
                used_records = [
                    r
                    for r in records
                    if (r["data"], r["model"], r["attack"], r["method"]) == (data, model, attack, method)
                    and metric in r["metrics"]
                ]
                values = [r["metrics"][metric] for r in used_records]
                mark = f" {STALE}" if any(r["id"] in stale for r in used_records) else ""
                cells.append(summarise(values, percent, len(g.seeds)) + mark if values else "–")
            lines.append("| " + " | ".join([*(shown[k] for k in lead), *cells]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"
