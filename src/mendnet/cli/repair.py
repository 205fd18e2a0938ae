"""`mendnet repair METHOD` (backdoor repairs) and `mendnet robustify METHOD` (robustness training and
transfer): one sub-command per registered method, flags generated from its Config."""

from __future__ import annotations

import argparse
from pathlib import Path

from mendnet.artefact import load_artefact, save_artefact
from mendnet.cli.common import add_clean_fraction, add_common, add_data, check_out, data_ref, run_options
from mendnet.cli.config import add_config_arguments, config_from_args, parse_number
from mendnet.data.ref import DataRef, data_of
from mendnet.jobs.repair import repair_model
from mendnet.models import architecture_names
from mendnet.registry import REPAIRS, ROBUSTIFIERS
from mendnet.report.tables import print_table
from mendnet.robust.evaluation import AA_IMAGES, report_rows
from mendnet.robust.job import robustify_model
from mendnet.robust.transfer import SPLITS

# What a repair that takes an optional teacher (`Method.teacher == "optional"`) uses it for.
TEACHER_HELP = {"nad": "attention teacher", "mcr": "the curve's second endpoint: a fine-tuned"}


def add_repair_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repair", help="repair a backdoored model", description="Repair a model artefact.")
    methods = p.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, method in REPAIRS.items():
        m = methods.add_parser(name, help=method.summary, description=method.config.__doc__)
        m.add_argument("--model", type=Path, required=True, help="artefact folder of the model to repair")
        add_clean_fraction(m)
        if method.teacher == "optional":
            m.add_argument(
                "--teacher",
                type=Path,
                default=None,
                help=f"{TEACHER_HELP[name]} artefact (default: fine-tune a copy of the model)",
            )
        add_config_arguments(m, method.config, f"{name} settings")
        add_common(m, "output artefact folder (default: runs/PARENT-METHOD)")


def add_robustify_parser(sub: argparse._SubParsersAction) -> None:
    """`robustify METHOD`, one sub-command per registered robustifier, flags generated from its Config."""
    p = sub.add_parser(
        "robustify",
        help="robustness training or transfer (PGD-AT, TRADES, FGSM-RS, Shafahi, Robust-KD, AGKD-BML)",
        description="Train a robust model and write an artefact whose metrics.json has clean accuracy, "
        "robust accuracy under FGSM, PGD-L∞ (7 and 20 steps), PGD-L2 (ε 0.25, 0.5), CW-L∞, AutoAttack "
        "(standard, on the first --aa-images images) and the worst case over them, and training seconds. "
        "aa_gap_flag marks PGD-L∞-20 more than 2 points above AutoAttack. L∞ budgets default to 0.1 on "
        "28×28 greyscale, else 8/255.",
    )
    methods = p.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, method in ROBUSTIFIERS.items():
        m = methods.add_parser(name, help=method.summary, description=method.config.__doc__)
        role = method.teacher
        if role:
            m.add_argument(
                "--teacher",
                type=Path,
                required=True,
                help=f"{role} teacher artefact, frozen; the student starts as its copy (a new head when "
                "the task has other classes)",
            )
        else:
            m.add_argument("--arch", default="small-cnn", choices=architecture_names(), help="fresh model")
        m.add_argument("--model", type=Path, default=None, help="artefact to start from instead")
        add_data(m, default=None)
        m.add_argument(
            "--split",
            default="all",
            choices=SPLITS,
            help="train on the whole training set, or its source / target half by samples (default: all)",
        )
        m.add_argument("--split-seed", type=int, default=0, help="seed of the halves (default: 0)")
        m.add_argument("--train-subset", type=int, default=None, help="train on N seeded images only")
        m.add_argument("--eval-images", type=int, default=1000, help="first N test images (default: 1000)")
        m.add_argument(
            "--eval-eps", type=parse_number, default=None, help="L∞ budget of the report's attacks"
        )
        m.add_argument(
            "--aa-images",
            type=int,
            default=AA_IMAGES,
            help=f"AutoAttack (standard) on the first N of them; 0: none (default: {AA_IMAGES}; about "
            "4 s an image of a robust small CNN on 2 CPU cores)",
        )
        add_config_arguments(m, method.config, f"{name} settings")
        add_common(m, "output artefact folder (default: runs/robustify-METHOD-SPLIT-sSEED)")


def cmd_repair(args: argparse.Namespace) -> None:
    method = REPAIRS[args.method]
    cfg = config_from_args(method.config, args)
    out = args.out or Path("runs") / f"{args.model.name}-{args.method}"
    check_out(out, args.force)
    art = load_artefact(args.model)
    teacher = load_artefact(args.teacher).model if getattr(args, "teacher", None) else None
    outcome = repair_model(
        art,
        args.method,
        cfg,
        clean_fraction=args.clean_fraction,
        **run_options(args),
        teacher=teacher,
    )
    save_artefact(out, outcome.model, outcome.meta, outcome.metrics, outcome.files, force=args.force)
    rows = {"before": outcome.metrics["before"], args.method: outcome.metrics}
    print_table(rows, title=f"{args.method} → {out}")


def cmd_robustify(args: argparse.Namespace) -> None:
    cfg = config_from_args(ROBUSTIFIERS[args.method].config, args)
    out = args.out or Path("runs") / f"robustify-{args.method}-{args.split}-s{args.seed}"
    check_out(out, args.force)
    teacher = load_artefact(args.teacher) if getattr(args, "teacher", None) else None
    init = load_artefact(args.model) if args.model else None
    source = init or teacher
    if args.data:
        data = data_ref(args)
    else:
        data = data_of(source.meta) if source else DataRef("fashion-mnist", args.data_dir, args.image_size)
    outcome = robustify_model(
        args.method,
        cfg,
        data=data,
        teacher=teacher,
        init=init,
        arch=getattr(args, "arch", "small-cnn"),
        split=args.split,
        split_seed=args.split_seed,
        train_subset=args.train_subset,
        eval_images=args.eval_images,
        eval_eps=args.eval_eps,
        aa_images=args.aa_images,
        **run_options(args),
    )
    save_artefact(out, outcome.model, outcome.meta, outcome.metrics, force=args.force)
    m = outcome.metrics
    rows, lines = report_rows(m)
    title = f"{args.method}: trained in {m['train_seconds']:.0f} s, {m['eval_images']} test images → {out}"
    print_table(rows, title=title, first="attack")
    for line in lines:
        print(line)
