"""Benchmark grids from TOML recipes (`mendnet bench`): data sets × models × attacks × repairs or
robustifiers × seeds, generated from the method registries, resumable cell by cell, locally or on Ray."""

from mendnet.bench.recipe import Recipe, load_recipe, parse_recipe
from mendnet.bench.run import BenchSummary, run_bench, write_doc_section
from mendnet.bench.smoke import smoke_recipe

__all__ = [
    "BenchSummary",
    "Recipe",
    "load_recipe",
    "parse_recipe",
    "run_bench",
    "smoke_recipe",
    "write_doc_section",
]
