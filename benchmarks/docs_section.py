"""docs/benchmarks.md and its named sections (`mendnet.bench.docs.write_section`, which `mendnet bench
--doc` uses too)."""

from __future__ import annotations

from pathlib import Path

from mendnet.bench.docs import write_section as _write_section

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Put `body` between `<!-- begin NAME -->` and `<!-- end NAME -->` of `doc` (default: DOC)."""
    _write_section(name, body, doc)
