"""`mendnet attack`: clean and robust accuracy of an artefact under adversarial attacks
(`jobs.attack`), with one flag per attack setting over all registered attacks."""

from __future__ import annotations

import argparse
from pathlib import Path

from mendnet.artefact import atomic_write_bytes, atomic_write_json, load_artefact
from mendnet.cli.common import add_common, check_out, run_options
from mendnet.cli.config import flag, parse_number
from mendnet.errors import MendnetError
from mendnet.jobs.attack import DEFAULT_ATTACKS, attack_artefact
from mendnet.report.steps_curve import parse_steps
from mendnet.report.tables import print_table
from mendnet.threats.adversarial import ATTACKS
from mendnet.threats.adversarial.autoattack import summary_lines
from mendnet.threats.adversarial.registry import attack_fields

ATTACK_HELP = {
    "eps": "budget in pixel units (L∞: 8/255, or 0.1 on 28×28 greyscale; L2: 0.5)",
    "targeted": "push toward a target label instead of away from the true one",
    "target_mode": "targets of a targeted attack: random or least-likely",
    "alpha": "step size (PGD: eps/4; MI-FGSM: eps/10)",
    "steps": "iterations (PGD, MI-FGSM: 10; CW-L2: 100)",
    "restarts": "PGD random restarts, each on the points still robust (1)",
    "random_start": "PGD starts uniformly in the ball (on)",
    "mu": "MI-FGSM momentum decay (1.0)",
    "c": "CW-L2 initial trade-off constant (1.0)",
    "kappa": "CW confidence margin (0)",
    "lr": "CW-L2 Adam learning rate (0.01)",
    "search_steps": "CW-L2 binary-search steps on c (5)",
    "aa_version": "AutoAttack version: standard, plus or rand (standard)",
    "aa_attacks": "AutoAttack components to run, in order, e.g. apgd-ce,apgd-t (the version's: "
    "apgd-ce,apgd-t,fab-t,square); from apgd-ce, apgd-dlr, fab, square, apgd-t, fab-t",
    "aa_targets": "AutoAttack target classes of apgd-t and fab-t (9, at most classes − 1)",
    "aa_square_queries": "AutoAttack Square queries (5000)",
}


def add_attack_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per attack setting (over all attacks); unset flags keep each attack's own default."""
    group = p.add_argument_group("attack settings (each applies to the attacks that have it)")
    for name, kind in attack_fields().items():
        if name == "seed":  # the common --seed seeds the attacks too
            continue
        text = str(kind)
        common = {"dest": f"atk_{name}", "default": None, "help": ATTACK_HELP.get(name)}
        if "bool" in text:
            group.add_argument(flag(name), action=argparse.BooleanOptionalAction, **common)
        elif "float" in text:
            group.add_argument(flag(name), type=parse_number, metavar="X", **common)
        elif "int" in text:
            group.add_argument(flag(name), type=int, metavar="N", **common)
        else:
            group.add_argument(flag(name), metavar="NAME", **common)


def add_attack_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack",
        help="clean and robust accuracy under adversarial attacks",
        description="Robust accuracy of an artefact's model on its test set under one or more attacks "
        "(each attack's own accuracy, and the worst case over them). Budgets are in pixel units [0, 1] "
        "and accept fractions such as 8/255. L∞ attacks on 28×28 greyscale data default to eps 0.1. "
        "autoattack (L∞) and autoattack-l2 run the authors' package (pyautoattack) once over all the "
        "images, in batches of --batch-size; the output names the component that broke each image, "
        "the seconds, and the package's checks as warnings.",
    )
    p.add_argument("model", type=Path, help="artefact folder")
    p.add_argument(
        "--attack",
        dest="attacks",
        action="append",
        default=None,
        metavar="NAME",
        help=f"attack (repeatable; default: fgsm and pgd-linf): {', '.join(ATTACKS)}",
    )
    add_attack_arguments(p)
    p.add_argument("--images", type=int, default=1000, help="first N test images (default: 1000)")
    p.add_argument(
        "--batch-size", type=int, default=250, help="attack batch size, AutoAttack's too (default: 250)"
    )
    p.add_argument(
        "--cascade",
        action="store_true",
        help="later attacks only on points still robust (cheaper; per-attack numbers become cumulative)",
    )
    p.add_argument(
        "--png", type=Path, default=None, help="save clean / adversarial / perturbation of 6 images"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default: ARTEFACT/robustness.json; the artefact's own files are never changed)",
    )
    p.add_argument(
        "--steps-curve",
        default=None,
        metavar="N,N,...",
        help="also accuracy under PGD-L∞ with each step count, e.g. 0,7,25,100 (0: clean), as JSON and a PNG",
    )
    p.add_argument(
        "--curve-png",
        type=Path,
        default=None,
        help="PNG of the steps curve (default: beside the results JSON)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing results file")
    add_common(p)


def cmd_attack(args: argparse.Namespace) -> None:
    out = args.out or args.model / "robustness.json"
    curve_steps = parse_steps(args.steps_curve) if args.steps_curve else None
    curve_png = (args.curve_png or out.parent / "steps_curve.png") if curve_steps else None
    for path in (out, args.png, curve_png):
        if path is not None:
            check_out(path, args.force, is_file=True)
    if args.images < 1 or args.batch_size < 1:
        raise MendnetError("--images and --batch-size must be ≥ 1")
    outcome = attack_artefact(
        load_artefact(args.model),
        args.attacks or DEFAULT_ATTACKS,
        {name: getattr(args, f"atk_{name}", None) for name in attack_fields()},
        images=args.images,
        batch_size=args.batch_size,
        cascade=args.cascade,
        grid=args.png is not None,
        steps_curve=curve_steps,
        **run_options(args),
    )
    if outcome.png is not None:
        atomic_write_bytes(args.png, outcome.png)
    if outcome.curve_png is not None and curve_png is not None:
        atomic_write_bytes(curve_png, outcome.curve_png)
    atomic_write_json(out, outcome.report)
    result = outcome.result
    rows = {
        "clean": {"acc": result.clean_acc},
        **{k: {"acc": v} for k, v in result.per_attack.items()},
        "worst case": {"acc": result.worst_case},
    }
    title = f"robust accuracy, {result.n} test images, {outcome.report['seconds']:.1f} s → {out}"
    print_table(rows, title=title, first="attack")
    for name, summary in result.details.items():
        for line in summary_lines(name, summary):
            print(line)
    for gap in outcome.gaps:
        if gap["flag"]:
            print(
                f"warning: {gap['pgd']} is {100 * gap['gap']:.1f} points above {gap['autoattack']} on "
                "the same images: likely gradient masking; trust AutoAttack's number"
            )
