"""The `mendnet` command: thin argument parsing into the same jobs and config dataclasses the API uses.

Every user-facing problem ends as one line on stderr (`mendnet: error: ...`) and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mendnet import __version__
from mendnet.cli_config import add_config_arguments, config_from_args, flag, parse_number
from mendnet.errors import MendnetError
from mendnet.registry import REPAIRS, ROBUSTIFIERS
from mendnet.train import TrainConfig

ERROR_EXIT = 2


def add_common(p: argparse.ArgumentParser, out_help: str | None = None) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if out_help:
        p.add_argument("--out", type=Path, default=None, help=out_help)
        p.add_argument("--force", action="store_true", help="replace an existing output folder")


def add_data(p: argparse.ArgumentParser, default: str | None = "fashion-mnist") -> None:
    from mendnet.data.catalog import dataset_names

    p.add_argument("--data", default=default, choices=dataset_names(), help=f"data set (default: {default})")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the data set (else $MENDNET_DATA, then /usr/share/datasets/NAME)",
    )
    add_download(p)


def add_download(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch the data set's official files (MD5-checked) into --data-dir or $MENDNET_DATA first "
        "when they are not found",
    )


def prepare_data(args: argparse.Namespace) -> None:
    """Before the command starts: a `--data-dir` must exist (no silent fall-back to $MENDNET_DATA or the
    system copy); with `--download`, the files of both splits are found, else downloaded (MD5-checked)
    into --data-dir or $MENDNET_DATA."""
    from mendnet.data.catalog import SPLITS, check_data_dir, dataset_info, find_split

    if not getattr(args, "download", False):
        check_data_dir(getattr(args, "data_dir", None))
        return
    name = getattr(args, "data", None) or ("fashion-mnist" if args.command == "demo" else None)
    if name is None:
        raise MendnetError("--download needs --data NAME")
    info = dataset_info(name)
    if info.read is None:
        raise MendnetError(f"{name}: cannot be downloaded; it reads your own --data-dir")
    for split in SPLITS:
        find_split(info, split, args.data_dir, download=True)


def key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE as (key, raw text); `typed_attack_params` types the value once the attack is known."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip().replace("-", "_"), raw


# options of the planting itself, accepted for every attack (jobs.PoisonSpec)
PLANTING_PARAMS: dict[str, Any] = {"clean_label": int, "clean_model": str}


def parse_param(kind: Any, raw: str, where: str) -> Any:
    """`raw` as the dataclass field type `kind`: int, float (fractions such as 8/255 too), a JSON list,
    or text; `none` for an optional field."""
    options = [kind]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw.strip().lower() == "none":
            return None
    kind = options[0]
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise MendnetError(f"{where}: expected an integer, got {raw!r}") from None
    if kind is float:
        try:
            return parse_number(raw)
        except argparse.ArgumentTypeError:
            raise MendnetError(f"{where}: expected a number, got {raw!r}") from None
    if (typing.get_origin(kind) or kind) is list:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list):
            raise MendnetError(f"{where}: expected a JSON list such as [1, 2], got {raw!r}")
        return value
    return raw


def typed_attack_params(attack: str, pairs: Sequence[tuple[str, str]]) -> tuple[tuple[str, Any], ...]:
    """`--attack-param` values typed by the fields of the attack's trigger dataclass (plus the planting
    options clean_label and clean_model); an unknown key is an error listing the known ones."""
    from mendnet.threats.backdoor import attack_entry, trigger_parameters

    hints = typing.get_type_hints(attack_entry(attack).trigger)
    kinds = {name: hints[name] for name in trigger_parameters(attack)} | PLANTING_PARAMS
    for key, _ in pairs:
        if key not in kinds:
            raise MendnetError(
                f"--attack-param {key}: not a parameter of {attack}; known: {', '.join(kinds)}"
            )
    return tuple((key, parse_param(kinds[key], raw, f"--attack-param {key}")) for key, raw in pairs)


def attack_names() -> list[str]:
    from mendnet.threats.adversarial import ATTACKS

    return list(ATTACKS)


def attack_fields() -> dict[str, type]:
    from mendnet.threats.adversarial.registry import attack_fields as fields

    return fields()


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


def backdoor_names() -> list[str]:
    from mendnet.threats.backdoor import TRIGGERS

    return list(TRIGGERS)


def add_backdoor_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    """--attack, --target, --rate, --mode and --attack-param of `train` and `poison`."""
    p.add_argument(
        "--attack",
        default=None,
        required=required,
        metavar="NAME",
        help=f"backdoor attack to plant: {', '.join(backdoor_names())}",
    )
    p.add_argument("--target", type=int, default=0, help="target label (all-to-one; default 0)")
    p.add_argument(
        "--rate",
        type=parse_number,
        default=0.1,
        help="poisoned fraction of the training set (clean-label: at most the target class; default 0.1)",
    )
    p.add_argument("--mode", default="all-to-one", choices=["all-to-one", "all-to-all"])
    p.add_argument(
        "--attack-param",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="trigger parameter (repeatable), e.g. size=4, alpha=0.1, pattern=PATH (blend); "
        "clean_label=0/1 overrides the attack's labelling (sig, cl, refool are clean-label by default); "
        "clean_model=ARTEFACT gives trojan and cl their clean model (train: else a clean surrogate of the "
        "same model and settings is trained first, doubling the time)",
    )


def add_robustify_parser(sub: argparse._SubParsersAction) -> None:
    """`robustify METHOD`, one sub-command per registered robustifier, flags generated from its Config."""
    from mendnet.models import architecture_names
    from mendnet.robust.evaluation import AA_IMAGES
    from mendnet.robust.transfer import SPLITS

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
        role = getattr(method.config, "teacher_role", None)
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


def add_audit_parser(sub: argparse._SubParsersAction) -> None:
    """`audit MODEL`: accuracy, Neural Cleanse, robust accuracy, attention maps and advice (mendnet.audit)."""
    from mendnet.audit.run import AuditConfig

    p = sub.add_parser(
        "audit",
        help="check one model for backdoors and adversarial weakness; writes report.html and report.md",
        description="Audit a model: clean accuracy, Neural Cleanse detection (anomaly index of every "
        "label), robust accuracy under FGSM, PGD-L∞, CW-L∞ and a budgeted AutoAttack (APGD-CE, APGD-T "
        "with 3 targets, Square with 1000 queries; ε 0.1 on 28×28 greyscale, else 8/255), "
        "attention maps of defender images stamped with the most suspicious label's reversed trigger, "
        "and advice. Writes report.html (self-contained), report.md, audit.json and the figures.",
    )
    p.add_argument(
        "model",
        help="artefact folder, a weights file (.safetensors/.pt, with --arch and --data), or "
        "module:factory / path/file.py:factory returning the trained network (with --data)",
    )
    p.add_argument("--arch", default=None, help="architecture of a weights file (a name or module:factory)")
    add_data(p, default=None)
    d = AuditConfig()
    for name, text in (
        ("test_images", "first N test images"),
        ("nc_epochs", "Neural Cleanse epochs"),
        ("nc_batches", "Neural Cleanse batches per epoch"),
        ("nc_batch_size", "Neural Cleanse batch size"),
        ("attack_steps", "PGD-L∞ and CW-L∞ steps"),
        ("aa_images", "images of the budgeted AutoAttack, 0: none"),
    ):
        p.add_argument(flag(name), type=int, default=getattr(d, name), help=f"{text} ({getattr(d, name)})")
    p.add_argument("--eps", type=parse_number, default=None, help="L∞ budget, e.g. 8/255 (default: above)")
    p.add_argument(
        "--clean-fraction",
        type=parse_number,
        default=d.clean_fraction,
        help=f"defender data as a fraction of the training set ({d.clean_fraction})",
    )
    add_common(p, "output folder (default: runs/audit-MODEL)")


def add_clean_fraction(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clean-fraction",
        type=parse_number,
        default=0.05,
        help="defender data as a fraction of the training set (default: 0.05)",
    )


def build_parser() -> argparse.ArgumentParser:
    from mendnet.models import architecture_names

    parser = argparse.ArgumentParser(
        prog="mendnet",
        description="Find and repair what is wrong inside trained image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"mendnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model, optionally with a planted backdoor",
        description="Train a model (optionally poisoned) and write an artefact folder.",
    )
    add_data(p)
    p.add_argument("--model", default="wrn-16-1", choices=architecture_names(), help="architecture")
    p.add_argument("--train-subset", type=int, default=None, help="train on N seeded images only")
    add_backdoor_arguments(p, required=False)
    add_config_arguments(p, TrainConfig, "training settings")
    add_common(p, "output artefact folder (default: runs/train-MODEL-ATTACK-sSEED)")

    p = sub.add_parser(
        "poison",
        help="write a poisoned training set to disk",
        description="Poison a data set's training split and write it (poisoned.safetensors, threat.json, "
        "README.txt, trigger.png) for training elsewhere. Trojan and CL need "
        "--attack-param clean_model=ARTEFACT.",
    )
    add_data(p)
    add_backdoor_arguments(p, required=True)
    add_common(p, "output folder (default: runs/poison-DATA-ATTACK-sSEED)")

    p = sub.add_parser(
        "eval",
        help="ACC, ASR, RA of an artefact or a weights file",
        description="Evaluate an artefact folder (or a .safetensors/.pt file with --arch).",
    )
    p.add_argument("model", type=Path, help="artefact folder, or a weights file")
    p.add_argument("--arch", default=None, help="architecture of a bare weights file")
    add_data(p, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")
    add_common(p)

    p = sub.add_parser("repair", help="repair a backdoored model", description="Repair a model artefact.")
    methods = p.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, method in REPAIRS.items():
        m = methods.add_parser(name, help=method.summary, description=method.config.__doc__)
        m.add_argument("--model", type=Path, required=True, help="artefact folder of the model to repair")
        add_clean_fraction(m)
        if name == "nad":
            m.add_argument(
                "--teacher",
                type=Path,
                default=None,
                help="teacher artefact (default: fine-tune a copy of the model)",
            )
        add_config_arguments(m, method.config, f"{name} settings")
        add_common(m, "output artefact folder (default: runs/PARENT-METHOD)")

    from mendnet.detect.neural_cleanse import Config as NCConfig

    p = sub.add_parser(
        "detect",
        help="find a backdoor's target label by Neural Cleanse",
        description="Reverse-engineer the smallest trigger of every label on seeded clean defender data "
        "and flag the labels whose trigger is anomalously small (Neural Cleanse, Wang et al. 2019). "
        "Writes detect.json, reversed_trigger.safetensors (reusable by `repair neural-cleanse --trigger`) "
        "and reversed_trigger.png; the input artefact is not changed. " + (NCConfig.__doc__ or ""),
    )
    p.add_argument("model", type=Path, help="artefact folder")
    add_clean_fraction(p)
    add_config_arguments(p, NCConfig, "neural cleanse settings")
    add_common(p, "output folder (default: runs/ARTEFACT-detect)")

    from mendnet.repair.lancet.repair import Config as LancetConfig

    p = sub.add_parser(
        "locate",
        help="find the error-inducing weights of a backdoor or of misclassifications (AI-Lancet)",
        description="Locate the error-inducing neurons (weights) behind wrong outputs on seeded clean "
        "defender data (AI-Lancet, Zhao et al. 2021): per-layer ablation statistics, the chosen layer and "
        "its vote map. Backdoor mode uses Neural Cleanse's reversed trigger of the flagged label (the "
        "recorded trigger only with --oracle-trigger); --misclassified locates the defender images the "
        "model gets wrong. Writes locate.json, votes.safetensors and lancet.png; the input artefact is not "
        "changed. " + (LancetConfig.__doc__ or ""),
    )
    p.add_argument("model", type=Path, help="artefact folder")
    add_clean_fraction(p)
    add_config_arguments(p, LancetConfig, "ai-lancet settings")
    add_common(p, "output folder (default: runs/ARTEFACT-locate)")

    p = sub.add_parser(
        "attention",
        help="PNG of per-stage attention maps of triggered images",
        description="Attention maps of the same triggered test images under 2+ models.",
    )
    p.add_argument("models", type=Path, nargs="+", help="artefact folders (the first one's trigger is used)")
    p.add_argument("--images", type=int, default=4, help="number of test images (default: 4)")
    p.add_argument("--out", type=Path, default=Path("attention.png"), help="PNG file to write")
    p.add_argument("--force", action="store_true", help="replace an existing PNG")

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
        help=f"attack (repeatable; default: fgsm and pgd-linf): {', '.join(attack_names())}",
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

    add_robustify_parser(sub)
    add_bench_parser(sub)
    add_audit_parser(sub)

    p = sub.add_parser(
        "demo",
        help="the main job: BadNets → train → fine-tuning and NAD, with a report",
        description="Fashion-MNIST, WRN-16-1, BadNets 10% → FT and NAD with 5% data.",
    )
    p.add_argument("--data-dir", default=None, help="folder holding Fashion-MNIST")
    add_download(p)
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs of the backdoored model (default: the demo's 5)"
    )
    add_common(p, "output folder (default: runs/demo)")
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    from mendnet.artefact import save_artefact
    from mendnet.device import resolve_device
    from mendnet.jobs import DataRef, PoisonSpec, train_model
    from mendnet.report.tables import print_table
    from mendnet.threats.backdoor import attack_entry

    cfg = config_from_args(TrainConfig, args)
    spec = None
    if args.attack:
        attack_entry(args.attack)  # an unknown name fails before any work
        params = typed_attack_params(args.attack, args.attack_param)
        spec = PoisonSpec(args.attack, args.target, args.rate, args.mode, params)
    elif args.attack_param:
        raise MendnetError("--attack-param needs --attack")
    out = args.out or Path("runs") / f"train-{args.model}-{args.attack or 'clean'}-s{args.seed}"
    check_out(out, args.force)
    outcome = train_model(
        DataRef(args.data, args.data_dir),
        args.model,
        cfg,
        poison_spec=spec,
        seed=args.seed,
        device=resolve_device(args.device),
        progress=not args.quiet,
        train_subset=args.train_subset,
    )
    save_artefact(out, outcome.model, outcome.meta, outcome.metrics, outcome.files, force=args.force)
    print_table({out.name: outcome.metrics}, title=f"trained → {out}")


def cmd_poison(args: argparse.Namespace) -> None:
    from mendnet.device import resolve_device
    from mendnet.jobs import DataRef, PoisonSpec
    from mendnet.poison_export import poison_dataset, write_poisoned_set
    from mendnet.threats.backdoor import attack_entry

    attack_entry(args.attack)
    params = typed_attack_params(args.attack, args.attack_param)
    out = args.out or Path("runs") / f"poison-{args.data}-{args.attack}-s{args.seed}"
    check_out(out, args.force)
    ref = DataRef(args.data, args.data_dir)
    spec = PoisonSpec(args.attack, args.target, args.rate, args.mode, params)
    planted, png = poison_dataset(ref, spec, seed=args.seed, device=resolve_device(args.device))
    write_poisoned_set(out, ref, planted, png, force=args.force, seed=args.seed)
    rec = planted.record
    kind = "clean-label" if rec.clean_label else "dirty-label"
    count = len(rec.poisoned_indices)
    print(f"wrote {out}/: {count} of {len(planted.data)} training images poisoned ({rec.attack}, {kind})")


def check_out(out: Path, force: bool, *, is_file: bool = False) -> None:
    """Before any work is done, refuse an existing output (unless `force`) and one that could not be
    written (`artefact.check_writable`); the atomic write checks again at the end. Every command that
    writes calls this first, for each output folder or file."""
    from mendnet.artefact import check_writable

    if out.exists() and not force:
        raise MendnetError(f"output {out} already exists; pass --force to replace it")
    check_writable(out, is_file=is_file)


def load_model_arg(args: argparse.Namespace):
    from mendnet.artefact import Artefact, load_artefact, load_weights_into, read_weights
    from mendnet.data.catalog import load_dataset
    from mendnet.models import ModelSpec, build_classifier

    if args.model.is_dir() or args.arch is None:
        art = load_artefact(args.model)
        if args.data:
            art.meta["data"] = {"name": args.data, "data_dir": args.data_dir}
        return art
    if not args.data:
        raise MendnetError("a bare weights file needs --data (and --arch)")
    test = load_dataset(args.data, "test", args.data_dir)
    model = build_classifier(ModelSpec(args.arch, test.num_classes, test.shape, test.mean, test.std))
    load_weights_into(model, read_weights(args.model), args.model)
    return Artefact(model, {"data": {"name": args.data, "data_dir": args.data_dir}, "threat": None}, {}, None)


def cmd_eval(args: argparse.Namespace) -> None:
    from mendnet.artefact import atomic_write_json
    from mendnet.device import resolve_device
    from mendnet.jobs import evaluate_artefact
    from mendnet.report.tables import print_table

    if args.json:
        check_out(args.json, force=True, is_file=True)  # --json replaces an existing file, as it always has
    art = load_model_arg(args)
    metrics = evaluate_artefact(art, resolve_device(args.device))
    if args.json:
        atomic_write_json(args.json, metrics)
    print_table({str(args.model): metrics}, title="evaluation")


def cmd_repair(args: argparse.Namespace) -> None:
    from mendnet.artefact import load_artefact, save_artefact
    from mendnet.device import resolve_device
    from mendnet.jobs import repair_model
    from mendnet.report.tables import print_table

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
        seed=args.seed,
        device=resolve_device(args.device),
        progress=not args.quiet,
        teacher=teacher,
    )
    save_artefact(out, outcome.model, outcome.meta, outcome.metrics, outcome.files, force=args.force)
    rows = {"before": outcome.metrics["before"], args.method: outcome.metrics}
    print_table(rows, title=f"{args.method} → {out}")


def analyse_artefact(
    args: argparse.Namespace, job: Callable[..., Any], config: Any, suffix: str
) -> tuple[Path, Any]:
    """Run an analysis job (`detect_artefact`, `locate_artefact`) on the `--model` artefact with seeded
    defender data, and write its files atomically into `--out` (default runs/NAME-SUFFIX); returns the
    folder and the job's outcome."""
    from mendnet.artefact import atomic_output_dir, load_artefact, write_files
    from mendnet.device import resolve_device

    out = args.out or Path("runs") / f"{args.model.resolve().name}-{suffix}"
    check_out(out, args.force)
    outcome = job(
        load_artefact(args.model),
        config,
        clean_fraction=args.clean_fraction,
        seed=args.seed,
        device=resolve_device(args.device),
        progress=not args.quiet,
    )
    with atomic_output_dir(out, args.force) as tmp:
        write_files(tmp, outcome.files)
    return out, outcome


def cmd_detect(args: argparse.Namespace) -> None:
    from mendnet.detect.neural_cleanse import Config as NCConfig
    from mendnet.jobs import detect_artefact
    from mendnet.report.tables import print_detection_table

    out, outcome = analyse_artefact(args, detect_artefact, config_from_args(NCConfig, args), "detect")
    flagged = ", ".join(map(str, outcome.report["flagged"])) or "none"
    seconds = outcome.report["seconds"]
    print_detection_table(
        outcome.report["labels"], title=f"neural cleanse: flagged {flagged} ({seconds:.0f} s) → {out}"
    )


def cmd_locate(args: argparse.Namespace) -> None:
    from mendnet.repair.lancet.job import locate_artefact
    from mendnet.repair.lancet.repair import Config as LancetConfig

    out, outcome = analyse_artefact(args, locate_artefact, config_from_args(LancetConfig, args), "locate")
    report = outcome.report
    for row in report["layers"]:
        ratio = "-" if row["min_ratio"] is None else f"{row['min_ratio']:.2g}"
        print(f"{row['layer']:<24} corrected {row['successes']:>3}/{row['samples']}  minimal ratio {ratio}")
    print(
        f"chosen layer {report['chosen_layer']}: {report['ei_neurons']} EI neurons of "
        f"{report['layer_weights']} weights → {out}"
    )


def cmd_attention(args: argparse.Namespace) -> None:
    import torch

    from mendnet.artefact import atomic_write_bytes, load_artefact
    from mendnet.data.catalog import load_dataset
    from mendnet.jobs import backdoor_test_for, data_of, threat_of
    from mendnet.report.attention_grid import attention_grid_png

    if len(args.models) < 2:
        raise MendnetError("attention needs two or more models to compare")
    check_out(args.out, args.force, is_file=True)
    arts = [load_artefact(m) for m in args.models]
    ref = data_of(arts[0].meta)
    test = load_dataset(ref.name, "test", ref.data_dir)
    backdoor = backdoor_test_for(threat_of(arts[0].meta), test)
    n = max(1, min(args.images, len(test)))
    if backdoor is None:
        x = test.float_images(torch.arange(n))
    else:
        x = backdoor.trigger.apply(backdoor.data.float_images(torch.arange(n)))
    png = attention_grid_png({str(m.path.name if m.path else i): m.model for i, m in enumerate(arts)}, x)
    atomic_write_bytes(args.out, png)
    print(f"wrote {args.out}")


def cmd_attack(args: argparse.Namespace) -> None:
    import torch

    from mendnet.artefact import atomic_write_bytes, atomic_write_json, load_artefact
    from mendnet.data.catalog import load_dataset
    from mendnet.device import resolve_device
    from mendnet.evaluate import classify
    from mendnet.jobs import check_fits, data_of
    from mendnet.report.adversarial_grid import perturbation_grid_png
    from mendnet.report.steps_curve import accuracy_vs_steps, parse_steps, steps_curve_png
    from mendnet.report.tables import print_table
    from mendnet.threats.adversarial import make_attack, robust_accuracy
    from mendnet.threats.adversarial.autoattack import summary_lines

    out = args.out or args.model / "robustness.json"
    curve_steps = parse_steps(args.steps_curve) if args.steps_curve else None
    curve_png = (args.curve_png or out.parent / "steps_curve.png") if curve_steps else None
    for path in (out, args.png, curve_png):
        if path is not None:
            check_out(path, args.force, is_file=True)
    if args.images < 1 or args.batch_size < 1:
        raise MendnetError("--images and --batch-size must be ≥ 1")
    art = load_artefact(args.model)
    ref = data_of(art.meta)
    test = load_dataset(ref.name, "test", ref.data_dir)
    check_fits(art.model, test)
    test = test.subset(torch.arange(min(args.images, len(test))))
    settings = {name: getattr(args, f"atk_{name}", None) for name in attack_fields()}
    settings["seed"] = args.seed
    attacks = [make_attack(name, test.shape, **settings) for name in args.attacks or ["fgsm", "pgd-linf"]]
    device = resolve_device(args.device)
    model = art.model.to(device)
    start = time.perf_counter()
    result = robust_accuracy(
        model,
        test,
        attacks=attacks,
        batch_size=args.batch_size,
        device=device,
        progress=not args.quiet,
        cascade=args.cascade,
    )
    seconds = time.perf_counter() - start
    if args.png:
        x = test.float_images(torch.arange(min(6, len(test)))).to(device)
        x_adv = attacks[-1](model, x, test.labels[: len(x)].to(device))
        png = perturbation_grid_png(
            x, x_adv, classify(model, x), classify(model, x_adv), test.classes, title=attacks[-1].name
        )
        atomic_write_bytes(args.png, png)
    gaps = [] if args.cascade else pgd_autoattack_gaps({a.name: a for a in attacks}, result.per_attack)
    report = {
        "model": str(args.model),
        "n": result.n,
        "cascade": args.cascade,
        "clean_acc": result.clean_acc,
        "robust_acc": result.per_attack,
        "worst_case": result.worst_case,
        "seconds": seconds,
    }
    if result.details:
        report["autoattack"] = result.details
    if gaps:
        report["pgd_autoattack_gap"] = gaps
    if curve_steps and curve_png:
        curve = accuracy_vs_steps(
            model,
            test,
            curve_steps,
            settings=settings,
            device=device,
            batch_size=args.batch_size,
            progress=not args.quiet,
        )
        name = make_attack("pgd-linf", test.shape, **settings).name
        report["steps_curve"] = {"attack": name, "accuracy": {str(k): v for k, v in curve.items()}}
        atomic_write_bytes(curve_png, steps_curve_png(curve, f"{args.model.name}: {name}, {result.n} images"))
    atomic_write_json(out, report)
    rows = {
        "clean": {"acc": result.clean_acc},
        **{k: {"acc": v} for k, v in result.per_attack.items()},
        "worst case": {"acc": result.worst_case},
    }
    title = f"robust accuracy, {result.n} test images, {seconds:.1f} s → {out}"
    print_table(rows, title=title, first="attack")
    for name, summary in result.details.items():
        for line in summary_lines(name, summary):
            print(line)
    for gap in gaps:
        if gap["flag"]:
            print(
                f"warning: {gap['pgd']} is {100 * gap['gap']:.1f} points above {gap['autoattack']} on "
                "the same images: likely gradient masking; trust AutoAttack's number"
            )


def pgd_autoattack_gaps(attacks: dict[str, Any], per_attack: dict[str, float]) -> list[dict[str, Any]]:
    """PGD's robust accuracy minus AutoAttack's, for each PGD and AutoAttack run at the same norm and ε;
    flagged above `PGD_GAP_FLAG` (2 points)."""
    from mendnet.threats.adversarial.autoattack import PGD_GAP_FLAG, AutoAttack

    out = []
    for aa_name, aa in attacks.items():
        if not isinstance(aa, AutoAttack):
            continue
        for name, attack in attacks.items():
            pgd = attack.slug in ("pgd-linf", "pgd-l2")
            if pgd and attack.norm == aa.norm and attack.eps == aa.eps:
                gap = per_attack[name] - per_attack[aa_name]
                out.append({"pgd": name, "autoattack": aa_name, "gap": gap, "flag": gap > PGD_GAP_FLAG})
    return out


def cmd_robustify(args: argparse.Namespace) -> None:
    from mendnet.artefact import load_artefact, save_artefact
    from mendnet.device import resolve_device
    from mendnet.jobs import DataRef, data_of
    from mendnet.report.tables import print_table
    from mendnet.robust.evaluation import report_rows
    from mendnet.robust.job import robustify_model

    cfg = config_from_args(ROBUSTIFIERS[args.method].config, args)
    out = args.out or Path("runs") / f"robustify-{args.method}-{args.split}-s{args.seed}"
    check_out(out, args.force)
    teacher = load_artefact(args.teacher) if getattr(args, "teacher", None) else None
    init = load_artefact(args.model) if args.model else None
    source = init or teacher
    if args.data:
        data = DataRef(args.data, args.data_dir)
    else:
        data = data_of(source.meta) if source else DataRef("fashion-mnist", args.data_dir)
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
        seed=args.seed,
        device=resolve_device(args.device),
        progress=not args.quiet,
    )
    save_artefact(out, outcome.model, outcome.meta, outcome.metrics, force=args.force)
    m = outcome.metrics
    rows, lines = report_rows(m)
    title = f"{args.method}: trained in {m['train_seconds']:.0f} s, {m['eval_images']} test images → {out}"
    print_table(rows, title=title, first="attack")
    for line in lines:
        print(line)


def cmd_bench(args: argparse.Namespace) -> None:
    from mendnet.artefact import check_writable
    from mendnet.bench import load_recipe, run_bench, write_doc_section

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


def cmd_audit(args: argparse.Namespace) -> None:
    from mendnet.artefact import atomic_output_dir, save_artefact, write_files
    from mendnet.audit import AuditConfig, audit_model, load_audit_model
    from mendnet.detect.reversed_trigger import TRIGGER_FILE
    from mendnet.device import resolve_device
    from mendnet.jobs import DataRef

    name = Path(args.model.rstrip("/")).name.replace(":", "-") or "model"
    out = args.out or Path("runs") / f"audit-{name}"
    check_out(out, args.force)
    cfg = AuditConfig(
        test_images=args.test_images,
        clean_fraction=args.clean_fraction,
        nc_epochs=args.nc_epochs,
        nc_batches=args.nc_batches,
        nc_batch_size=args.nc_batch_size,
        attack_steps=args.attack_steps,
        aa_images=args.aa_images,
        eps=args.eps,
        seed=args.seed,
    )
    art = load_audit_model(args.model, args.arch, DataRef(args.data, args.data_dir) if args.data else None)
    model_ref = str(art.path) if art.path else str(out / "model")  # a bare model is saved for the repairs
    outcome = audit_model(
        art,
        cfg,
        device=resolve_device(args.device),
        progress=not args.quiet,
        model_ref=model_ref,
        trigger_ref=str(out / TRIGGER_FILE),
    )
    with atomic_output_dir(out, args.force) as tmp:
        write_files(tmp, outcome.files)
        if art.path is None:
            save_artefact(tmp / "model", art.model.cpu(), art.meta, outcome.report["clean"])
    flagged = ", ".join(map(str, outcome.report["detection"]["flagged"])) or "none"
    print(f"audit → {out}/report.html (flagged: {flagged})")
    for line in outcome.report["advice"]:
        print(f"- {line}")


def cmd_demo(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from mendnet.demo import DemoConfig, run_demo
    from mendnet.device import resolve_device

    out = args.out or Path("runs/demo")
    check_out(out, args.force)
    cfg = DemoConfig(data_dir=args.data_dir, seed=args.seed)
    if args.epochs is not None:
        cfg = replace(cfg, epochs=args.epochs)
    run_demo(cfg, out, force=args.force, device=resolve_device(args.device), progress=not args.quiet)
    print(f"wrote {out}/ (metrics.json, report.md, attention.png, backdoored/, finetune/, nad/)")


COMMANDS = {
    "train": cmd_train,
    "poison": cmd_poison,
    "eval": cmd_eval,
    "repair": cmd_repair,
    "detect": cmd_detect,
    "locate": cmd_locate,
    "attention": cmd_attention,
    "attack": cmd_attack,
    "robustify": cmd_robustify,
    "bench": cmd_bench,
    "audit": cmd_audit,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mendnet` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"mendnet: warning: {msg}\n"
    try:
        prepare_data(args)
        COMMANDS[args.command](args)
    except MendnetError as e:
        return fail(str(e))
    except OSError as e:  # a file or folder the system refused (missing, unwritable, a folder, ...)
        return fail(os_error_message(e))
    except KeyboardInterrupt:
        print("mendnet: interrupted", file=sys.stderr)
        return 130
    return 0


def fail(message: str) -> int:
    """Print `message` as the one line `mendnet: error: ...` on stderr; the error exit status."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"mendnet: error: {text}", file=sys.stderr)
    return ERROR_EXIT


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def os_error_message(error: OSError) -> str:
    """An OSError as "PATH: reason" (both paths of a rename), or its text when it names no path."""
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    reason = error.strerror or first_line(error)
    return f"{' → '.join(paths)}: {reason}" if paths else reason


if __name__ == "__main__":
    sys.exit(main())
