"""`mendnet audit MODEL`: accuracy, Neural Cleanse, robust accuracy, attention maps and advice for one
model a user brings (`mendnet.audit`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mendnet.artefact import atomic_output_dir, save_artefact, write_files
from mendnet.audit import AuditConfig, audit_model
from mendnet.cli.common import add_common, add_model_source, check_out, data_ref
from mendnet.cli.config import flag, parse_number
from mendnet.detect.reversed_trigger import TRIGGER_FILE
from mendnet.device import resolve_device
from mendnet.jobs.load import load_model

# AuditConfig's whole-number settings, each a flag of the field's name: (field, help)
COUNT_SETTINGS = (
    ("test_images", "first N test images"),
    ("nc_epochs", "Neural Cleanse epochs"),
    ("nc_batches", "Neural Cleanse batches per epoch"),
    ("nc_batch_size", "Neural Cleanse batch size"),
    ("attack_steps", "PGD-L∞ and CW-L∞ steps"),
    ("aa_images", "images of the budgeted AutoAttack, 0: none"),
)


def add_audit_parser(sub: argparse._SubParsersAction) -> None:
    """`audit MODEL`: accuracy, Neural Cleanse, robust accuracy, attention maps and advice (mendnet.audit)."""
    p = sub.add_parser(
        "audit",
        help="check one model for backdoors and adversarial weakness; writes report.html and report.md",
        description="Audit a model: clean accuracy, Neural Cleanse detection (anomaly index of every "
        "label), robust accuracy under FGSM, PGD-L∞, CW-L∞ and a budgeted AutoAttack (APGD-CE, APGD-T "
        "with 3 targets, Square with 1000 queries; ε 0.1 on 28×28 greyscale, else 8/255), "
        "attention maps of defender images stamped with the most suspicious label's reversed trigger, "
        "and advice. Writes report.html (self-contained), report.md, audit.json and the figures.",
    )
    add_model_source(p)
    d = AuditConfig()
    for name, text in COUNT_SETTINGS:
        p.add_argument(flag(name), type=int, default=getattr(d, name), help=f"{text} ({getattr(d, name)})")
    p.add_argument("--eps", type=parse_number, default=None, help="L∞ budget, e.g. 8/255 (default: above)")
    p.add_argument(
        "--clean-fraction",
        type=parse_number,
        default=d.clean_fraction,
        help=f"defender data as a fraction of the training set ({d.clean_fraction})",
    )
    add_common(p, "output folder (default: runs/audit-MODEL)")


def cmd_audit(args: argparse.Namespace) -> None:
    name = Path(args.model.rstrip("/")).name.replace(":", "-") or "model"
    out = args.out or Path("runs") / f"audit-{name}"
    check_out(out, args.force)
    counts = {name: getattr(args, name) for name, _ in COUNT_SETTINGS}
    cfg = AuditConfig(**counts, clean_fraction=args.clean_fraction, eps=args.eps, seed=args.seed)
    art = load_model(args.model, args.arch, data_ref(args) if args.data else None)
    model_ref = str(art.path) if art.path else str(out / "model")  # a bare model is saved for the repairs
    outcome = audit_model(
        art,
        cfg,
        device=resolve_device(args.device),
        progress=not args.quiet,
        model_ref=model_ref,
        trigger_ref=str(out / TRIGGER_FILE),
    )
    with atomic_output_dir(out, args.force) as tmp:
        write_files(tmp, outcome.files)
        if art.path is None:
            save_artefact(tmp / "model", art.model.cpu(), art.meta, outcome.report["clean"])
    flagged = ", ".join(map(str, outcome.report["detection"]["flagged"])) or "none"
    print(f"audit → {out}/report.html (flagged: {flagged})")
    for line in outcome.report["advice"]:
        print(f"- {line}")
