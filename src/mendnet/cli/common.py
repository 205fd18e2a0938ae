"""Options and checks shared by the commands: seed/device/quiet/out/force, the data set options, the
defender fraction, and the output check every command that writes runs before it starts work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mendnet.artefact import check_writable
from mendnet.cli.config import parse_number
from mendnet.data.catalog import SPLITS, check_data_dir, dataset_info, dataset_names, find_split
from mendnet.data.readers import FOLDER_IMAGE_SIZE
from mendnet.data.ref import DataRef
from mendnet.device import resolve_device
from mendnet.errors import MendnetError


def add_common(p: argparse.ArgumentParser, out_help: str | None = None) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if out_help:
        p.add_argument("--out", type=Path, default=None, help=out_help)
        p.add_argument("--force", action="store_true", help="replace an existing output folder")


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The job keywords of `add_common`'s flags: seed, the resolved device and progress (off with --quiet)."""
    return {"seed": args.seed, "device": resolve_device(args.device), "progress": not args.quiet}


def add_data(p: argparse.ArgumentParser, default: str | None = "fashion-mnist") -> None:
    p.add_argument("--data", default=default, choices=dataset_names(), help=f"data set (default: {default})")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the data set (else $MENDNET_DATA, then /usr/share/datasets/NAME)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=FOLDER_IMAGE_SIZE,
        metavar="N",
        help=f"imagefolder: resize every image to N×N pixels (default: {FOLDER_IMAGE_SIZE}); the other "
        "data sets keep their own size",
    )
    add_download(p)


def add_model_source(p: argparse.ArgumentParser) -> None:
    """The model as a user names it (`jobs.load.load_model`) and the data options it may need."""
    p.add_argument(
        "model",
        help="artefact folder, a weights file (.safetensors/.pt, with --arch and --data), or "
        "module:factory / path/file.py:factory returning the trained network (with --data)",
    )
    p.add_argument("--arch", default=None, help="architecture of a weights file (a name or module:factory)")
    add_data(p, default=None)


def data_ref(args: argparse.Namespace) -> DataRef:
    """The data set named by `--data`, `--data-dir` and `--image-size`."""
    return DataRef(args.data, args.data_dir, args.image_size)


def add_download(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch the data set's official files (MD5-checked) into --data-dir or $MENDNET_DATA first "
        "when they are not found",
    )


def prepare_data(args: argparse.Namespace) -> None:
    """Before the command starts: a `--data-dir` must exist (no silent fall-back to $MENDNET_DATA or the
    system copy); with `--download`, the files of both splits are found, else downloaded (MD5-checked)
    into --data-dir or $MENDNET_DATA."""
    if not getattr(args, "download", False):
        check_data_dir(getattr(args, "data_dir", None))
        return
    name = getattr(args, "data", None) or ("fashion-mnist" if args.command == "demo" else None)
    if name is None:
        raise MendnetError("--download needs --data NAME")
    info = dataset_info(name)
    if info.read is None:
        raise MendnetError(f"{name}: cannot be downloaded; it reads your own --data-dir")
    for split in SPLITS:
        find_split(info, split, args.data_dir, download=True)


def add_clean_fraction(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clean-fraction",
        type=parse_number,
        default=0.05,
        help="defender data as a fraction of the training set (default: 0.05)",
    )


def check_out(out: Path, force: bool, *, is_file: bool = False) -> None:
    """Before any work is done, refuse an existing output (unless `force`) and one that could not be
    written (`artefact.check_writable`); the atomic write checks again at the end. Every command that
    writes calls this first, for each output folder or file."""
    if out.exists() and not force:
        raise MendnetError(f"output {out} already exists; pass --force to replace it")
    check_writable(out, is_file=is_file)
