"""Mend's pages: report.html (self-contained) and report.md, from the run's record (`MendResult.record`)
and, when the caller measured them, test-set figures of the untouched and the kept model."""

from __future__ import annotations

from typing import Any

from mendnet.detect.reversed_trigger import TRIGGER_PNG
from mendnet.mend.decide import ORIGINAL
from mendnet.report.html import Figure, Section, Table, html_page, markdown_page

TITLE = "mendnet mend"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def settings_text(settings: dict[str, Any]) -> str:
    """A candidate's settings as one line: `name value` pairs in the config's order."""
    return ", ".join(f"{k} {v}" for k, v in settings.items())


def sections(record: dict[str, Any], files: dict[str, bytes | str], classes: list[str]) -> list[Section]:
    """Decision, candidates' validation scores, scan, seconds (and test figures when recorded)."""
    suspects = record["suspects"]
    decision = Section(
        "Decision",
        [
            f"Kept: `{record['chosen']}`"
            + (" (the model is unchanged)." if record["chosen"] == ORIGINAL else "."),
            record["reason"] + ".",
            "Every figure below comes from the defender's clean images alone: "
            f"{record['parts']['repair_train'] + record['parts']['repair_val']} repair images and "
            f"{record['parts']['mend_val']} validation images; no test image and no recorded trigger.",
        ],
    )
    qualified = set(record["qualified"])
    rescored = all("scan_proxy" in s for s in record["scores"])
    again = [f"scan trigger's ASR, label {k}" for k in suspects] if rescored else []
    rows = [
        [
            s["name"],
            pct(s["acc"]),
            *(pct(s["proxy"][str(k)]) for k in suspects),
            *(pct(s["scan_proxy"][str(k)]) for k in suspects if rescored),
            pct(s["worst"]),
            "yes" if s["name"] in qualified else ("" if s["name"] == ORIGINAL else "no"),
            f"{record['seconds'].get(s['name'], 0):.0f}" if s["name"] != ORIGINAL else "",
        ]
        for s in record["scores"]
    ]
    rows += [
        [name, "–", *("–" for _ in [*suspects, *again]), "–", "could not run", ""]
        for name, c in record["candidates"].items()
        if "error" in c
    ]
    chosen_row = frozenset(i for i, s in enumerate(record["scores"]) if s["name"] == record["chosen"])
    scores = Section(
        "Candidates on mend's validation part",
        [
            "Validation accuracy and, per suspect label, the proxy ASR: the share of validation images of "
            "other labels that the label's reversed trigger sends to it (percent)"
            + (
                "; the trigger is reversed again on each model, from the scan's (`rescore_epochs`), and "
                "the scan's own trigger's success is shown beside."
                if rescored
                else "."
            ),
            Table(
                [
                    "model",
                    "val ACC",
                    *(f"proxy ASR, label {k}" for k in suspects),
                    *again,
                    "worst proxy",
                    "qualified",
                    "seconds",
                ],
                rows,
                chosen_row,
            ),
        ],
    )
    for name, c in record["candidates"].items():
        if "error" in c:
            scores.blocks.append(f"`{name}` could not run: {c['error']}")
    settings = [
        [name, settings_text(c["settings"])] for name, c in record["candidates"].items() if "settings" in c
    ]
    if settings:
        scores.blocks += [
            "Each candidate's settings (the scan's reversed trigger goes to those that take one):",
            Table(["candidate", "settings"], settings),
        ]
    scan = record["scan"]
    flagged = set(record["flagged"])
    stopped = set(scan["stopped_by_focus"])
    at_focus = scan.get("focus_anomaly_index")
    flag_index = scan["anomaly_index"] if at_focus is None else at_focus
    scan_rows = [
        [
            str(k),
            classes[k] if k < len(classes) else "",
            f"{norm:.1f}" + (" (≤, stopped by focus)" if k in stopped else ""),
            "inf" if index is None else f"{index:.2f}",
            str(scan["epochs"][k]),
            "yes" if k in flagged else "",
        ]
        for k, (norm, index) in enumerate(zip(scan["norms"], flag_index, strict=True))
    ]
    index_text = (
        "its anomaly index on the final norms"
        if at_focus is None
        else "its anomaly index on the norms at the focus point, where every label had run the same "
        "epochs (flags are taken there)"
    )
    verdict = f"Flagged: label {', '.join(map(str, sorted(flagged)))}." if flagged else "No label flagged."
    scan_section = Section(
        "Scan (Neural Cleanse with focus)",
        [
            f"{verdict} Suspects: {', '.join(map(str, suspects))}. Per label the reversed mask's ‖m‖₁ "
            f"(pixels), {index_text} (flagged above 2, below the median) and the epochs it ran; "
            f"{record['seconds']['scan']:.0f} s.",
            Table(
                ["label", "class", "‖m‖₁", "anomaly index", "epochs", "flagged"],
                scan_rows,
                frozenset(k for k in range(len(scan_rows)) if k in flagged),
            ),
        ],
    )
    if TRIGGER_PNG in files:
        scan_section.blocks.append(
            Figure(files[TRIGGER_PNG], TRIGGER_PNG, "Reversed mask, pattern and trigger of every label")
        )
    out = [decision, scores, scan_section]
    test = record.get("test")
    if test:
        keys = [k for k in ("acc", "asr", "ra") if k in test["original"]]
        out.append(
            Section(
                "On the test set (measured after the decision)",
                [
                    "The decision above never saw these figures; percent. The candidates' rows show "
                    "what each would have given.",
                    Table(
                        ["model", *(k.upper() for k in keys)],
                        [
                            *([name, *(pct(test[name][k]) for k in keys)] for name in ("original", "kept")),
                            *(
                                [f"candidate {name}", *(pct(m[k]) for k in keys)]
                                for name, m in test.get("candidates", {}).items()
                            ),
                        ],
                    ),
                ],
            )
        )
    timing = Section(
        "Seconds",
        [Table(["step", "seconds"], [[step, f"{s:.0f}"] for step, s in record["seconds"].items()])],
    )
    return [*out, timing]


def render_pages(
    record: dict[str, Any], files: dict[str, bytes | str], classes: list[str], subtitle: str
) -> tuple[str, str]:
    """(report.html, report.md) of a mend run."""
    parts = sections(record, files, classes)
    return html_page(TITLE, parts, subtitle), markdown_page(TITLE, parts, subtitle)
