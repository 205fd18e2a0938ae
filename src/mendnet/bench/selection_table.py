"""The table of each selection rule (`mendnet.bench.selection`) in a recipe's results: per backdoored row,
every candidate's validation figures per seed and their means, whether it qualifies, and the rule's
choice under the rule's text."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from mendnet.bench.grid import CLEAN
from mendnet.bench.markdown import Row, head, mark, rows_of, table
from mendnet.bench.recipe import Recipe
from mendnet.bench.selection import METRICS, Choice, Figures, Rule, choose, mean_of

SHOWN = ("acc", "asr")
"""The figures every candidate's cells show, the rule's metric added when it is another."""


def column_records(records: Sequence[dict], row: Row, column: str) -> list[dict]:
    """The records of repair column `column` on `row` (one per finished seed)."""
    return [
        r
        for r in records
        if r["kind"] == "repair" and (r["data"], r["model"], r["attack"], r["method"]) == (*row, column)
    ]


def _cell(figures: Figures, shown: Sequence[str], seeds: Sequence[int]) -> str:
    """The `shown` figures of `seeds` (their mean when several) in percent, joined by " / "."""
    if any(s not in figures or any(m not in figures[s] for m in shown) for s in seeds):
        return "–"
    return " / ".join(f"{100 * mean_of(figures, m, seeds):.2f}" for m in shown)


def _standing(rule: Rule, name: str, figures: Figures, seeds: Sequence[int], choice: Choice) -> str:
    """The candidate's standing: chosen, qualifies, why it does not, or not finished."""
    if name == choice.chosen:
        return "**chosen**"
    if any(s not in figures for s in seeds):
        return "not finished"
    return rule.shortfall(figures, seeds) or "qualifies"


def rule_table(
    recipe: Recipe, name: str, rule: Rule, records: Sequence[dict], row: Row, stale: Collection[str]
) -> str:
    """The table of rule `name` on `row`: a line per candidate (its figures per seed, their means when
    the grid has several seeds, its standing; STALE when one of its records is stale), the rule's text
    in the title and its choice under the table."""
    seeds = recipe.grid.seeds
    shown = [*SHOWN, *([rule.metric] if rule.metric not in SHOWN else [])]
    names = " / ".join(METRICS[m] for m in shown)
    heads = [f"{names} %, seed {s}" for s in seeds] + ([f"mean {names} %"] if len(seeds) > 1 else [])
    taken = {c: column_records(records, row, c) for c in rule.candidates}
    figures = {c: {r["seed"]: r["metrics"] for r in taken[c]} for c in rule.candidates}
    choice = choose(rule, figures, seeds)
    lines = []
    for column in rule.candidates:
        cells = [_cell(figures[column], shown, [s]) for s in seeds]
        if len(seeds) > 1:
            cells.append(_cell(figures[column], shown, seeds))
        label = f"{column} (default)" if column == rule.default else column
        standing = _standing(rule, column, figures[column], seeds, choice) + mark(taken[column], stale)
        lines.append([label, *cells, standing])
    where = ", ".join(head(recipe, row))
    rule_text = f"rule, fixed before the run: {rule.text(seeds)}"
    title = f"**Selection `{name}`** ({where}; validation figures; {rule_text})"
    text = table(title, ["candidate", *heads, "standing"], lines)
    return f"{text}\n\nChosen by the rule: {choice.text()}."


def selection_tables(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> list[str]:
    """Each selection rule's `rule_table` on each backdoored row with a record of its candidates."""
    out = []
    for name, rule in recipe.select.items():
        taken = [r for r in records if r["kind"] == "repair" and r["method"] in rule.candidates]
        for row in rows_of([r for r in taken if r["attack"] != CLEAN]):
            out.append(rule_table(recipe, name, rule, taken, row, stale))
    return out
