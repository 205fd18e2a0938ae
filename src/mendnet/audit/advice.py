"""What to run next, from an audit's findings: one sentence per finding, commands in `code` spans.

Differences from the paper and the authors' release: docs/deviations.md#audit.
"""

from __future__ import annotations

from typing import Any

from mendnet.detect.neural_cleanse import Config as NCConfig
from mendnet.registry import ROBUSTIFIERS
from mendnet.threats.adversarial.autoattack import gap_flagged


def advice(report: dict[str, Any], model_ref: str, trigger_ref: str) -> list[str]:
    """Advice for an audit report; `model_ref` is the artefact folder the suggested commands take,
    `trigger_ref` the audit's reversed trigger file."""
    out = []
    det = report["detection"]
    labels = {row["label"]: row for row in det["labels"]}
    classes = report["classes"]
    for label in det["flagged"]:
        index = labels[label]["anomaly_index"]
        shown = "inf" if index is None else f"{index:.1f}"
        out.append(
            f"Label {label} ({classes[label]}) flagged by Neural Cleanse (anomaly index {shown}): the "
            f"model probably carries a backdoor to it. Run `mendnet repair nad --model {model_ref}` "
            "(attention distillation on 5% clean data), or `mendnet repair neural-cleanse --model "
            f"{model_ref} --trigger {trigger_ref}` to unlearn the reversed trigger found here; then audit "
            "the repaired model."
        )
    quick = report["settings"]["nc_epochs"] < NCConfig().epochs
    if det["flagged"] and det["labels_at_limit"] and quick:
        out.append(
            f"Neural Cleanse stopped at its {report['settings']['nc_epochs']}-epoch limit with "
            f"{det['labels_at_limit']} label(s) still optimising, where even a clean model's label can pass "
            f"the threshold: confirm the flag with `mendnet detect {model_ref}` ({NCConfig().epochs} epochs) "
            "before repairing."
        )
    if not det["flagged"]:
        label = report["attention"]["label"]
        index = labels[label]["anomaly_index"]
        out.append(
            f"No label flagged: the smallest working reversed trigger (label {label}) has anomaly index "
            f"{'inf' if index is None else f'{index:.1f}'} (flagged above 2), no sign of a small-trigger "
            "backdoor. Neural Cleanse can miss large or sample-specific triggers (blend, reflection); more "
            "detection epochs (`--nc-epochs`) make a miss less likely."
        )
    robust = report["robust"]
    pgd = next((v for k, v in robust["per_attack"].items() if k.startswith("PGD")), None)
    worst, clean_acc = robust["worst_case"], robust["clean_acc"]
    if pgd is not None and pgd - worst > report["settings"]["gap_warning"]:
        out.append(
            f"PGD accuracy ({100 * pgd:.1f}%) exceeds the worst case over the attacks "
            f"({100 * worst:.1f}%) by more than 10 points: suspected gradient masking; trust the worst case."
        )
    aa = robust.get("autoattack")
    if aa and (aa["warnings"] or gap_flagged(aa["pgd_gap"])):
        found = []
        if gap_flagged(aa["pgd_gap"]):
            found.append(
                f"{aa['pgd']} accuracy is {100 * aa['pgd_gap']:.1f} points above the budgeted AutoAttack's "
                f"({100 * aa['robust_acc']:.1f}%) on the same {aa['images']} images"
            )
        if aa["warnings"]:
            found.append(f"AutoAttack's checks gave {len(aa['warnings'])} warning(s) (robustness section)")
        out.append(
            f"{'; '.join(found)}: suspected gradient masking. Trust AutoAttack over PGD, and measure with "
            f"its full version: `mendnet attack {model_ref} --attack autoattack --images 1000`."
        )
    if worst < report["settings"]["weak_robustness"] * clean_acc:
        distil = [name for name, m in ROBUSTIFIERS.items() if m.teacher]
        step = (
            f"run `mendnet robustify pgd-at --model {model_ref}` (see `mendnet robustify --help` for "
            f"{', '.join(distil)}, which distil a teacher)"
        )
        out.append(
            f"Robust accuracy is low: {100 * worst:.1f}% worst case at ε = {robust['eps']:.3g} against "
            f"{100 * clean_acc:.1f}% clean. If adversarial inputs matter for this model, {step}."
        )
    return out
