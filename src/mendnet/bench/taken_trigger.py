"""A reversed trigger taken from the base's detect cell (a column with `trigger = "detect"`): the label the
taker repairs (Neural Cleanse's flagged label with the smallest norm, else, none flagged, the
smallest-norm label, as the former benchmark script chose), the Config handed to the method, and what its
record says it took."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from mendnet.artefact import write_files

REPORT = "detect.json"
"""The report of a detect folder (`jobs.detect.detect_artefact`): the flags and every label's norm."""


def smallest_norm_label(labels: list[dict[str, Any]]) -> int:
    """The label whose reversed trigger has the smallest norm, from a detect report's `labels` rows."""
    return min(labels, key=lambda row: row["norm"])["label"]


def takes_label(config: Any) -> bool:
    """Whether a method's Config takes the label to repair (AI-Lancet's) besides the trigger file."""
    return "label" in {f.name for f in fields(config)}


@dataclass(frozen=True)
class TakenTrigger:
    """A detect cell's output written to `folder`, the label chosen from it and whether Neural Cleanse
    flagged that label."""

    folder: Path
    label: int
    flagged: bool

    def config_for(self, config: Any) -> Any:
        """`config` with this reversed trigger, and the chosen label when the Config takes one (a Config
        without one, Neural Cleanse's unlearning, uses the trigger's flagged labels itself)."""
        given: dict[str, Any] = {"trigger": str(self.folder)}
        if takes_label(config):
            given["label"] = self.label
        return replace(config, **given)

    def record(self, config: Any) -> dict[str, Any]:
        """What a taker's record says it took: the label handed to `config` (None when it takes none) and
        whether it was flagged."""
        return {"label": self.label if takes_label(config) else None, "flagged": self.flagged}


def taken_trigger(files: dict[str, bytes], folder: Path) -> TakenTrigger:
    """Write a detect cell's output files into `folder` and choose the label: the first flagged (flags
    come smallest norm first), else the smallest-norm label."""
    write_files(folder, files)
    report = json.loads(files[REPORT])
    flagged = report["flagged"]
    if flagged:
        return TakenTrigger(folder, flagged[0], True)
    return TakenTrigger(folder, smallest_norm_label(report["labels"]), False)
