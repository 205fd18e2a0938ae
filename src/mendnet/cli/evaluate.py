"""`mendnet eval`: ACC, and ASR and RA for the recorded backdoor, of an artefact or a weights file."""

from __future__ import annotations

import argparse
from pathlib import Path

from mendnet.artefact import atomic_write_json
from mendnet.cli.common import add_common, add_data, check_out, data_ref
from mendnet.device import resolve_device
from mendnet.jobs.evaluate import evaluate_artefact
from mendnet.jobs.load import load_model
from mendnet.report.tables import print_table


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="ACC, ASR, RA of an artefact or a weights file",
        description="Evaluate an artefact folder (or a .safetensors/.pt file with --arch).",
    )
    p.add_argument("model", type=Path, help="artefact folder, or a weights file")
    p.add_argument("--arch", default=None, help="architecture of a bare weights file")
    add_data(p, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")
    add_common(p)


def cmd_eval(args: argparse.Namespace) -> None:
    if args.json:
        check_out(args.json, force=True, is_file=True)  # --json replaces an existing file, as it always has
    art = load_model(args.model, args.arch, data_ref(args) if args.data else None)
    metrics = evaluate_artefact(art, resolve_device(args.device))
    if args.json:
        atomic_write_json(args.json, metrics)
    print_table({str(args.model): metrics}, title="evaluation")
