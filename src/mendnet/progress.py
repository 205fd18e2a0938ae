"""Progress of long work on stderr, silenced with MENDNET_QUIET=1 or quiet=True (and under pytest).

On a terminal: rich bars. Elsewhere (a log file, CI), where rich draws nothing: plain lines such as
`NAD student: epoch 3/20 loss 0.412 acc 0.912 (750/5000, 37 s)`, one when a task's info changes (each
training epoch), else one after PLAIN_EVERY_S seconds without a line, and the final state at the end.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
PLAIN_EVERY_S = 10.0  # the longest gap between plain lines of a running task
PLAIN_MIN_GAP_S = 1.0  # the shortest gap between two plain lines of a task (except its last one)


def quiet_by_default() -> bool:
    """MENDNET_QUIET is set (not 0), or the code runs under pytest."""
    return os.environ.get("MENDNET_QUIET", "") not in ("", "0") or "pytest" in sys.modules


class PlainProgress(Progress):
    """A Progress that draws no bar but writes plain lines to `stream` (for a stderr that is not a
    terminal); the loops use it as they use a bar (add_task, advance, update)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(disable=True)
        self.stream = stream
        self.last: dict[TaskID, tuple[float, str, float]] = {}  # time, info, completed of the last line

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self.report(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self.report(task_id)

    def stop(self) -> None:
        for task_id in self.task_ids:
            self.report(task_id, final=True)
        super().stop()

    def report(self, task_id: TaskID, final: bool = False) -> None:
        """A line for the task when its info changed (PLAIN_MIN_GAP_S after the last one), when it has
        been quiet for PLAIN_EVERY_S, and at the end if its state changed since the last line."""
        task = self._tasks[task_id]
        now = self.get_time()
        info = str(task.fields.get("info", ""))
        when, said, completed = self.last.get(task_id, (task.start_time or now, "", 0.0))
        if final:
            due = (info, task.completed) != (said, completed)
        else:
            due = now - when >= PLAIN_EVERY_S or (info != said and now - when >= PLAIN_MIN_GAP_S)
        if not due:
            return
        total = "" if task.total is None else f"/{task.total:.0f}"
        detail = f"{info} " if info else ""
        elapsed = task.elapsed or 0.0
        self.stream.write(f"{task.description}: {detail}({task.completed:.0f}{total}, {elapsed:.0f} s)\n")
        self.stream.flush()
        self.last[task_id] = (now, info, task.completed)


def progress_bar(enabled: bool = True, stream: TextIO | None = None) -> Progress:
    """A rich Progress writing to stderr (`stream`, if given): a bar on a terminal, plain lines
    elsewhere; disabled when asked, when MENDNET_QUIET is set, or under pytest."""
    if not enabled or quiet_by_default():
        return Progress(disable=True)
    target = stream if stream is not None else sys.stderr
    if not Console(file=target).is_terminal:
        return PlainProgress(target)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console if stream is None else Console(file=stream),
        disable=False,
    )
