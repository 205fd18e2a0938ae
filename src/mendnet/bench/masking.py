"""Signs of gradient masking in a robustness report (benchmarks/robust_table.py's note and AutoAttack's
flag): the cell metrics they rest on, and the flags table of the robust rows.

masking_gap: PGD-L∞-20's robust accuracy minus the worst case over every attack; a robust row whose mean
gap over seeds exceeds MASKING_GAP is flagged (gradient-based PGD holds up where other attacks break the
model). aa_gap: PGD-L∞-20 minus AutoAttack on AutoAttack's images; aa_gap_flag (1 or 0) says it exceeds
`threats.adversarial.autoattack.PGD_GAP_FLAG`, as `robust.evaluation.robust_metrics` flags it."""

from __future__ import annotations

import statistics
from collections.abc import Collection, Sequence
from typing import Any

from mendnet.bench.grid import NATURAL
from mendnet.bench.markdown import head, lead, mark, rows_of, table
from mendnet.bench.recipe import Recipe
from mendnet.robust.evaluation import AA_PGD

MASKING_GAP = 0.10
"""(benchmarks/robust_table.py's) PGD-20 minus the worst case above this: suspected gradient masking."""
FLAG = "aa_gap_flag"


def report_metrics(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A robustness report (`robust_metrics`) as a cell's metrics, with masking_gap and, when AutoAttack
    ran, aa_gap, aa_seconds and aa_gap_flag (0 or 1), and the info kept beside them (AutoAttack's
    record: images, version, which component broke how many images, warnings)."""
    metrics = {k: v for k, v in report.items() if k not in ("aa", FLAG)}
    # the worst case counts PGD-20 too, so the gap is ≥ 0 but for rounding (float32 means)
    metrics["masking_gap"] = max(0.0, report[AA_PGD] - report["worst_case"])
    info: dict[str, Any] = {}
    aa = report.get("aa")
    if aa is not None:
        metrics.update(aa_gap=aa["pgd_gap"], aa_seconds=aa["seconds"], **{FLAG: float(report[FLAG])})
        info["aa"] = aa
    return metrics, info


def _flags(chosen: Sequence[dict]) -> str:
    gaps = [r["metrics"]["masking_gap"] for r in chosen if "masking_gap" in r["metrics"]]
    flags = [r["metrics"][FLAG] for r in chosen if FLAG in r["metrics"]]
    notes = []
    if gaps and statistics.mean(gaps) > MASKING_GAP:
        notes.append(
            f"suspected gradient masking (PGD-20 − worst case {100 * statistics.mean(gaps):.1f} points)"
        )
    if sum(flags):
        notes.append(f"AutoAttack gap flagged on {int(sum(flags))} of {len(flags)} seeds")
    return "; ".join(notes) or "–"


def masking_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """The robust rows' flags: per column (natural and each robustifier), a mean masking gap over
    MASKING_GAP and the seeds whose AutoAttack gap is flagged ("–": none); None without robust rows."""
    robust = [r for r in records if r["attack"] == NATURAL and "masking_gap" in r["metrics"]]
    if not robust:
        return None
    columns = [m for m in (NATURAL, *recipe.grid.robustifiers) if any(r["method"] == m for r in robust)]
    lines = []
    for row in rows_of(robust):
        cells = []
        for method in columns:
            chosen = [
                r for r in robust if (r["data"], r["model"], r["attack"], r["method"]) == (*row, method)
            ]
            cells.append(_flags(chosen) + mark(chosen, stale))
        lines.append([*head(recipe, row), *cells])
    title = (
        f"**Gradient-masking flags** (PGD-20 − worst case above {100 * MASKING_GAP:.0f} points, mean over "
        "seeds; AutoAttack's gap to PGD-20 flagged by the robustness report)"
    )
    return table(title, [*lead(recipe), *columns], lines)
