"""The files a bench run keeps, as bytes (so a Ray worker needs no shared folder): artefact folders (bases,
cells' models) and detect folders, the stamp that says which settings and code made them, and the digest
that says which model or reversed trigger another cell or base took."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mendnet.artefact import META, WEIGHTS, load_artefact, write_files
from mendnet.bench.taken_trigger import REPORT
from mendnet.detect.reversed_trigger import TRIGGER_FILE

BENCH_KEY = "bench"
"""The key of a stored folder's stamp (a STAMPED file) that holds the spec that made it: a base's
`base_spec`, a cell's `cell_spec`."""

CODE_KEY = "bench_code"
"""The key of a stored folder's stamp that holds the code identity it was made with."""

RECIPE_KEY = "bench_recipe"
"""The key of a base model's stamp that holds the name of the recipe that trained it (cell records keep
it as "recipe"): another recipe does not overwrite it with other settings (`BenchStore.clash`)."""

STAMPED = (META, REPORT)
"""The files of a stored folder that may hold its BENCH_KEY and CODE_KEY: an artefact's model.json, a
detect folder's detect.json (the first present one does)."""


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative name → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def load_files(files: dict[str, bytes], folder: Path) -> Any:
    """The artefact made of `files`, written into `folder` and loaded."""
    write_files(folder, files)
    return load_artefact(folder)


def output_digest(files: dict[str, bytes]) -> str:
    """SHA-256 (hex) of a stored output's main file (an artefact's weights, a detect folder's reversed
    trigger): which model or trigger a cell or base took from another."""
    return hashlib.sha256(files[WEIGHTS] if WEIGHTS in files else files[TRIGGER_FILE]).hexdigest()
