"""Benchmark recipes: a TOML file describing a grid (data sets × models × attacks × methods × seeds) and the
settings of every step, parsed into frozen dataclasses with one-line errors. This docstring is the
format's reference.

    name = "demo-nad"                       # results folder and docs section name
    title = "NAD on the demo setting"       # heading of the Markdown tables
    description = "..."                     # a sentence under the heading (optional)

    [grid]
    data = ["fashion-mnist"]
    models = ["wrn-16-1"]
    attacks = ["none", "badnets", "blend"]  # backdoor attacks (mendnet.threats.backdoor.TRIGGERS), or
                                            # "all" (every backdoor attack); "none": a clean row (a
                                            # model trained without poisoning; its cells report ACC,
                                            # no ASR; no retune cells)
    repairs = ["finetune", "nad", "nad-ft"] # names in mendnet.registry.REPAIRS, variants, or "all"
    robustifiers = []                       # names in mendnet.registry.ROBUSTIFIERS, variants, or "all"
    seeds = [0, 1, 2]
    detect = true                           # a Neural Cleanse cell on each base model (settings: [detect])
    mend = true                             # a `mendnet mend` cell on each base model (settings: [mend])
    retune = ["finetune", "nad"]            # the retuning attack on these columns' models (repairs or
                                            # "mend"; backdoored rows only; settings: [retune])

    [run]      # train_subset, test_images, clean_fraction, threads, device, data_dir, robustifier set-up
    [train]    # mendnet.train.TrainConfig of the backdoored (or clean, or natural) model
    [poison]   # target, rate, mode of every backdoor (grid.retune needs mode "all-to-one")
    [attack.blend]     # trigger parameters of one attack (as `mendnet train --attack-param`)
    [repair.nad]       # fields of that repair's Config, and (NAD, MCR) teacher = "COLUMN"
    [robustify.pgd-at] # fields of that robustifier's Config

    [variant.nad-ft]   # a column of its own: a registered method with other settings
    method = "nad"     # the registered method (a repair: list it in grid.repairs; a robustifier: in
                       # grid.robustifiers)
    lr = 0.045         # fields of its Config
    teacher = "finetune"  # methods with an optional teacher (registry `teacher = "optional"`: NAD's
                          # attention teacher, MCR's endpoint) take the model of that repair column of
                          # the same base and seed; without it they build their own. That cell runs
                          # first, and its settings are part of this column's cells' identity.

    [detect]   # mendnet.detect.neural_cleanse.Config of the detect cells (flagged labels, the target's
               # anomaly index, the smallest-norm label, seconds)
    [mend]     # mendnet.mend.run.MendConfig of the mend cells (ACC/ASR after, the chosen candidate)
    [retune]   # mendnet.threats.backdoor.retune.RetuneConfig of the retune cells (ACC/ASR after the
               # attack's fine-tuning on the defender data with a few poisoned images)

A cell's record names its column as `method` (a variant: its own name; its spec holds the registered
method under "registered", the settings under "config", and the spec of the cell whose model it took
under "source"; the record's "source" names that cell and the digest of the weights it took). Detect
and mend cells are the columns "detect" and "mend"; a retune cell's column is the column it retunes,
its metrics retune_acc, retune_asr and retune_seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

from mendnet.bench.columns import Column, method_columns, variant_methods
from mendnet.bench.grid import CLEAN, Grid, parse_grid
from mendnet.bench.settings import config_from_table, table
from mendnet.detect.neural_cleanse import Config as DetectConfig
from mendnet.errors import MendnetError
from mendnet.mend.run import MendConfig
from mendnet.robust.evaluation import AA_IMAGES
from mendnet.threats.backdoor.retune import RetuneConfig
from mendnet.train import TrainConfig

TOP_KEYS = (
    "name",
    "title",
    "description",
    "grid",
    "run",
    "train",
    "poison",
    "attack",
    "repair",
    "robustify",
    "variant",
    "detect",
    "mend",
    "retune",
)
SPLITS = ("all", "source", "target")


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
    """A parsed recipe: the grid, the settings of each step, each method column (Column: registered
    method, Config, teacher column) and the Configs of the detect, mend and retune cells."""

    name: str
    title: str
    grid: Grid
    run: RunSettings = field(default_factory=RunSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    poison: PoisonSettings = field(default_factory=PoisonSettings)
    description: str = ""
    attack_params: dict[str, tuple[tuple[str, Any], ...]] = field(default_factory=dict)
    columns: dict[str, Column] = field(default_factory=dict)
    """Column name → Column (every repair and robustifier of the grid, and the robust teacher's)."""
    detect: DetectConfig = field(default_factory=DetectConfig)
    mend: MendConfig = field(default_factory=MendConfig)
    retune: RetuneConfig = field(default_factory=RetuneConfig)
    smoke: bool = False
    """A smoke run (`mendnet.bench.smoke.smoke_recipe`; no TOML key sets it): its cells' specs say so."""


def _attack_params(doc: dict[str, Any], grid: Grid) -> dict[str, tuple[tuple[str, Any], ...]]:
    out = {}
    for name, params in table(doc, "attack").items():
        if name not in grid.attacks:
            raise MendnetError(f"[attack.{name}]: {name!r} is not in grid.attacks")
        if name == CLEAN:
            raise MendnetError(f"[attack.{name}]: the clean row has no trigger to set")
        if not isinstance(params, dict):
            raise MendnetError(f"[attack.{name}] must be a table of trigger parameters")
        out[name] = tuple(sorted(params.items()))
    return out


def _cell_settings(doc: dict[str, Any], key: str, enabled: bool, cls: type) -> Any:
    """The Config of the detect, mend or retune cells from the [key] table (defaults when absent)."""
    settings = table(doc, key)
    if settings and not enabled:
        raise MendnetError(f"[{key}] sets {key} cells, but grid.{key} asks for none")
    return config_from_table(cls, settings, key)


def parse_recipe(doc: dict[str, Any], default_name: str = "bench") -> Recipe:
    """A Recipe from a parsed TOML document; every mistake is one MendnetError naming the key."""
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise MendnetError(f"unknown recipe key {', '.join(unknown)}; valid: {', '.join(TOP_KEYS)}")
    variants = variant_methods(doc)
    grid = parse_grid(table(doc, "grid"), variants)
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name or "/" in name:
        raise MendnetError(f"name must be a non-empty string without '/', got {name!r}")
    run = config_from_table(RunSettings, table(doc, "run"), "run")
    poison = config_from_table(PoisonSettings, table(doc, "poison"), "poison")
    if grid.retune and poison.mode != "all-to-one":
        raise MendnetError(f'grid.retune needs poison.mode = "all-to-one" (one target), got {poison.mode!r}')
    return Recipe(
        name=name,
        title=str(doc.get("title", name)),
        description=str(doc.get("description", "")),
        grid=grid,
        run=run,
        train=config_from_table(TrainConfig, table(doc, "train"), "train"),
        poison=poison,
        attack_params=_attack_params(doc, grid),
        columns=method_columns(doc, grid, variants, run.robust_teacher),
        detect=_cell_settings(doc, "detect", grid.detect, DetectConfig),
        mend=_cell_settings(doc, "mend", grid.mend, MendConfig),
        retune=_cell_settings(doc, "retune", bool(grid.retune), RetuneConfig),
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
