"""`mendnet demo`: the main job (BadNets → train → fine-tuning, NAD and mend; `mendnet.demo`)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from mendnet.cli.common import add_common, add_download, check_out
from mendnet.demo import DemoConfig, run_demo
from mendnet.device import resolve_device


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: BadNets → train → fine-tuning, NAD and mend, with a report",
        description="Fashion-MNIST, WRN-16-1, BadNets 10% → fine-tuning, NAD and `mendnet mend` with 5% "
        "clean defender data.",
    )
    p.add_argument("--data-dir", default=None, help="folder holding Fashion-MNIST")
    add_download(p)
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs of the backdoored model (default: the demo's 5)"
    )
    p.add_argument(
        "--no-mend",
        action="store_true",
        help="skip `mendnet mend` (which runs after NAD on the backdoored model, about 4.5 minutes on 2 CPU "
        "cores; the report says what it kept and why)",
    )
    add_common(p, "output folder (default: runs/demo)")


def cmd_demo(args: argparse.Namespace) -> None:
    out = args.out or Path("runs/demo")
    check_out(out, args.force)
    cfg = DemoConfig(data_dir=args.data_dir, seed=args.seed, mend=not args.no_mend)
    if args.epochs is not None:
        cfg = replace(cfg, epochs=args.epochs)
    run_demo(cfg, out, force=args.force, device=resolve_device(args.device), progress=not args.quiet)
    folders = "backdoored/, finetune/, nad/" + ("" if args.no_mend else ", mend/")
    print(f"wrote {out}/ (metrics.json, report.md, attention.png, {folders})")
