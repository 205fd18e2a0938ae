"""What a job that makes a model returns (train, repair, mend), and how it is written as an artefact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mendnet.artefact import write_artefact
from mendnet.models import Classifier


@dataclass
class ModelOutcome:
    """The model, its artefact meta (model.json) and metrics (metrics.json), and the folder's other files
    (name → bytes or text)."""

    model: Classifier
    meta: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, bytes | str] = field(default_factory=dict)


def write_outcome(folder: Path, outcome: ModelOutcome, files: dict[str, bytes | str] | None = None) -> None:
    """Write an outcome as an artefact in `folder`, with its own files unless `files`."""
    write_artefact(folder, outcome.model, outcome.meta, outcome.metrics, files or outcome.files)
