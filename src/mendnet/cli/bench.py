"""`mendnet bench RECIPE`: a benchmark grid from a TOML recipe (`mendnet.bench`), locally or on Ray; `mendnet
bench --summary RESULTS_DIR ...`: the one-screen summary of results folders (`mendnet.bench.summary`)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import time
from pathlib import Path

from mendnet.artefact import check_writable
from mendnet.bench import load_recipe, run_bench, write_doc_section
from mendnet.bench.code import PACKAGE, code_identity
from mendnet.bench.docs import SUMMARY, commit_text, git_state, is_summary, provenance, write_section
from mendnet.bench.smoke import SMOKE_FOLDER, smoke_recipe
from mendnet.bench.summary import part_title, provenance_line, read_results, summary_command, summary_text
from mendnet.errors import MendnetError


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """`bench RECIPE`: a grid of cells from a TOML recipe (mendnet.bench)."""
    p = sub.add_parser(
        "bench",
        help="run a benchmark grid described by a TOML recipe (resumable; locally or on Ray)",
        description="Run the grid of a recipe (data sets × models × attacks × repairs or robustifiers × "
        "seeds; see recipes/). Each finished cell is saved as cells/ID.json in the output folder and "
        "skipped when the run is repeated with the same settings and the same code (package version and "
        "source hash); a cell computed by other code is recomputed, or kept and marked stale (†) with "
        "--keep-stale. A folder holding another recipe's cells or models of the same names with other "
        "settings is refused (they would be overwritten): give each such recipe its own --out. "
        "results.csv, results.json and tables.md (mean ± std over seeds) cover every "
        "finished cell. With --summary instead of a recipe: the one-screen summary of results folders (per "
        "backdoored row the best repair, per robustness method its AutoAttack accuracy).",
    )
    p.add_argument("recipe", type=Path, nargs="?", default=None, help="recipe TOML file")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/bench-NAME)")
    p.add_argument("--ray", action="store_true", help="run the cells as Ray tasks (extra: mendnet[ray])")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    p.add_argument("--max-cells", type=int, default=None, help="stop after computing N cells")
    p.add_argument(
        "--device",
        default=None,
        help="run every cell on this device (cpu, cuda, cuda:N, mps) instead of the recipe's run.device; "
        "the device is part of each cell's identity, so results on another device are cells of their own; "
        "checked before the first cell is computed, so a finished run's tables need no such device",
    )
    p.add_argument(
        "--keep-stale",
        action="store_true",
        help="keep finished cells computed by other code instead of recomputing them (tables mark them †)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="run the recipe at a tiny size (first seed, a few hundred images, one epoch; seconds per cell) "
        f"into OUT/{SMOKE_FOLDER}, apart from real results; checks the recipe still runs, its numbers are "
        "not results",
    )
    p.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="also write the tables as a section of this file, naming the recipe, the command, the commit, "
        "the device and the date",
    )
    p.add_argument(
        "--section",
        default=None,
        help="section name in --doc (default: the recipe's name; with --summary: summary, or summary_NAME "
        "for a part of the summary from other folders, placed after it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--summary",
        type=Path,
        nargs="+",
        default=None,
        metavar="RESULTS_DIR",
        help="instead of running a recipe, summarise these results folders: print the Markdown, or with "
        f"--doc write it as section {SUMMARY!r} (or --section {SUMMARY}_NAME) at the top of that file "
        "(takes no other option but --section)",
    )


SUMMARY_REFUSES = {
    "RECIPE": "recipe",
    "--out": "out",
    "--ray": "ray",
    "--ray-address": "ray_address",
    "--max-cells": "max_cells",
    "--device": "device",
    "--keep-stale": "keep_stale",
    "--smoke": "smoke",
    "--quiet": "quiet",
}
"""The arguments --summary does not take → their attributes (None or False when not given)."""


def command_line(args: argparse.Namespace) -> str:
    """The `mendnet bench` command of `args`, as a docs section quotes it (--quiet left out)."""
    argv = ["mendnet", "bench", str(args.recipe)]
    for flag, value in (
        ("--out", args.out),
        ("--ray-address", args.ray_address),
        ("--max-cells", args.max_cells),
        ("--device", args.device),
        ("--doc", args.doc),
        ("--section", args.section),
    ):
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag, on in (("--ray", args.ray), ("--keep-stale", args.keep_stale)) if on]
    return shlex.join(argv)


def cmd_summary(args: argparse.Namespace) -> None:
    """`mendnet bench --summary DIR ... [--doc FILE] [--section summary_NAME]`: the summary printed, or
    written as FILE's SUMMARY section (or the summary's part `--section`)."""
    values = {flag: getattr(args, attr) for flag, attr in SUMMARY_REFUSES.items()}
    given = [flag for flag, value in values.items() if value is not None and value is not False]
    if given:
        raise MendnetError(f"--summary takes no {', '.join(given)} (only results folders, --doc, --section)")
    section = args.section or SUMMARY
    if not is_summary(section):
        raise MendnetError(f"--summary writes section {SUMMARY!r} or {SUMMARY}_NAME, not {section!r}")
    folders = [read_results(path) for path in args.summary]
    if args.doc:
        check_writable(args.doc, is_file=True)
    commit = commit_text(git_state([PACKAGE]), code_identity())
    command = summary_command(args.summary, args.doc, section)
    provenance_text = provenance_line(folders, command, commit, time.strftime("%Y-%m-%d"))
    text = summary_text(folders, provenance_text, part_title(section))
    if args.doc is None:
        print(text)
        return
    write_section(section, text, args.doc)
    print(f"summary of {len(folders)} results folder(s) → {args.doc}, section {section}")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.summary is not None:
        cmd_summary(args)
        return
    if args.recipe is None:
        raise MendnetError("give a recipe file, e.g. recipes/smoke.toml, or --summary RESULTS_DIR")
    if args.section is not None and is_summary(args.section):
        raise MendnetError(
            f"section {args.section!r} is a summary's (--summary writes {SUMMARY}, {SUMMARY}_NAME); "
            "name the recipe's another"
        )
    if args.recipe.is_dir():
        raise MendnetError(f"recipe {args.recipe} is a folder; give a recipe file, e.g. recipes/smoke.toml")
    if args.smoke and args.doc:
        raise MendnetError("--doc does not take a --smoke run: its numbers are not results")
    recipe = load_recipe(args.recipe)
    if args.device is not None:
        recipe = dataclasses.replace(recipe, run=dataclasses.replace(recipe.run, device=args.device))
    out = args.out or Path("runs") / f"bench-{recipe.name}"
    if args.smoke:
        recipe, out = smoke_recipe(recipe), out / SMOKE_FOLDER
    check_writable(out)  # an existing output folder is resumed
    origin = None
    if args.doc:  # the commit and the code as the run starts
        check_writable(args.doc, is_file=True)
        origin = provenance(args.recipe, command_line(args), PACKAGE, code_identity())
    summary = run_bench(
        recipe,
        out,
        engine="ray" if args.ray or args.ray_address else "local",
        ray_address=args.ray_address,
        max_cells=args.max_cells,
        keep_stale=args.keep_stale,
        progress=not args.quiet,
    )
    if origin is not None:
        write_doc_section(recipe, out, args.doc, origin, args.section)
    kept = f", {len(summary.stale)} stale kept" if summary.stale else ""
    failed = f", {len(summary.failed)} failed" if summary.failed else ""
    print(
        f"{len(summary.computed)} cells computed, {len(summary.skipped)} already finished{kept}{failed}, "
        f"{len(summary.missing)} left ({summary.seconds:.0f} s) → {out}/results.csv, tables.md"
    )
    if summary.failed:
        causes = sorted(set(summary.failed.values()))
        more = f" (and {len(causes) - 1} other cause(s), listed above)" if len(causes) > 1 else ""
        raise MendnetError(
            f"{len(summary.failed)} cell(s) not computed: {causes[0]}{more}; the others are in {out}"
        )
