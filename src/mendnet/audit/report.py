"""The audit's pages: report.html (self-contained) and report.md, from one list of sections."""

from __future__ import annotations

from typing import Any

from mendnet.detect.reversed_trigger import TRIGGER_PNG
from mendnet.report.html import Figure, Section, Table, html_page, markdown_page

TITLE = "mendnet audit"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def sections(report: dict[str, Any], files: dict[str, bytes | str]) -> list[Section]:
    """The report's sections: summary and advice, accuracy, detection, robustness, attention."""
    classes = report["classes"]
    det, robust, clean, att = report["detection"], report["robust"], report["clean"], report["attention"]
    summary = Section("Advice", list(report["advice"]))
    rows = [["clean accuracy (ACC)", pct(clean["acc"])]]
    if "asr" in clean:
        rows += [["attack success rate (ASR) of the recorded backdoor", pct(clean["asr"])]]
        rows += [["triggered images still correct (RA)", pct(clean["ra"])]]
    accuracy = Section(
        "Accuracy",
        [f"On the first {clean['n']} test images; percent.", Table(["metric", "%"], rows)],
    )
    flagged = set(det["flagged"])
    det_rows = [
        [
            str(r["label"]),
            classes[r["label"]],
            f"{r['norm']:.1f}" + ("" if r["reached"] else " (not reached)"),
            "inf" if r["anomaly_index"] is None else f"{r['anomaly_index']:.2f}",
            "yes" if r["label"] in flagged else "",
        ]
        for r in det["labels"]
    ]
    verdict = (
        f"Flagged: label {', '.join(str(k) for k in det['flagged'])}." if flagged else "No label flagged."
    )
    detection = Section(
        "Backdoor detection (Neural Cleanse)",
        [
            f"{verdict} For each label, the smallest mask that sends 99% of clean defender images to it "
            f"(‖m‖₁ in pixels) and its anomaly index (flagged above 2, below the median); "
            f"at most {det['epochs']} epochs per label, {det['seconds']:.0f} s.",
            Table(
                ["label", "class", "‖m‖₁", "anomaly index", "flagged"],
                det_rows,
                frozenset(i for i, r in enumerate(det["labels"]) if r["label"] in flagged),
            ),
        ],
    )
    if TRIGGER_PNG in files:
        detection.blocks.append(
            Figure(files[TRIGGER_PNG], TRIGGER_PNG, "Reversed mask, pattern and trigger of every label")
        )
    aa = robust.get("autoattack")
    rob_rows = [["clean", pct(robust["clean_acc"])]]
    rob_rows += [[name, pct(value)] for name, value in robust["per_attack"].items()]
    if aa:
        rob_rows += [[aa["label"], pct(aa["robust_acc"])]]
    rob_rows += [["worst case", pct(robust["worst_case"])]]
    blocks: list[Any] = [
        f"Accuracy under each attack (L∞, ε = {robust['eps']:.4g} in pixel units) on the first "
        f"{robust['n']} test images, and the worst case over them; percent.",
        Table(["attack", "accuracy %"], rob_rows),
    ]
    if aa:
        counts = ", ".join(f"{c} {k}" for c, k in aa["broken_by"].items())
        blocks.append(
            f"{aa['label']}: the authors' package (pyautoattack), {', '.join(aa['components'])}; APGD-T with "
            f"{aa['targets']} target classes (standard: 9), Square with {aa['square_queries']} queries "
            f"(standard: 5000), no FAB-T; on the first {aa['images']} images, in {aa['seconds']:.1f} s; "
            f"images broken by each component: {counts}. The worst case includes it on those images. "
            f"{aa['pgd']} minus AutoAttack on them: {100 * aa['pgd_gap']:.1f} points."
        )
        blocks += [f"Warning: {w}" for w in aa["warnings"]]
    robustness = Section("Adversarial robustness", blocks)
    state = "flagged" if att["flagged"] else "not flagged; the smallest reversed trigger that works"
    attention = Section(
        "Attention maps of suspicious inputs",
        [
            f"Defender images of other classes stamped with the reversed trigger of label {att['label']} "
            f"({state}); {pct(att.get('sent_to_label'))}% of them are classified as label {att['label']}. "
            "A backdoored model's attention jumps to the trigger's place."
        ],
    )
    if "attention.png" in files:
        attention.blocks.append(
            Figure(
                files["attention.png"], "attention.png", f"Per-stage attention, label {att['label']} trigger"
            )
        )
    elif "unavailable" in att:
        attention.blocks.append(f"No attention maps: {att['unavailable']}")
    return [summary, accuracy, detection, robustness, attention]


def subtitle(report: dict[str, Any]) -> str:
    data = (report.get("data") or {}).get("name", "?")
    return (
        f"Model `{report['model'] or 'in memory'}` on {data}; audited in {report['seconds']:.0f} s "
        f"(mendnet {report['provenance']['mendnet']}, seed {report['settings']['seed']})."
    )


def render_pages(report: dict[str, Any], files: dict[str, bytes | str]) -> tuple[str, str]:
    """(report.html, report.md) of an audit."""
    parts = sections(report, files)
    return html_page(TITLE, parts, subtitle(report)), markdown_page(TITLE, parts, subtitle(report))
