"""`mendnet detect` (Neural Cleanse) and `mendnet locate` (AI-Lancet's error-inducing weights): analyses
of an artefact on seeded defender data, written into a folder; the artefact is not changed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mendnet.artefact import atomic_output_dir, load_artefact, write_files
from mendnet.cli.common import add_clean_fraction, add_common, check_out, run_options
from mendnet.cli.config import add_config_arguments, config_from_args
from mendnet.detect.neural_cleanse import Config as NCConfig
from mendnet.jobs.detect import detect_artefact
from mendnet.repair.lancet.job import locate_artefact
from mendnet.repair.lancet.repair import Config as LancetConfig
from mendnet.report.tables import print_detection_table


def add_analysis_parser(
    sub: argparse._SubParsersAction, command: str, config: type, settings: str, summary: str, description: str
) -> None:
    """The sub-command `command` of an analysis (`analyse_artefact`): the artefact, the defender fraction,
    the flags of `config` (group `settings`) and the output folder (default runs/ARTEFACT-COMMAND); the
    description ends with the config's docstring."""
    p = sub.add_parser(command, help=summary, description=description + (config.__doc__ or ""))
    p.add_argument("model", type=Path, help="artefact folder")
    add_clean_fraction(p)
    add_config_arguments(p, config, settings)
    add_common(p, f"output folder (default: runs/ARTEFACT-{command})")


def add_detect_parser(sub: argparse._SubParsersAction) -> None:
    add_analysis_parser(
        sub,
        "detect",
        NCConfig,
        "neural cleanse settings",
        summary="find a backdoor's target label by Neural Cleanse",
        description="Reverse-engineer the smallest trigger of every label on seeded clean defender data "
        "and flag the labels whose trigger is anomalously small (Neural Cleanse, Wang et al. 2019). "
        "Writes detect.json, reversed_trigger.safetensors (reusable by `repair neural-cleanse --trigger`) "
        "and reversed_trigger.png; the input artefact is not changed. ",
    )


def add_locate_parser(sub: argparse._SubParsersAction) -> None:
    add_analysis_parser(
        sub,
        "locate",
        LancetConfig,
        "ai-lancet settings",
        summary="find the error-inducing weights of a backdoor or of misclassifications (AI-Lancet)",
        description="Locate the error-inducing neurons (weights) behind wrong outputs on seeded clean "
        "defender data (AI-Lancet, Zhao et al. 2021): per-layer ablation statistics, the chosen layer and "
        "its vote map. Backdoor mode uses Neural Cleanse's reversed trigger of the flagged label (the "
        "recorded trigger only with --oracle-trigger); --misclassified locates the defender images the "
        "model gets wrong. Writes locate.json, votes.safetensors and lancet.png; the input artefact is not "
        "changed. ",
    )


def analyse_artefact(
    args: argparse.Namespace, job: Callable[..., Any], config: Any, suffix: str
) -> tuple[Path, Any]:
    """Run an analysis job (`detect_artefact`, `locate_artefact`) on the `--model` artefact with seeded
    defender data, and write its files atomically into `--out` (default runs/NAME-SUFFIX); returns the
    folder and the job's outcome."""
    out = args.out or Path("runs") / f"{args.model.resolve().name}-{suffix}"
    check_out(out, args.force)
    outcome = job(
        load_artefact(args.model),
        config,
        clean_fraction=args.clean_fraction,
        **run_options(args),
    )
    with atomic_output_dir(out, args.force) as tmp:
        write_files(tmp, outcome.files)
    return out, outcome


def cmd_detect(args: argparse.Namespace) -> None:
    out, outcome = analyse_artefact(args, detect_artefact, config_from_args(NCConfig, args), "detect")
    flagged = ", ".join(map(str, outcome.report["flagged"])) or "none"
    seconds = outcome.report["seconds"]
    print_detection_table(
        outcome.report["labels"], title=f"neural cleanse: flagged {flagged} ({seconds:.0f} s) → {out}"
    )


def cmd_locate(args: argparse.Namespace) -> None:
    out, outcome = analyse_artefact(args, locate_artefact, config_from_args(LancetConfig, args), "locate")
    report = outcome.report
    for row in report["layers"]:
        ratio = "-" if row["min_ratio"] is None else f"{row['min_ratio']:.2g}"
        print(f"{row['layer']:<24} corrected {row['successes']:>3}/{row['samples']}  minimal ratio {ratio}")
    print(
        f"chosen layer {report['chosen_layer']}: {report['ei_neurons']} EI neurons of "
        f"{report['layer_weights']} weights → {out}"
    )
