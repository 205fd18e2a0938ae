"""The `mendnet` parser, built from the command modules in the order `--help` lists them, and the
dispatch: every user-facing problem (a MendnetError, or a file or folder the system refused) ends as
one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from mendnet import __version__
from mendnet.cli.attack import add_attack_parser, cmd_attack
from mendnet.cli.attention import add_attention_parser, cmd_attention
from mendnet.cli.audit import add_audit_parser, cmd_audit
from mendnet.cli.bench import add_bench_parser, cmd_bench
from mendnet.cli.common import prepare_data
from mendnet.cli.demo import add_demo_parser, cmd_demo
from mendnet.cli.detect import add_detect_parser, add_locate_parser, cmd_detect, cmd_locate
from mendnet.cli.evaluate import add_eval_parser, cmd_eval
from mendnet.cli.mend import add_mend_parser, cmd_mend
from mendnet.cli.repair import add_repair_parser, add_robustify_parser, cmd_repair, cmd_robustify
from mendnet.cli.train import add_poison_parser, add_train_parser, cmd_poison, cmd_train
from mendnet.errors import MendnetError

ERROR_EXIT = 2

PARSERS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_train_parser,
    add_poison_parser,
    add_eval_parser,
    add_repair_parser,
    add_detect_parser,
    add_locate_parser,
    add_attention_parser,
    add_attack_parser,
    add_robustify_parser,
    add_bench_parser,
    add_audit_parser,
    add_mend_parser,
    add_demo_parser,
)
"""The sub-commands' parsers, in the order `mendnet --help` lists them."""

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "train": cmd_train,
    "poison": cmd_poison,
    "eval": cmd_eval,
    "repair": cmd_repair,
    "detect": cmd_detect,
    "locate": cmd_locate,
    "attention": cmd_attention,
    "attack": cmd_attack,
    "robustify": cmd_robustify,
    "bench": cmd_bench,
    "audit": cmd_audit,
    "mend": cmd_mend,
    "demo": cmd_demo,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mendnet",
        description="Find and repair what is wrong inside trained image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"mendnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in PARSERS:
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mendnet` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"mendnet: warning: {msg}\n"
    try:
        prepare_data(args)
        COMMANDS[args.command](args)
    except MendnetError as e:
        return fail(str(e))
    except OSError as e:  # a file or folder the system refused (missing, unwritable, a folder, ...)
        return fail(os_error_message(e))
    except KeyboardInterrupt:
        print("mendnet: interrupted", file=sys.stderr)
        return 130
    return 0


def fail(message: str) -> int:
    """Print `message` as the one line `mendnet: error: ...` on stderr; the error exit status."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"mendnet: error: {text}", file=sys.stderr)
    return ERROR_EXIT


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def os_error_message(error: OSError) -> str:
    """An OSError as "PATH: reason" (both paths of a rename), or its text when it names no path."""
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    reason = error.strerror or first_line(error)
    return f"{' → '.join(paths)}: {reason}" if paths else reason
