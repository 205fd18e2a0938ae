"""`mendnet bench RECIPE`: a benchmark grid from a TOML recipe (`mendnet.bench`), locally or on Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

from mendnet.artefact import check_writable
from mendnet.bench import load_recipe, run_bench, write_doc_section
from mendnet.errors import MendnetError


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """`bench RECIPE`: a grid of cells from a TOML recipe (mendnet.bench)."""
    p = sub.add_parser(
        "bench",
        help="run a benchmark grid described by a TOML recipe (resumable; locally or on Ray)",
        description="Run the grid of a recipe (data sets × models × attacks × repairs or robustifiers × "
        "seeds; see recipes/). Each finished cell is saved as cells/ID.json in the output folder and "
        "skipped when the run is repeated; results.csv, results.json and tables.md (mean ± std over "
        "seeds) cover every finished cell.",
    )
    p.add_argument("recipe", type=Path, help="recipe TOML file")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/bench-NAME)")
    p.add_argument("--ray", action="store_true", help="run the cells as Ray tasks (extra: mendnet[ray])")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    p.add_argument("--max-cells", type=int, default=None, help="stop after computing N cells")
    p.add_argument("--doc", type=Path, default=None, help="also write the tables as a section of this file")
    p.add_argument("--section", default=None, help="section name in --doc (default: the recipe's name)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.recipe.is_dir():
        raise MendnetError(f"recipe {args.recipe} is a folder; give a recipe file, e.g. recipes/smoke.toml")
    recipe = load_recipe(args.recipe)
    out = args.out or Path("runs") / f"bench-{recipe.name}"
    check_writable(out)  # an existing output folder is resumed
    if args.doc:
        check_writable(args.doc, is_file=True)
    summary = run_bench(
        recipe,
        out,
        engine="ray" if args.ray or args.ray_address else "local",
        ray_address=args.ray_address,
        max_cells=args.max_cells,
        progress=not args.quiet,
    )
    if args.doc:
        write_doc_section(recipe, out, args.doc, args.section)
    print(
        f"{len(summary.computed)} cells computed, {len(summary.skipped)} already finished, "
        f"{len(summary.missing)} left ({summary.seconds:.0f} s) → {out}/results.csv, tables.md"
    )
