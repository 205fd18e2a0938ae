"""Benchmark results cached as JSON files that record the settings they were made with, so a stopped
run resumes and later sessions add seeds; a file made with other settings is recomputed, never reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mendnet.artefact import atomic_write_json


def as_json(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), for comparing with cached settings."""
    return json.loads(json.dumps(value))


def read_cached(path: Path, settings: Any) -> dict[str, Any] | None:
    """The JSON at `path` if its "settings" equal `settings` (already `as_json`), else None."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if data.get("settings") == settings else None


def write_cached(path: Path, settings: Any, **fields: Any) -> None:
    """Write {"settings": settings, **fields} to `path` atomically (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"settings": settings, **fields})
