"""The pieces every Markdown table of a grid's results is built from: rows (data, model, attack), their
headings, mean ± std over seeds, the stale mark, and a table of per-seed notes."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Collection, Sequence

from mendnet.bench.grid import CLEAN
from mendnet.bench.recipe import Recipe

STALE = "†"

Row = tuple[str, str, str]
"""A table row: (data, model, attack)."""


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


def rows_of(records: Sequence[dict]) -> list[Row]:
    """The rows of `records`, in the order they first appear."""
    return list(dict.fromkeys((r["data"], r["model"], r["attack"]) for r in records))


def lead(recipe: Recipe) -> list[str]:
    """The row headings: data and model when the grid varies them, and the attack."""
    g = recipe.grid
    return [name for name, axis in (("data", g.data), ("model", g.models)) if len(axis) > 1] + ["attack"]


def head(recipe: Recipe, row: Row) -> list[str]:
    """A row's headings; the clean row's attack reads "none (clean model)"."""
    data, model, attack = row
    shown = {"data": data, "model": model, "attack": f"{CLEAN} (clean model)" if attack == CLEAN else attack}
    return [shown[k] for k in lead(recipe)]


def mark(records: Sequence[dict], stale: Collection[str]) -> str:
    """STALE (after a space) when one of `records` is stale, else nothing."""
    return f" {STALE}" if any(r["id"] in stale for r in records) else ""


def table(title: str, heads: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """A Markdown table under a title line."""
    return "\n".join(
        [title, "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        + ["| " + " | ".join(line) + " |" for line in lines]
    )


def seed_table(
    recipe: Recipe,
    records: Sequence[dict],
    title: str,
    note: Callable[[dict], str],
    stale: Collection[str] = (),
) -> str | None:
    """A table of per-seed notes: a row per (data, model, attack) of `records`, a column per method, each
    cell the `note` of each seed's record ("seed 0: ...; seed 1: ..."); None without records."""
    if not records:
        return None
    methods = list(dict.fromkeys(r["method"] for r in records))
    lines = []
    for row in rows_of(records):
        cells = []
        for method in methods:
            chosen = sorted(
                (r for r in records if (r["data"], r["model"], r["attack"], r["method"]) == (*row, method)),
                key=lambda r: r["seed"],
            )
            text = "; ".join(f"seed {r['seed']}: {note(r)}" for r in chosen)
            cells.append((text or "–") + mark(chosen, stale))
        lines.append([*head(recipe, row), *cells])
    return table(title, [*lead(recipe), *methods], lines)
