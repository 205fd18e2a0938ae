"""`mendnet attention`: a PNG of per-stage attention maps of the same triggered test images under
several models (`jobs.attention`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mendnet.artefact import atomic_write_bytes, load_artefact
from mendnet.cli.common import check_out
from mendnet.errors import MendnetError
from mendnet.jobs.attention import attention_png


def add_attention_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention",
        help="PNG of per-stage attention maps of triggered images",
        description="Attention maps of the same triggered test images under 2+ models.",
    )
    p.add_argument("models", type=Path, nargs="+", help="artefact folders (the first one's trigger is used)")
    p.add_argument("--images", type=int, default=4, help="number of test images (default: 4)")
    p.add_argument("--out", type=Path, default=Path("attention.png"), help="PNG file to write")
    p.add_argument("--force", action="store_true", help="replace an existing PNG")


def cmd_attention(args: argparse.Namespace) -> None:
    if len(args.models) < 2:
        raise MendnetError("attention needs two or more models to compare")
    check_out(args.out, args.force, is_file=True)
    png = attention_png([load_artefact(m) for m in args.models], args.images)
    atomic_write_bytes(args.out, png)
    print(f"wrote {args.out}")
