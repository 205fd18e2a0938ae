"""Signs of gradient masking in a robustness report (the robust table's note and AutoAttack's flag): the
cell metrics they rest on, and the flags table of the robust rows; and, under run.aa_check, the table of
mendnet's AutoAttack against the authors' package called directly (issue 27).

masking_gap: PGD-L∞-20's robust accuracy minus the worst case over every attack; a robust row whose mean
gap over seeds exceeds MASKING_GAP is flagged (gradient-based PGD holds up where other attacks break the
model). aa_gap: PGD-L∞-20 minus AutoAttack on AutoAttack's images; aa_gap_flag (1 or 0) says it exceeds
`threats.adversarial.autoattack.PGD_GAP_FLAG`, as `robust.evaluation.robust_metrics` flags it.
aa_package, aa_package_diff, aa_package_seconds, aa_package_flag: the package's robust accuracy on
AutoAttack's images, mendnet's minus it (fractions), its seconds, and (1 or 0) |difference| above
`PACKAGE_DIFF_FLAG`, as `robust.evaluation.package_check` flags it."""

from __future__ import annotations

import statistics
from collections.abc import Collection, Sequence
from typing import Any

from mendnet.bench.grid import NATURAL
from mendnet.bench.markdown import head, lead, mark, rows_of, table
from mendnet.bench.recipe import Recipe
from mendnet.robust.evaluation import AA_PGD
from mendnet.threats.adversarial.autoattack import PACKAGE_DIFF_FLAG

MASKING_GAP = 0.10
"""PGD-20 minus the worst case above this: suspected gradient masking."""
FLAG = "aa_gap_flag"
PACKAGE_METRICS = {
    "aa_package": "robust",
    "aa_package_diff": "difference",
    "aa_package_seconds": "seconds",
    "aa_package_flag": "flag",
}
"""A cell's metric → its key in the package check's record (`robust.evaluation.package_check`)."""


def report_metrics(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A robustness report (`robust_metrics`) as a cell's metrics, with masking_gap and, when AutoAttack
    ran, aa_gap, aa_seconds and aa_gap_flag (0 or 1), with its check against the authors' package the
    PACKAGE_METRICS (the flag 0 or 1), and the info kept beside them (AutoAttack's record: images,
    version, which component broke how many images, warnings, the package check)."""
    metrics = {k: v for k, v in report.items() if k not in ("aa", FLAG)}
    # the worst case counts PGD-20 too, so the gap is ≥ 0 but for rounding (float32 means)
    metrics["masking_gap"] = max(0.0, report[AA_PGD] - report["worst_case"])
    info: dict[str, Any] = {}
    aa = report.get("aa")
    if aa is not None:
        metrics.update(aa_gap=aa["pgd_gap"], aa_seconds=aa["seconds"], **{FLAG: float(report[FLAG])})
        info["aa"] = aa
        if "package" in aa:
            metrics.update({name: float(aa["package"][key]) for name, key in PACKAGE_METRICS.items()})
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


def _package_cells(record: dict, stale: Collection[str]) -> list[str]:
    """A checked record's cells: AutoAttack's images, version and ε, mendnet's and the package's robust
    accuracy (percent), mendnet's minus the package's (points), both runs' seconds, the flag."""
    m, info = record["metrics"], record["info"]
    return [
        str(info["aa"]["images"]),
        info["aa"]["version"],
        f"{info['eps_linf']:.4g}",
        f"{100 * m['autoattack']:.2f}",
        f"{100 * m['aa_package']:.2f}",
        f"{100 * m['aa_package_diff']:+.2f}",
        f"{m['aa_seconds']:.1f}",
        f"{m['aa_package_seconds']:.1f}",
        ("flagged" if m["aa_package_flag"] else "–") + mark([record], stale),
    ]


def package_table(recipe: Recipe, records: Sequence[dict], stale: Collection[str] = ()) -> str | None:
    """mendnet's AutoAttack against the authors' package called directly (run.aa_check): a line per robust
    row, column (natural and each robustifier) and seed that ran the check (`_package_cells`); None
    without one."""
    checked = [r for r in records if "aa_package" in r["metrics"]]
    if not checked:
        return None
    lines = []
    for row in rows_of(checked):
        for method in (NATURAL, *recipe.grid.robustifiers):
            chosen = [
                r for r in checked if (r["data"], r["model"], r["attack"], r["method"]) == (*row, method)
            ]
            for record in sorted(chosen, key=lambda r: r["seed"]):
                lines.append(
                    [*head(recipe, row), method, str(record["seed"]), *_package_cells(record, stale)]
                )
    heads = ["column", "seed", "images", "version", "ε", "mendnet %", "package %", "difference (points)"]
    heads += ["mendnet seconds", "package seconds", "flag"]
    title = (
        "**AutoAttack against the authors' package** (mendnet's `autoattack` and pyautoattack's "
        "`run_standard_evaluation` called directly on the same first images with the same ε, version, "
        "seed and batch size: robust accuracy, difference mendnet − package, flagged above "
        f"{100 * PACKAGE_DIFF_FLAG:.1f} points)"
    )
    return table(title, [*lead(recipe), *heads], lines)
