"""The code a cell ran: the package version and a hash of every `*.py` file of the mendnet package.

Part of a cell's identity: a finished cell whose recorded code differs from the running code is stale
(recomputed, or kept and marked with `--keep-stale`). The hash covers the whole package rather than the
files a cell imports: a method's cells depend on shared code (training loops, data, metrics) as much as on
the method's own module, and one over-cautious recomputation is cheaper than one stale table.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import mendnet

PACKAGE = Path(mendnet.__file__).resolve().parent
"""The source folder hashed by `code_identity` (a test may point it at an edited copy)."""

SHORT = 12
"""Hex digits of the source hash shown in tables and docs sections."""


def source_hash(root: Path) -> str:
    """SHA-256 (hex) over the sorted relative paths and contents of every `*.py` file under `root`."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        name = path.relative_to(root).as_posix().encode()
        content = path.read_bytes()
        for part in (name, content):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return digest.hexdigest()


@functools.cache
def code_identity() -> dict[str, str]:
    """{"version": the package version, "source": `source_hash(PACKAGE)`}, computed once per process."""
    return {"version": mendnet.__version__, "source": source_hash(PACKAGE)}


def short_code(code: dict[str, str]) -> str:
    """A code identity as text: "mendnet VERSION, code HASH12"."""
    return f"mendnet {code['version']}, code {code['source'][:SHORT]}"
