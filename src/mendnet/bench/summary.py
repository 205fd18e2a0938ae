"""The one-screen summary at the top of docs/benchmarks.md (`mendnet bench --summary`): per backdoored row
of the repair grids the best repair by one rule (RULE), per robust row each method's AutoAttack accuracy,
each with mean ± std over seeds and a link to the section its figures come from. It reads the results
folders' results.json (the records `run.write_results` keeps); the figures are the records' fractions,
shown in percent, ACC drops in points."""

from __future__ import annotations

import json
import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from mendnet.bench.code import short_code
from mendnet.bench.docs import SUMMARY, anchor
from mendnet.bench.grid import CLEAN, MEND, NATURAL, NO_REPAIR
from mendnet.bench.markdown import STALE, Row, mark, rows_of, summarise, table
from mendnet.bench.results import MISSING, row_seeds
from mendnet.errors import MendnetError
from mendnet.robust.evaluation import AA_PGD

TITLE = "Summary"
RESULTS = "results.json"
MAX_DROP = 1.0
"""The largest mean ACC drop from no repair (points) of a column the rule may choose."""
TOLERANCE = 1e-9
"""Points by which a drop may exceed MAX_DROP through float rounding and still count as within it."""
REPAIR_KINDS = ("repair", MEND)
"""The kinds of the records that are repair columns (no repair, detect and retune cells are not)."""
RULE = (
    "among the repair columns with every seed finished (mend included; not the unrepaired model `none`, not "
    f"detect), the lowest mean ASR among those whose mean ACC is at most {MAX_DROP:g} point below the "
    "unrepaired model's (a tie: the higher mean ACC); when no column qualifies, the row says so and names "
    "the lowest-ASR column with its ACC drop. A row is judged on the seeds on which its unrepaired model "
    "finished (a backdoor that could not be planted on one seed leaves that seed out), and its figures "
    "then say how many of the grid's seeds they cover"
)


@dataclass(frozen=True)
class Folder:
    """A results folder as the summary reads it: its path, its recipe's name and title, the grid's seeds,
    its cells (all, finished), the code identity its results were written with, the ids of its stale
    records and its finished records (metrics as fractions)."""

    path: Path
    recipe: str
    title: str
    seeds: tuple[int, ...]
    cells: int
    finished: int
    code: dict[str, str]
    stale: frozenset[str]
    records: tuple[dict, ...]

    def link(self) -> str:
        """A Markdown link to the folder's section: its recipe's name, pointing at its heading."""
        return f"[{self.recipe}](#{anchor(self.title)})"


@dataclass(frozen=True)
class Figures:
    """One column's records on one row that carry `metrics` (fractions), one per finished seed."""

    column: str
    records: tuple[dict, ...]

    def values(self, metric: str) -> list[float]:
        """The fractions of `metric` over the records that have it."""
        return [r["metrics"][metric] for r in self.records if metric in r["metrics"]]

    def mean(self, metric: str) -> float:
        """The mean fraction of `metric` over the records."""
        values = self.values(metric)
        return sum(values) / len(values)

    def done(self) -> set[int]:
        """The seeds with a record that has ACC and ASR."""
        return {r["seed"] for r in self.records if "acc" in r["metrics"] and "asr" in r["metrics"]}

    def finished(self, seeds: Collection[int]) -> bool:
        """Whether every seed of `seeds` has a record with ACC and ASR."""
        return set(seeds) <= self.done()


@dataclass(frozen=True)
class Pick:
    """The rule's outcome on a row: whether no repair (`none`) has every seed finished, `chosen` (None:
    no repair, or every repair column, lacks a finished seed), its mean ACC drop from no repair in points
    and whether it is within MAX_DROP, and the columns left out for a seed without figures."""

    none: Figures
    none_finished: bool
    chosen: Figures | None
    drop: float | None
    within: bool
    left_out: tuple[str, ...]


def acc_drop(none: Figures, column: Figures) -> float:
    """The column's mean ACC drop from no repair, in points (positive: the repair lost accuracy)."""
    return 100 * (none.mean("acc") - column.mean("acc"))


def pick_repair(none: Figures, columns: Sequence[Figures], seeds: Collection[int]) -> Pick:
    """The best repair of a row by RULE: among `columns` with every seed of `seeds` finished, the lowest
    mean ASR (a tie: the higher mean ACC, then the earlier column) among those whose mean ACC drop from
    `none` is at most MAX_DROP points; when none is, the lowest-ASR finished column, not `within`."""
    finished = [c for c in columns if c.finished(seeds)]
    left_out = tuple(c.column for c in columns if not c.finished(seeds))
    if not finished or not none.finished(seeds):
        return Pick(none, none.finished(seeds), None, None, False, left_out)
    drops = {c.column: acc_drop(none, c) for c in finished}
    within = [c for c in finished if drops[c.column] <= MAX_DROP + TOLERANCE]
    best = min(within or finished, key=lambda c: (c.mean("asr"), -c.mean("acc")))
    return Pick(none, True, best, drops[best.column], bool(within), left_out)


def _column(records: Sequence[dict], row: Row, column: str) -> Figures:
    """The Figures of `column` on `row`: its records with metrics."""
    chosen = [
        r
        for r in records
        if (r["data"], r["model"], r["attack"], r["method"]) == (*row, column) and r["metrics"]
    ]
    return Figures(column, tuple(chosen))


def repair_picks(folder: Folder) -> list[tuple[Row, Pick]]:
    """The rule's pick on each backdoored row of `folder` that has repair columns (the clean row and the
    robust rows left out), rows and columns in the order their records first appear, each row judged on
    its `row_seeds`."""
    records = folder.records
    repaired = [r for r in records if r["kind"] in REPAIR_KINDS and r["attack"] not in (CLEAN, NATURAL)]
    out = []
    for row in rows_of(repaired):
        on_row = [r for r in repaired if (r["data"], r["model"], r["attack"]) == row]
        columns = [_column(on_row, row, c) for c in dict.fromkeys(r["method"] for r in on_row)]
        none = _column(records, row, NO_REPAIR)
        out.append((row, pick_repair(none, columns, row_seeds(records, row, folder.seeds))))
    return out


def _best_cell(pick: Pick) -> str:
    """The best-repair cell: the chosen column, or why there is none within the ACC bound, and the
    columns left out."""
    if not pick.none_finished:
        text = "no choice: the unrepaired model has no finished seed"
    elif pick.chosen is None:
        text = "no choice: no repair column has every seed finished"
    elif pick.within:
        text = pick.chosen.column
    else:
        text = f"no column within {MAX_DROP:g} point; lowest ASR: {pick.chosen.column}"
    if pick.left_out:
        text += f" (left out, a seed without figures: {', '.join(pick.left_out)})"
    return text


def _figure(column: Figures, metric: str, seeds: int, stale: Collection[str], missing: str) -> str:
    """A column's `metric` in percent as mean ± std over its seeds (STALE on a stale record), or
    `missing`."""
    values = column.values(metric)
    if not values:
        return missing
    return summarise(values, True, seeds) + mark([r for r in column.records if metric in r["metrics"]], stale)


def poisoned_percent(none: Figures) -> str:
    """The poisoning rate of a row's unrepaired models (their specs' `poison.rate`, a fraction of the
    training set) in percent, or MISSING for records that do not name it; rates that differ between seeds
    are all listed."""
    rates = dict.fromkeys(
        r["spec"]["poison"]["rate"] for r in none.records if "rate" in r.get("spec", {}).get("poison", {})
    )
    return " / ".join(f"{100 * rate:g}" for rate in rates) or MISSING


def repair_line(folder: Folder, row: Row, pick: Pick) -> list[str]:
    """A row of the repair table: data and model, attack, its poisoning rate (percent), the best repair, its
    ACC and ASR (percent, mean ± std), its ACC drop (points), the unrepaired model's ASR (percent) and the
    section's link; STALE on figures that include a stale record."""
    data, model, attack = row
    seeds, stale = len(folder.seeds), folder.stale
    chosen, none = pick.chosen, pick.none
    figures = [MISSING, MISSING, MISSING]
    if chosen is not None:
        figures = [
            _figure(chosen, "acc", seeds, stale, MISSING),
            _figure(chosen, "asr", seeds, stale, MISSING),
            f"{pick.drop:.2f}" + mark([*chosen.records, *none.records], stale),
        ]
    before = _figure(none, "asr", seeds, stale, MISSING)
    rate = poisoned_percent(none)
    return [f"{data}, {model}", attack, rate, _best_cell(pick), *figures, before, folder.link()]


def repair_table(folders: Sequence[Folder]) -> str | None:
    """The table of the best repair per backdoored row of every folder, or None without such rows."""
    lines = [repair_line(f, row, pick) for f in folders for row, pick in repair_picks(f)]
    if not lines:
        return None
    heads = [
        "data, model",
        "attack",
        "poisoned %",
        "best repair",
        "ACC %",
        "ASR %",
        "ACC drop (points)",
        "unrepaired ASR %",
    ]
    return table("**Best repair per attack**", [*heads, "section"], lines)


def robust_columns(folder: Folder) -> list[tuple[Row, Figures]]:
    """Each robust row's columns (natural first, then the robustifiers, as their records first appear)
    with their records that have figures."""
    robust = [r for r in folder.records if r["attack"] == NATURAL and r["kind"] in ("base", "robustify")]
    out = []
    for row in rows_of(robust):
        on_row = [r for r in robust if (r["data"], r["model"], r["attack"]) == row]
        out += [(row, _column(on_row, row, c)) for c in dict.fromkeys(r["method"] for r in on_row)]
    return out


def robust_line(folder: Folder, row: Row, column: Figures) -> list[str]:
    """A row of the robust table: data and model, the method, its AutoAttack accuracy ("not measured"
    without one), PGD-20's, clean ACC (percent, mean ± std over seeds) and the section's link."""
    data, model, _ = row
    seeds, stale = len(folder.seeds), folder.stale
    return [
        f"{data}, {model}",
        column.column,
        _figure(column, "autoattack", seeds, stale, "not measured"),
        _figure(column, AA_PGD, seeds, stale, MISSING),
        _figure(column, "acc", seeds, stale, MISSING),
        folder.link(),
    ]


def robust_table(folders: Sequence[Folder]) -> str | None:
    """The table of AutoAttack robust accuracy per robust column of every folder, or None without one."""
    lines = [robust_line(f, row, column) for f in folders for row, column in robust_columns(f)]
    if not lines:
        return None
    heads = ["data, model", "method", "AutoAttack %", "PGD-20 %", "clean ACC %", "section"]
    return table("**AutoAttack robust accuracy per robustness method**", heads, lines)


def provenance_line(folders: Sequence[Folder], command: str, commit: str, date: str) -> str:
    """Where the summary's figures come from: each folder with its recipe, its finished cells and the code
    its results were written with; the command, the commit (as `docs.commit_text` words it), the date."""
    parts = [
        f"`{f.path}` (recipe `{f.recipe}`, {f.finished} of {f.cells} cells, {short_code(f.code)})"
        for f in folders
    ]
    return f"Folders {', '.join(parts)}; command `{command}`, {commit}, {date}."


def summary_text(folders: Sequence[Folder], provenance: str, title: str = TITLE) -> str:
    """The summary section's Markdown: heading (`title`), provenance, the rule (with a repair table), the
    repair and robust tables, and the stale mark's note when a figure carries it."""
    repairs = repair_table(folders)
    tables = [t for t in (repairs, robust_table(folders)) if t]
    rule = f"Best repair: {RULE}. " if repairs else ""
    lines = [
        f"## {title}",
        "",
        provenance,
        "",
        f"{rule}Every figure is in percent (ACC drop: points), the mean ± std over seeds, and comes from "
        "the section named beside it.",
        "",
        "\n\n".join(tables) if tables else "(no repair or robust rows in these folders)",
    ]
    if any(STALE in t for t in tables):
        lines += [
            "",
            f"{STALE}: the figure includes cells computed by other code than the one its folder's "
            "results.json names (kept by `--keep-stale`).",
        ]
    return "\n".join(lines)


def summary_command(folders: Sequence[Path], doc: Path | None, section: str = SUMMARY) -> str:
    """The `mendnet bench --summary` command, as the provenance quotes it (`--section` unless SUMMARY)."""
    argv = ["mendnet", "bench", "--summary", *map(str, folders)]
    argv += ["--doc", str(doc)] if doc is not None else []
    return shlex.join([*argv, "--section", section] if section != SUMMARY else argv)


def part_title(section: str) -> str:
    """The heading of the summary's section `section`: TITLE, or for a part "Summary: NAME"
    (section "summary_NAME")."""
    return TITLE if section == SUMMARY else f"{TITLE}: {section.removeprefix(SUMMARY + '_')}"


def _validation(records: Sequence[dict]) -> bool:
    """Whether the records were measured on the validation split (a selection run)."""
    return any("evaluate_on" in r.get("spec", {}) for r in records)


RESULT_KEYS = ("recipe", "title", "smoke", "cells", "finished", "code", "stale", "records")
"""The keys of results.json the summary reads (`run.write_results` writes them all)."""


def _results(path: Path) -> dict:
    """The contents of `path`'s results.json; a one-line error for a missing folder or one without a
    readable results.json of `mendnet bench`."""
    if not path.is_dir():
        raise MendnetError(f"results folder {path} does not exist")
    try:
        data = json.loads((path / RESULTS).read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or not all(k in data for k in RESULT_KEYS):
        raise MendnetError(f"{path} holds no readable {RESULTS} of `mendnet bench RECIPE --out {path}`")
    return data


def read_results(path: Path) -> Folder:
    """The Folder of the results folder `path` (its results.json). The grid's seeds are results.json's;
    a folder written before it recorded them: the seeds of its records. One-line errors for a missing
    folder, one without readable results, a --smoke run and a selection run."""
    data = _results(path)
    records = tuple(data["records"])
    if data["smoke"]:
        raise MendnetError(f"{path} holds a --smoke run: its numbers are not results")
    if _validation(records):
        raise MendnetError(f"{path} holds a selection run (figures on the validation split), not results")
    seeds = data.get("seeds") or sorted({r["seed"] for r in records})
    return Folder(
        path=path,
        recipe=data["recipe"],
        title=data["title"],
        seeds=tuple(seeds),
        cells=data["cells"],
        finished=data["finished"],
        code=data["code"],
        stale=frozenset(data["stale"]),
        records=records,
    )
