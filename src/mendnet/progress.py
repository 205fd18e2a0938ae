"""Progress bars for long work (rich), silenced with MENDNET_QUIET=1 or quiet=True."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def quiet_by_default() -> bool:
    return os.environ.get("MENDNET_QUIET", "") not in ("", "0")


def progress_bar(enabled: bool = True) -> Progress:
    """A rich Progress writing to stderr; disabled when asked, when MENDNET_QUIET is set, or under pytest."""
    disable = not enabled or quiet_by_default() or "pytest" in sys.modules
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )
