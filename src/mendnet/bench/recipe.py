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
                                            # no ASR; no retune cells; its model's ASR under each
                                            # backdoored row's trigger is that row's clean_asr)
    repairs = ["finetune", "nad", "nad-ft"] # names in mendnet.registry.REPAIRS, variants, or "all"
    robustifiers = []                       # names in mendnet.registry.ROBUSTIFIERS, variants, or "all"
    seeds = [0, 1, 2]
    detect = true                           # a Neural Cleanse cell on each base model (settings: [detect])
    mend = true                             # a `mendnet mend` cell on each base model (settings: [mend])
    retune = ["finetune", "nad"]            # the retuning attack on these columns' models (repairs or
                                            # "mend"; backdoored rows only; settings: [retune])
    defects = true                          # AI-Lancet's general-defect cell on each clean base (grid.attacks
                                            # must hold "none"; settings: [defects])

    [run]      # train_subset, test_images, clean_fraction, threads, device, data_dir, robustifier set-up,
               # and the models of two roles (RunSettings):
    attacker_model = "clean"   # the clean model Trojan and CL prepare their trigger on: "surrogate" (the
                               # default: each trains its own inside its base, seed + 1), "clean" (the
                               # clean row's model of the same data, model and seed; grid.attacks must
                               # hold "none"), or a [base.NAME]
    natural_teacher = "natural-ls"  # the natural teacher of robustifiers that distil one (AGKD-BML:
                                    # also its starting point): "natural" (the default: the natural
                                    # row's model) or a [base.NAME]
    evaluate_on = "validation"  # "test" (the default), or a selection run: every model trains on the
                                # training set less the researcher's validation images
                                # (mendnet.data.tuning: 5,000, carving seed 100), every figure is
                                # measured on those (the first test_images of them), the test set is
                                # never loaded; part of every cell's identity (Refool refused: the
                                # repair and mend jobs rebuild its trigger from the full training set)
    aa_check = true   # the robust rows' AutoAttack checked against the authors' package (issue 27):
                      # every robustness report that runs AutoAttack (aa_images > 0; grid.robustifiers
                      # must not be empty) also runs pyautoattack directly on the same images with the
                      # same ε, version, seed and batch size, and the results gain a table of both
                      # robust accuracies, their difference and seconds, flagged above 0.5 points;
                      # default false, part of the robust cells' identity only when true
    [train]    # mendnet.train.TrainConfig of the backdoored (or clean, or natural) model
    [base.natural-ls]       # an extra model for a role above, shown in no row: [train] with these
    label_smoothing = 0.5   # changes (mendnet.bench.roles); its spec is part of its takers' identity
    [poison]   # target, rate, mode of every backdoor (grid.retune needs mode "all-to-one"); every
               # row's base reports its accuracy on the target's test images (target_acc)
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

    [repair.lancet-flip]
    trigger = "detect"    # methods that repair with a reversed trigger (registry `uses_trigger`) take
                          # the base's detect cell's (grid.detect) instead of reversing their own: its
                          # flagged label with the smallest norm, else (none flagged) the smallest-norm
                          # label, handed as `label` to Configs that have one. The detect cell runs
                          # first; its settings are part of the taker's identity, and a recomputed
                          # detect cell makes its takers stale.

    [detect]   # mendnet.detect.neural_cleanse.Config of the detect cells (flagged labels, the target's
               # anomaly index, the smallest-norm label, seconds)
    [mend]     # mendnet.mend.run.MendConfig of the mend cells (ACC/ASR after, the chosen candidate)
    [retune]   # mendnet.threats.backdoor.retune.RetuneConfig of the retune cells (ACC/ASR after the
               # attack's fine-tuning on the defender data with a few poisoned images)
    [defects]  # mendnet.bench.defects.DefectsConfig of the defects cells (AI-Lancet's general-defect
               # experiment: the test set in seeded halves, half 1's misclassified images located and
               # repaired by AI-Lancet's EI neurons, as many random weights of the same layer, or every
               # weight, scored on half 2; N_o: the run.clean_fraction defender split):
    pairs = 100          # half 1's erroneous images given mask companions for locating
    mask_steps = 300     # at most this many steps of each companion's mask optimisation
    layers = []          # candidate layers (empty: every conv and linear layer)
    tune_epochs = 5      # the fine-tuning's epochs (all three repairs)
    copies = 20          # jittered copies of each erroneous image in N_e
    vote_share = 0.05    # AI-Lancet trains the weights voted by at least this share of the corrected pairs
    shares = [0.01, 0.05, 0.2]  # the dose: k = share · the layer's weights, AI-Lancet's first k vs k random
    half_seed = 0        # the seed of the test set's halves (absent: the cell's seed)

    [select.nad-lr]      # a selection rule (mendnet.bench.selection; needs run.evaluate_on =
                         # "validation"): the results show every candidate's validation figures and
                         # the rule's choice on each backdoored row, under the rule's text
    candidates = ["nad", "nad-lr0.045"]  # repair columns of the grid (two or more)
    default = "nad"          # kept unless another candidate beats it by more than margin
    metric = "acc"           # compared as its mean over the seeds: acc, asr, ra or der
    prefer = "higher"        # or "lower"
    margin = 0.005           # a fraction (default 0)
    asr_bound = 0.05         # optional: only candidates with ASR ≤ this (a fraction) qualify,
    bound_at = "every-seed"  # at every seed (the default) or on the "mean" over the seeds

A cell's record names its column as `method` (a variant: its own name; its spec holds the registered
method under "registered", the settings under "config", the spec of the cell whose model it took under
"source" and of the detect cell whose trigger it took under "trigger"; the record's "source" names that
cell and the digest of the weights it took, its "trigger" the detect cell, the digest of the reversed
trigger, the label used and whether Neural Cleanse flagged it). Detect and mend cells are the columns
"detect" and "mend"; a retune cell's column is the column it retunes, its metrics retune_acc,
retune_asr and retune_seconds. A defects cell's column is "defects"; its metrics: "original", "lancet",
"random" and "plain" each with half 2's accuracy (acc) and the accuracy on the images of half 2 the
original model misclassifies (fixed), the repairs with seconds (AI-Lancet's include locating);
trained_weights, layer_weights, wrong_half1, wrong_half2, pairs, corrected, ratio_q1, ratio_median,
ratio_q3 (the corrected pairs' minimal ablation ratios) and voted (the EI sets' union); per dose share s
"dose_s.k" and "dose_s.lancet" / "dose_s.random" with acc, fixed and seconds; its info names the chosen
layer and the halves' seed. A defects cell whose experiment cannot run is recorded as refused, as a
repair is (below). A repair that changes a few weights of one layer (AI-Lancet) reports
weights_changed and changed_share (their share of the chosen layer's weights); robustness reports add
masking_gap (PGD-20's robust accuracy minus the worst case; mendnet.bench.masking) and, with
AutoAttack, aa_gap and aa_gap_flag, and with run.aa_check aa_package (the package's robust accuracy),
aa_package_diff (mendnet's minus the package's), aa_package_seconds and aa_package_flag; a
robustifier's info names its teacher base and that base's training seconds, which its own
train_seconds leave out. A repair whose method refuses to run (a MendnetError: AI-Lancet when the
reversed trigger sends no defender image to its label) is recorded with the message under info
"refused" and no metrics, unless another cell takes its model.
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
from mendnet.bench.defects import DefectsConfig
from mendnet.bench.grid import CLEAN, Grid, parse_grid
from mendnet.bench.roles import parse_bases
from mendnet.bench.run_settings import VALIDATION, PoisonSettings, RunSettings
from mendnet.bench.selection import Rule, parse_rules
from mendnet.bench.settings import config_from_table, table
from mendnet.detect.neural_cleanse import Config as DetectConfig
from mendnet.errors import MendnetError
from mendnet.mend.run import MendConfig
from mendnet.threats.backdoor import TRIGGERS
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
    "base",
    "detect",
    "mend",
    "retune",
    "defects",
    "select",
)


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: the grid, the settings of each step, each method column (Column: registered
    method, Config, teacher column, trigger source), the Configs of the detect, mend, retune and defects
    cells, and the training settings of each [base.NAME]."""

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
    defects: DefectsConfig = field(default_factory=DefectsConfig)
    bases: dict[str, TrainConfig] = field(default_factory=dict)
    """[base.NAME] → its TrainConfig (mendnet.bench.roles)."""
    select: dict[str, Rule] = field(default_factory=dict)
    """[select.NAME] → its selection Rule (mendnet.bench.selection)."""
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
    """The Config of the detect, mend, retune or defects cells from the [key] table (defaults when
    absent)."""
    settings = table(doc, key)
    if settings and not enabled:
        raise MendnetError(f"[{key}] sets {key} cells, but grid.{key} asks for none")
    return config_from_table(cls, settings, key)


def _check_validation(run: RunSettings, grid: Grid) -> None:
    """Refuse the attacks whose trigger a repair or mend job rebuilds from the full training set (Refool's
    reflection pool, drawn by index) under run.evaluate_on = "validation", whose models train on the rest."""
    rebuilt = [a for a in grid.attacks if a != CLEAN and TRIGGERS[a].needs_data]
    if run.evaluate_on == VALIDATION and rebuilt:
        raise MendnetError(
            f'run.evaluate_on = "{VALIDATION}" does not take {", ".join(rebuilt)}: the repair and mend jobs '
            "rebuild its trigger from the full training set, not the one its models trained on"
        )


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
    _check_validation(run, grid)
    if run.aa_check and not grid.robustifiers:
        raise MendnetError("run.aa_check checks the robust rows' AutoAttack, but grid.robustifiers is empty")
    poison = config_from_table(PoisonSettings, table(doc, "poison"), "poison")
    if grid.retune and poison.mode != "all-to-one":
        raise MendnetError(f'grid.retune needs poison.mode = "all-to-one" (one target), got {poison.mode!r}')
    columns = method_columns(doc, grid, variants, run.robust_teacher)
    return Recipe(
        name=name,
        title=str(doc.get("title", name)),
        description=str(doc.get("description", "")),
        grid=grid,
        run=run,
        train=config_from_table(TrainConfig, table(doc, "train"), "train"),
        poison=poison,
        attack_params=_attack_params(doc, grid),
        columns=columns,
        detect=_cell_settings(doc, "detect", grid.detect, DetectConfig),
        mend=_cell_settings(doc, "mend", grid.mend, MendConfig),
        retune=_cell_settings(doc, "retune", bool(grid.retune), RetuneConfig),
        defects=_cell_settings(doc, "defects", grid.defects, DefectsConfig),
        bases=parse_bases(doc, grid, run.attacker_model, run.natural_teacher, columns),
        select=parse_rules(table(doc, "select"), grid, run),
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
