"""Benchmark recipes: a TOML file describing a grid (data sets × models × attacks × methods × seeds) and the
settings of every step, parsed into frozen dataclasses with one-line errors.

    name = "demo-nad"                       # results folder and docs section name
    title = "NAD on the demo setting"       # heading of the Markdown tables
    description = "..."                     # a sentence under the heading (optional)

    [grid]
    data = ["fashion-mnist"]
    models = ["wrn-16-1"]
    attacks = ["badnets", "blend"]          # backdoor attacks (mendnet.threats.backdoor.TRIGGERS), or "all"
    repairs = ["finetune", "nad"]           # names in mendnet.registry.REPAIRS, or "all"
    robustifiers = []                       # names in mendnet.registry.ROBUSTIFIERS, or "all"
    seeds = [0, 1, 2]

    [run]      # train_subset, test_images, clean_fraction, threads, device, data_dir, robustifier set-up
    [train]    # mendnet.train.TrainConfig of the backdoored (or natural) model
    [poison]   # target, rate, mode of every backdoor
    [attack.blend]     # trigger parameters of one attack (as `mendnet train --attack-param`)
    [repair.nad]       # fields of that repair's Config
    [robustify.pgd-at] # fields of that robustifier's Config
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

from mendnet.bench.settings import config_from_table
from mendnet.data.catalog import dataset_names
from mendnet.errors import MendnetError
from mendnet.models import architecture_names
from mendnet.registry import REPAIRS, ROBUSTIFIERS
from mendnet.robust.evaluation import AA_IMAGES
from mendnet.threats.backdoor import TRIGGERS
from mendnet.train import TrainConfig

TOP_KEYS = ("name", "title", "description", "grid", "run", "train", "poison", "attack", "repair", "robustify")
SPLITS = ("all", "source", "target")
GRID_KEYS = ("data", "models", "attacks", "repairs", "robustifiers", "seeds")


@dataclass(frozen=True)
class Grid:
    """The axes of the grid. Repair cells: data × models × attacks × (none + repairs) × seeds, where
    "none" is the backdoored model itself. Robustifier cells: data × models × (natural + robustifiers) ×
    seeds, where "natural" is the naturally trained model (also the teacher of methods that distil a
    natural teacher; methods that distil a robust one get the `run.robust_teacher` method's model)."""

    data: tuple[str, ...]
    models: tuple[str, ...]
    attacks: tuple[str, ...]
    repairs: tuple[str, ...]
    robustifiers: tuple[str, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class RunSettings:
    """How every cell runs.

    train_subset: train on this many seeded training images (None: all). test_images: evaluate on the
    first N test images (None: all). clean_fraction: the defender data of repairs. threads: torch
    threads of every cell, locally and as a Ray task (the thread count changes float summation order,
    so equal counts are what make local and Ray results identical).
    Robustifier cells: robust_teacher is the robustifier whose model (trained once per data set, model
    and seed, on the `teacher_split` half) is the teacher of methods with a robust teacher; `split` is
    the half the robustifiers train on ("all", or "source"/"target": Robust-KD's same-data split);
    eval_eps the L∞ budget of their robustness report (None: 0.1 on 28×28 greyscale, else 8/255);
    aa_images the test images AutoAttack runs on in that report (the first N; 0: no AutoAttack).
    """

    train_subset: int | None = None
    test_images: int | None = None
    clean_fraction: float = 0.05
    threads: int = 1
    device: str = "cpu"
    data_dir: str | None = None
    robust_teacher: str = "pgd-at"
    split: str = "all"
    teacher_split: str = "all"
    eval_eps: float | None = None
    aa_images: int = AA_IMAGES

    def __post_init__(self) -> None:
        for name in ("train_subset", "test_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MendnetError(f"run.{name} must be ≥ 1, got {value}")
        if self.aa_images < 0:
            raise MendnetError(f"run.aa_images must be ≥ 0, got {self.aa_images}")
        if self.threads < 1:
            raise MendnetError(f"run.threads must be ≥ 1, got {self.threads}")
        if not 0 < self.clean_fraction < 1:
            raise MendnetError(f"run.clean_fraction must lie in (0, 1), got {self.clean_fraction}")
        for name in ("split", "teacher_split"):
            if getattr(self, name) not in SPLITS:
                raise MendnetError(
                    f"run.{name} must be one of {', '.join(SPLITS)}, got {getattr(self, name)!r}"
                )


@dataclass(frozen=True)
class PoisonSettings:
    """Target label, poisoned fraction of the training set and mode of every planted backdoor."""

    target: int = 0
    rate: float = 0.1
    mode: str = "all-to-one"


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: the grid, and the settings of each step and method (Config instances)."""

    name: str
    title: str
    grid: Grid
    run: RunSettings = field(default_factory=RunSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    poison: PoisonSettings = field(default_factory=PoisonSettings)
    description: str = ""
    attack_params: dict[str, tuple[tuple[str, Any], ...]] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    """Method name → its Config (every repair and robustifier of the grid, and the robust teacher's)."""
    smoke: bool = False
    """A smoke run (`mendnet.bench.smoke.smoke_recipe`; no TOML key sets it): its cells' specs say so."""


def _names(value: Any, where: str, known: dict[str, Any] | None) -> tuple[str, ...]:
    """A list of names (or "all" for every name of `known`), each checked against `known`."""
    if value == "all" and known is not None:
        return tuple(known)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MendnetError(f"grid.{where} must be a list of names" + (' or "all"' if known else ""))
    if len(set(value)) != len(value):
        raise MendnetError(f"grid.{where} names a method twice: {value}")
    if known is not None:
        for name in value:
            if name not in known:
                raise MendnetError(f"grid.{where}: unknown {name!r}; known: {', '.join(known)}")
    return tuple(value)


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise MendnetError(f"[{key}] must be a table")
    return value


def _grid(table: dict[str, Any]) -> Grid:
    unknown = sorted(set(table) - set(GRID_KEYS))
    if unknown:
        raise MendnetError(f"grid: unknown key {', '.join(unknown)}; valid: {', '.join(GRID_KEYS)}")
    for key in ("data", "models", "seeds"):
        if key not in table:
            raise MendnetError(f"grid.{key} is missing")
    models = _names(table["models"], "models", None)
    for model in models:  # a user factory "module:factory" is checked when it is built
        if ":" not in model and model not in architecture_names():
            raise MendnetError(f"grid.models: unknown {model!r}; known: {', '.join(architecture_names())}")
    seeds = table["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise MendnetError("grid.seeds must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise MendnetError(f"grid.seeds repeats a seed: {seeds}")
    grid = Grid(
        data=_names(table["data"], "data", dict.fromkeys(dataset_names())),
        models=models,
        attacks=_names(table.get("attacks", []), "attacks", dict(TRIGGERS)),
        repairs=_names(table.get("repairs", []), "repairs", dict(REPAIRS)),
        robustifiers=_names(table.get("robustifiers", []), "robustifiers", dict(ROBUSTIFIERS)),
        seeds=tuple(seeds),
    )
    if not grid.data or not grid.models:
        raise MendnetError("grid.data and grid.models must name at least one each")
    if not grid.attacks and not grid.robustifiers:
        raise MendnetError("the grid has no cells: give grid.attacks (with repairs) or grid.robustifiers")
    if grid.repairs and not grid.attacks:
        raise MendnetError("grid.repairs need grid.attacks (a backdoored model to repair)")
    return grid


def _method_configs(doc: dict[str, Any], grid: Grid) -> dict[str, Any]:
    configs: dict[str, Any] = {}
    for section, key, chosen, registry in (
        ("repair", "repairs", grid.repairs, dict(REPAIRS)),
        ("robustify", "robustifiers", grid.robustifiers, dict(ROBUSTIFIERS)),
    ):
        tables = _table(doc, section)
        for name, settings in tables.items():
            teacher = section == "robustify" and name == _table(doc, "run").get("robust_teacher", "pgd-at")
            if name not in chosen and not teacher:
                raise MendnetError(f"[{section}.{name}]: {name!r} is not in grid.{key}")
            if not isinstance(settings, dict):
                raise MendnetError(f"[{section}.{name}] must be a table")
        for name in (*chosen, *(n for n in tables if n not in chosen)):
            configs[name] = config_from_table(registry[name].config, tables.get(name, {}), name)
    return configs


def _teacher_config(doc: dict[str, Any], run: RunSettings, configs: dict[str, Any]) -> None:
    """Add the robust teacher's Config when a robustifier of the grid distils a robust teacher."""
    needs = [n for n in configs if n in ROBUSTIFIERS and ROBUSTIFIERS[n].teacher == "robust"]
    if not needs or run.robust_teacher in configs:
        return
    if run.robust_teacher not in ROBUSTIFIERS:
        raise MendnetError(f"run.robust_teacher: unknown robustifier {run.robust_teacher!r} (for {needs[0]})")
    configs[run.robust_teacher] = ROBUSTIFIERS[run.robust_teacher].config()


def _attack_params(doc: dict[str, Any], grid: Grid) -> dict[str, tuple[tuple[str, Any], ...]]:
    out = {}
    for name, params in _table(doc, "attack").items():
        if name not in grid.attacks:
            raise MendnetError(f"[attack.{name}]: {name!r} is not in grid.attacks")
        if not isinstance(params, dict):
            raise MendnetError(f"[attack.{name}] must be a table of trigger parameters")
        out[name] = tuple(sorted(params.items()))
    return out


def parse_recipe(doc: dict[str, Any], default_name: str = "bench") -> Recipe:
    """A Recipe from a parsed TOML document; every mistake is one MendnetError naming the key."""
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise MendnetError(f"unknown recipe key {', '.join(unknown)}; valid: {', '.join(TOP_KEYS)}")
    grid = _grid(_table(doc, "grid"))
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name or "/" in name:
        raise MendnetError(f"name must be a non-empty string without '/', got {name!r}")
    run = config_from_table(RunSettings, _table(doc, "run"), "run")
    configs = _method_configs(doc, grid)
    _teacher_config(doc, run, configs)
    return Recipe(
        name=name,
        title=str(doc.get("title", name)),
        description=str(doc.get("description", "")),
        grid=grid,
        run=run,
        train=config_from_table(TrainConfig, _table(doc, "train"), "train"),
        poison=config_from_table(PoisonSettings, _table(doc, "poison"), "poison"),
        attack_params=_attack_params(doc, grid),
        configs=configs,
    )


def load_recipe(path: str | Path) -> Recipe:
    """Read and parse a recipe file (MendnetError for a missing file or invalid TOML)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise MendnetError(f"recipe {path} does not exist") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise MendnetError(f"recipe {path} is not valid TOML: {e}") from e
    return parse_recipe(doc, default_name=path.stem)
