"""A bench output folder: `cells/ID.json` (one finished cell each, written atomically), `models/BASE/` (the
cached base artefacts), and the results files. A cell or base counts as finished only when its recorded
spec equals the recipe's, so changed settings are recomputed and nothing stale is reported."""

from __future__ import annotations

import json
from pathlib import Path

from mendnet.artefact import META, atomic_output_dir, atomic_write_json, write_files
from mendnet.bench.cells import BaseKey, Cell, base_spec, cell_spec
from mendnet.bench.recipe import Recipe
from mendnet.bench.work import BENCH_KEY, read_folder

CELLS = "cells"
MODELS = "models"


class BenchStore:
    """The files of one bench run in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def cell_path(self, cell: Cell) -> Path:
        return self.root / CELLS / f"{cell.id}.json"

    def base_path(self, base: BaseKey) -> Path:
        return self.root / MODELS / base.id

    def record(self, recipe: Recipe, cell: Cell) -> dict | None:
        """The cell's finished record, or None (missing, unreadable, or made with other settings)."""
        try:
            record = json.loads(self.cell_path(cell).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("spec") != cell_spec(recipe, cell):
            return None
        return record

    def base_files(self, recipe: Recipe, base: BaseKey) -> dict[str, bytes] | None:
        """The cached base artefact's files, or None (missing, or trained with other settings)."""
        folder = self.base_path(base)
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get(BENCH_KEY) != base_spec(recipe, base):
            return None
        return read_folder(folder)

    def write_base(self, base: BaseKey, files: dict[str, bytes]) -> None:
        with atomic_output_dir(self.base_path(base), force=True) as tmp:
            write_files(tmp, files)

    def write_record(self, cell: Cell, record: dict) -> None:
        atomic_write_json(self.cell_path(cell), record)
