"""Result tables: metrics are fractions in files and percent in tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

PERCENT_KEYS = ("acc", "asr", "ra", "der")
LABELS = {
    "acc": "ACC %",
    "asr": "ASR %",
    "ra": "RA %",
    "der": "DER %",
    "seconds": "seconds",
    "train_seconds": "train s",
}


def columns_of(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for metrics in rows.values():
        for key in metrics:
            if key in LABELS and key not in seen:
                seen.append(key)
    order = [*PERCENT_KEYS, "seconds", "train_seconds"]
    return sorted(seen, key=order.index)


def cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key in PERCENT_KEYS:
        return f"{100 * float(value):.2f}"
    return f"{float(value):.1f}"


def markdown_table(rows: Mapping[str, Mapping[str, Any]], first: str = "model") -> str:
    """A Markdown table, one row per name, columns the known metrics present."""
    cols = columns_of(rows)
    lines = [
        "| " + " | ".join([first, *(LABELS[c] for c in cols)]) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for name, metrics in rows.items():
        lines.append("| " + " | ".join([name, *(cell(c, metrics.get(c)) for c in cols)]) + " |")
    return "\n".join(lines) + "\n"


def print_table(rows: Mapping[str, Mapping[str, Any]], title: str = "", first: str = "model") -> None:
    """Print the same table to the terminal (stdout)."""
    cols = columns_of(rows)
    table = Table(title=title or None)
    table.add_column(first)
    for c in cols:
        table.add_column(LABELS[c], justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *(cell(c, metrics.get(c)) for c in cols))
    Console().print(table)


def print_detection_table(rows: list[Mapping[str, Any]], title: str = "") -> None:
    """Print Neural Cleanse's per-label rows (label, class, ‖m‖₁ in pixels, anomaly index, flagged)."""
    table = Table(title=title or None)
    for name in ("label", "class", "‖m‖₁", "anomaly index", "flagged"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for row in rows:
        index = row["anomaly_index"]
        table.add_row(
            str(row["label"]),
            str(row.get("class", "")),
            f"{row['norm']:.1f}" + ("" if row["reached"] else " (not reached)"),
            "inf" if index is None else f"{index:.2f}",
            "yes" if row["flagged"] else "",
        )
    Console().print(table)
