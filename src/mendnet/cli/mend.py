"""`mendnet mend MODEL`: repair a model whose attack, if any, is unknown, from clean defender data alone
(scan, candidate repairs, selection on a validation part), writing the kept model as an artefact with
report.html and report.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mendnet.artefact import atomic_output_dir
from mendnet.cli.common import (
    add_clean_fraction,
    add_common,
    add_model_source,
    check_out,
    data_ref,
    run_options,
)
from mendnet.cli.config import flag
from mendnet.errors import MendnetError
from mendnet.jobs.load import load_model
from mendnet.jobs.mend import mend_artefact
from mendnet.jobs.outcome import write_outcome
from mendnet.mend.decide import Rule
from mendnet.mend.run import DEFAULT_CANDIDATES, MendConfig
from mendnet.registry import REPAIRS

SCAN_FLAGS = {
    "scan_epochs": "Neural Cleanse epochs",
    "scan_batches": "Neural Cleanse mini-batches per epoch and label",
    "scan_batch_size": "defender images per Neural Cleanse mini-batch",
    "rescore_epochs": "epochs re-reversing each suspect's trigger on every scored model before its proxy "
    "ASR is measured (0: score with the scan's triggers)",
}
"""MendConfig's integer settings (the scan's and the rescoring's) that are flags of `mendnet mend`, with
their help text."""


def add_mend_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mend",
        help="repair a model whose attack is unknown, from clean data alone; keeps it if nothing helps",
        description="Split the clean defender data into a repair part and a validation part; reverse "
        "every label's trigger (Neural Cleanse with focus); run the candidate repairs on the repair part; "
        "score each, and the untouched model, on the validation part (accuracy and the suspect labels' "
        "reversed-trigger success, the proxy ASR); keep the best by one rule (docs/methods.md §10), or "
        "the model itself. Never reads the test set or a recorded trigger to decide; the test figures "
        "are measured afterwards, for the report only (unless --no-evaluate). Writes the kept model as an "
        "artefact with report.html, report.md and the reversed triggers.",
    )
    add_model_source(p)
    add_clean_fraction(p)
    d = MendConfig()
    p.add_argument(
        "--candidates",
        default=",".join(DEFAULT_CANDIDATES),
        metavar="NAMES",
        help=f"comma-separated repairs to try (default: {','.join(DEFAULT_CANDIDATES)}; known: "
        f"{','.join(REPAIRS)})",
    )
    p.add_argument(
        "--val-share",
        type=float,
        default=d.val_share,
        help=f"share of the clean data kept for mend's validation ({d.val_share})",
    )
    for name, text in SCAN_FLAGS.items():
        default = getattr(d, name)
        p.add_argument(flag(name), type=int, default=default, metavar="N", help=f"{text} ({default})")
    tolerance = 100 * d.rule.acc_tolerance
    p.add_argument(
        "--acc-tolerance",
        type=float,
        default=tolerance,
        metavar="POINTS",
        help="with a flagged label, a candidate qualifies only within this many points of the best "
        f"validation accuracy ({tolerance:g}, chosen on the validation split: docs/benchmarks.md "
        "mend_rule_probe, mend_rescore_probe); a clean-looking model keeps its own 0.5-point bar",
    )
    p.add_argument(
        "--no-evaluate",
        dest="evaluate",
        action="store_false",
        help="do not measure the test set after the decision",
    )
    add_common(p, "output artefact folder (default: runs/mend-MODEL)")


def cmd_mend(args: argparse.Namespace) -> None:
    name = Path(args.model.rstrip("/")).name.replace(":", "-") or "model"
    out = args.out or Path("runs") / f"mend-{name}"
    check_out(out, args.force)
    candidates = tuple(c.strip() for c in args.candidates.split(",") if c.strip())
    scan = {name: getattr(args, name) for name in SCAN_FLAGS}
    if not 0 <= args.acc_tolerance <= 100:
        raise MendnetError(f"--acc-tolerance must lie in [0, 100] points, got {args.acc_tolerance:g}")
    rule = Rule(acc_tolerance=args.acc_tolerance / 100)
    config = MendConfig(candidates=candidates, val_share=args.val_share, rule=rule, **scan)
    art = load_model(args.model, args.arch, data_ref(args) if args.data else None)
    if "data" not in art.meta:
        raise MendnetError(f"{args.model} records no data set; pass --data")
    outcome = mend_artefact(
        art,
        config,
        clean_fraction=args.clean_fraction,
        **run_options(args),
        evaluate=args.evaluate,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    with atomic_output_dir(out, args.force) as tmp:
        write_outcome(tmp, outcome)
    mend = outcome.meta["mend"]
    print(f"mend → {out} (kept: {mend['chosen']}; report: {out}/report.html)")
    print(f"  {mend['reason']}")
    if "acc" in outcome.metrics:
        before = outcome.metrics["before"]
        figures = ", ".join(
            f"{k.upper()} {100 * before[k]:.2f}% → {100 * outcome.metrics[k]:.2f}%"
            for k in ("acc", "asr")
            if k in before
        )
        print(f"  test set (after the decision): {figures}")
