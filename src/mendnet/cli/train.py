"""`mendnet train` (a model, optionally with a planted backdoor) and `mendnet poison` (a poisoned
training set on disk), and the backdoor options they share."""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mendnet.artefact import save_artefact
from mendnet.cli.common import add_common, add_data, check_out, data_ref, run_options
from mendnet.cli.config import add_config_arguments, config_from_args, parse_number
from mendnet.device import resolve_device
from mendnet.errors import MendnetError
from mendnet.jobs.poison import poison_dataset, write_poisoned_set
from mendnet.jobs.train import train_model
from mendnet.models import architecture_names
from mendnet.report.tables import print_table
from mendnet.threats.backdoor import TRIGGERS, attack_entry, trigger_parameters
from mendnet.threats.backdoor.spec import PoisonSpec
from mendnet.train import TrainConfig

# options of the planting itself, accepted for every attack (PoisonSpec)
PLANTING_PARAMS: dict[str, Any] = {"clean_label": int, "clean_model": str}


def key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE as (key, raw text); `typed_attack_params` types the value once the attack is known."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip().replace("-", "_"), raw


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
    hints = typing.get_type_hints(attack_entry(attack).trigger)
    kinds = {name: hints[name] for name in trigger_parameters(attack)} | PLANTING_PARAMS
    for key, _ in pairs:
        if key not in kinds:
            raise MendnetError(
                f"--attack-param {key}: not a parameter of {attack}; known: {', '.join(kinds)}"
            )
    return tuple((key, parse_param(kinds[key], raw, f"--attack-param {key}")) for key, raw in pairs)


def add_backdoor_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    """--attack, --target, --rate, --mode and --attack-param of `train` and `poison`."""
    p.add_argument(
        "--attack",
        default=None,
        required=required,
        metavar="NAME",
        help=f"backdoor attack to plant: {', '.join(TRIGGERS)}",
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


def add_train_parser(sub: argparse._SubParsersAction) -> None:
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


def add_poison_parser(sub: argparse._SubParsersAction) -> None:
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


def cmd_train(args: argparse.Namespace) -> None:
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
        data_ref(args),
        args.model,
        cfg,
        poison_spec=spec,
        **run_options(args),
        train_subset=args.train_subset,
    )
    save_artefact(out, outcome.model, outcome.meta, outcome.metrics, outcome.files, force=args.force)
    print_table({out.name: outcome.metrics}, title=f"trained → {out}")


def cmd_poison(args: argparse.Namespace) -> None:
    attack_entry(args.attack)
    params = typed_attack_params(args.attack, args.attack_param)
    out = args.out or Path("runs") / f"poison-{args.data}-{args.attack}-s{args.seed}"
    check_out(out, args.force)
    ref = data_ref(args)
    spec = PoisonSpec(args.attack, args.target, args.rate, args.mode, params)
    planted, png = poison_dataset(ref, spec, seed=args.seed, device=resolve_device(args.device))
    write_poisoned_set(out, ref, planted, png, force=args.force, seed=args.seed)
    rec = planted.record
    kind = "clean-label" if rec.clean_label else "dirty-label"
    count = len(rec.poisoned_indices)
    print(f"wrote {out}/: {count} of {len(planted.data)} training images poisoned ({rec.attack}, {kind})")
