"""A bench output folder: `cells/ID.json` (one finished cell each, written atomically), `models/BASE/` (the
cached base artefacts), `cell-models/ID/` (the outputs of the cells whose output other cells take: the
model of a teacher column or a retuned column, as an artefact; a detect cell's folder, as `mendnet
detect` writes it, with its reversed trigger), and the results files.

A cell's identity is its spec (the settings that determine it, `cells.cell_spec`) and the code it ran
(`code.code_identity`: package version and source hash). A record with another spec does not count as
the cell at all (changed settings are recomputed); a record with the same spec but other code is the
cell's *stale* result, recomputed unless the run keeps stale cells. A base model is reused only when both
its spec and its code match, and so is a cell's output (its model.json or detect.json records both), so
every cell computed now runs entirely on the current code."""

from __future__ import annotations

import json
from pathlib import Path

from mendnet.artefact import META, atomic_output_dir, atomic_write_json, write_files
from mendnet.bench.cells import BaseKey, Cell, base_spec, cell_spec
from mendnet.bench.code import code_identity
from mendnet.bench.inputs import REFUSED
from mendnet.bench.recipe import Recipe
from mendnet.bench.stored import BENCH_KEY, CODE_KEY, RECIPE_KEY, STAMPED, output_digest, read_folder

CELLS = "cells"
MODELS = "models"
CELL_MODELS = "cell-models"


class BenchStore:
    """The files of one bench run in `root`, judged against the code identity `code` (default: the
    running code's)."""

    def __init__(self, root: Path, code: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.code = code if code is not None else code_identity()

    def cell_path(self, cell: Cell) -> Path:
        return self.root / CELLS / f"{cell.id}.json"

    def base_path(self, base: BaseKey) -> Path:
        return self.root / MODELS / base.id

    def record(self, recipe: Recipe, cell: Cell) -> dict | None:
        """The cell's finished record, current or stale, or None (missing, unreadable, or made with
        other settings)."""
        try:
            record = json.loads(self.cell_path(cell).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("spec") != cell_spec(recipe, cell):
            return None
        return record

    def clash(self, recipe: Recipe, cells: list[Cell], bases: list[BaseKey]) -> str | None:
        """The first stored cell record or base model among `cells` and `bases` that another recipe made
        with other settings ("cell ID of recipe NAME"), or None. Files are named by cell and base alone,
        so computing `recipe` here would overwrite it; a recipe's own records of other settings (an
        edited recipe) are recomputed as usual."""
        stored = [
            *((f"cell {c.id}", self.cell_path(c), "spec", cell_spec(recipe, c), "recipe") for c in cells),
            *(
                (f"base model {b.id}", self.base_path(b) / META, BENCH_KEY, base_spec(recipe, b), RECIPE_KEY)
                for b in bases
            ),
        ]
        for what, path, spec_key, spec, recipe_key in stored:
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            other = found.get(recipe_key) if isinstance(found, dict) else None
            if other not in (None, recipe.name) and found.get(spec_key) != spec:
                return f"{what} of recipe {other}"
        return None

    def refused(self, recipe: Recipe, cell: Cell) -> bool:
        """Whether `cell` has a finished record of a refusal (a method that refused to run: no output)."""
        record = self.record(recipe, cell)
        return record is not None and REFUSED in record["info"]

    def is_current(self, record: dict) -> bool:
        """Whether `record` was computed by the code this store is judged against."""
        return record.get("code") == self.code

    def cell_model_path(self, cell: Cell) -> Path:
        return self.root / CELL_MODELS / cell.id

    def _stored_files(self, folder: Path, spec: dict) -> dict[str, bytes] | None:
        """The files in `folder` if the first of its STAMPED files (an artefact's model.json, a detect
        folder's detect.json) records `spec` and this store's code."""
        stamps = [folder / name for name in STAMPED if (folder / name).is_file()]
        if not stamps:
            return None
        try:
            meta = json.loads(stamps[0].read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get(BENCH_KEY) != spec or meta.get(CODE_KEY) != self.code:
            return None
        return read_folder(folder)

    def base_files(self, recipe: Recipe, base: BaseKey) -> dict[str, bytes] | None:
        """The cached base artefact's files, or None (missing, or trained with other settings or code)."""
        return self._stored_files(self.base_path(base), base_spec(recipe, base))

    def cell_output_files(self, recipe: Recipe, cell: Cell) -> dict[str, bytes] | None:
        """The stored output of `cell` (a model, a detect folder), or None (missing, or made with other
        settings or code)."""
        return self._stored_files(self.cell_model_path(cell), cell_spec(recipe, cell))

    def digest(self, recipe: Recipe, cell: Cell) -> str | None:
        """The digest of `cell`'s stored output (`work.output_digest`), or None."""
        files = self.cell_output_files(recipe, cell)
        return output_digest(files) if files is not None else None

    def write_base(self, base: BaseKey, files: dict[str, bytes]) -> None:
        with atomic_output_dir(self.base_path(base), force=True) as tmp:
            write_files(tmp, files)

    def write_cell_output(self, cell: Cell, files: dict[str, bytes]) -> None:
        with atomic_output_dir(self.cell_model_path(cell), force=True) as tmp:
            write_files(tmp, files)

    def write_record(self, cell: Cell, record: dict) -> None:
        atomic_write_json(self.cell_path(cell), record)
