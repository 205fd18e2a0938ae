"""`mendnet bench RECIPE --smoke`: the same grid at a tiny size, so that every cell takes seconds.

Every data set, model, attack and method of the recipe stays (so a recipe that no longer matches the code
fails in its smoke run): every attack's base model is trained, and the method cells (repairs, detection,
mend, retuning, general defects) run on the first backdoor attack's row and the clean row
(`cells.smoke_rows`). What shrinks is how much each step does: the first seed only, a few hundred
training images, one epoch of every training loop, a few test images, a few hundred defender images, no
AutoAttack (its fixed budgets, Square's 5,000 queries among them, take over 10 s a cell even on a few
images) and so no check of it against the authors' package (`run.aa_check`), and the inner loops of
attacks and methods (optimisation steps, Neural Cleanse batches, AI-Lancet pairs and copies; mend's
scan and candidates too, and mend tries its first candidate only; the general-defect cell's pairs,
companion steps, copies and epochs, and its first dose share only).
A variant runs only when no earlier column runs its method with the same wiring (`smoke_columns`): it
differs from that column in settings alone, which parsing the recipe has already built and checked.
A grid with mend cells gets a few more defender images, as many as mend's parts need. The result is a
Recipe with `smoke=True` (its cells' specs say so) and its own name; the CLI puts its results in a
folder of their own, so smoke numbers never mix with real ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mendnet.bench.defects import DefectsConfig
from mendnet.bench.grid import CLEAN
from mendnet.bench.recipe import Recipe
from mendnet.detect.neural_cleanse import Config as DetectConfig
from mendnet.mend.run import MendConfig
from mendnet.threats.backdoor import TRIGGERS, trigger_parameters

SMOKE_FOLDER = "smoke"
"""The sub-folder of a recipe's output folder that holds its smoke run."""

TRAIN_IMAGES = 200
"""Training images of every trained model (`run.train_subset`)."""
TEST_IMAGES = 30
"""Test images of every evaluation (`run.test_images`)."""
CLEAN_FRACTION = 0.003
"""Defender data (of the full training set: 180 Fashion-MNIST images)."""
MEND_CLEAN_FRACTION = 0.005
"""Defender data of a grid with mend cells (300 Fashion-MNIST images: mend needs 50 in each part)."""

CAPS: dict[str, int] = {
    "epochs": 1,
    "batches_per_epoch": 2,
    "steps": 2,
    "attempts": 1,
    "images": 16,
    "pairs": 8,
    "copies": 2,
    "pool_size": 20,
    "mask_steps": 20,
}
"""Upper bounds on integer settings of the training, the attacks' triggers and the methods' Configs, by
field name; a name ending in "_epochs" (teacher, fine-tuning, unlearning epochs) is capped as "epochs"."""


def cap(name: str, value: Any) -> Any:
    """`value` bounded by CAPS for the setting `name` (unchanged when no cap applies or it is not an int)."""
    key = "epochs" if name.endswith("_epochs") else name
    if key in CAPS and type(value) is int:
        return min(value, CAPS[key])
    return value


def shrink(config: Any) -> Any:
    """A copy of the Config dataclass `config` with every capped setting bounded (validated again)."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    return dataclasses.replace(config, **{k: cap(k, v) for k, v in values.items() if cap(k, v) != v})


class SmokeMendConfig(MendConfig):
    """A MendConfig whose scan and candidates run with the smoke's caps: mend builds their settings
    itself (the scan's Neural Cleanse batches, each candidate's defaults), so capping its own fields
    alone would leave them at full size."""

    def scan_config(self) -> DetectConfig:
        return shrink(super().scan_config())

    def candidate_config(self, name: str, trigger_file: Path, label: int) -> Any:
        return shrink(super().candidate_config(name, trigger_file, label))


def smoke_mend(config: MendConfig) -> SmokeMendConfig:
    """`config` with its capped fields bounded and only its first candidate, as a SmokeMendConfig (the
    candidates are registered repairs, checked by name when the recipe is parsed, and each of them
    costs as much as a repair cell)."""
    small = shrink(config)
    fields = {f.name: getattr(small, f.name) for f in dataclasses.fields(small)}
    return SmokeMendConfig(**{**fields, "candidates": small.candidates[:1]})


def smoke_defects(config: DefectsConfig) -> DefectsConfig:
    """`config` with its capped fields bounded and only its first dose share (each share trains two
    models)."""
    return dataclasses.replace(shrink(config), shares=config.shares[:1])


def smoke_columns(recipe: Recipe, names: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of `names` a smoke run computes: the first of each (registered method, teacher column,
    trigger source), and every column another kept column takes as its teacher or the grid retunes (a
    selection table lists the others as not finished)."""
    kept: list[str] = []
    shapes = set()
    for name in names:
        column = recipe.columns[name]
        shape = (column.method, column.teacher, column.trigger)
        if shape not in shapes:
            shapes.add(shape)
            kept.append(name)
    wanted = set(kept) | (set(recipe.grid.retune) & set(names))
    while True:
        teachers = {recipe.columns[n].teacher for n in wanted} - {None} - wanted
        if not teachers:
            return tuple(n for n in names if n in wanted)
        wanted |= teachers


def smoke_attack_params(recipe: Recipe) -> dict[str, tuple[tuple[str, Any], ...]]:
    """Each attack's trigger parameters: the recipe's, with every capped parameter (given or default)
    bounded; a default that needs no cap is left out, as the recipe leaves it out."""
    out = {}
    for name in (a for a in recipe.grid.attacks if a != CLEAN):
        given = dict(recipe.attack_params.get(name, ()))
        defaults = {f.name: f.default for f in dataclasses.fields(TRIGGERS[name].trigger)}
        values = {key: given.get(key, defaults[key]) for key in trigger_parameters(name)}
        params = {**given, **{k: cap(k, v) for k, v in values.items() if cap(k, v) != v}}
        if params:
            out[name] = tuple(sorted(params.items()))
    return out


def smoke_recipe(recipe: Recipe) -> Recipe:
    """`recipe` at the smoke size (see the module docstring): the first seed, TRAIN_IMAGES training and
    TEST_IMAGES test images, `smoke_columns` of the method columns, CLEAN_FRACTION (with mend cells
    MEND_CLEAN_FRACTION) defender data, no
    AutoAttack, one epoch (of every model, those of [base.NAME] too), capped inner loops (those of the
    columns, detect, mend's scan, retune and defects; defects at its first dose share)."""
    run = recipe.run
    return dataclasses.replace(
        recipe,
        name=f"{recipe.name}-smoke",
        title=f"{recipe.title} (smoke run: tiny sizes, not results)",
        grid=dataclasses.replace(
            recipe.grid,
            seeds=recipe.grid.seeds[:1],
            repairs=smoke_columns(recipe, recipe.grid.repairs),
            robustifiers=smoke_columns(recipe, recipe.grid.robustifiers),
        ),
        run=dataclasses.replace(
            run,
            train_subset=min(run.train_subset or TRAIN_IMAGES, TRAIN_IMAGES),
            test_images=min(run.test_images or TEST_IMAGES, TEST_IMAGES),
            clean_fraction=min(
                run.clean_fraction, MEND_CLEAN_FRACTION if recipe.grid.mend else CLEAN_FRACTION
            ),
            aa_images=0,
            aa_check=False,
        ),
        train=shrink(recipe.train),
        attack_params=smoke_attack_params(recipe),
        columns={name: dataclasses.replace(c, config=shrink(c.config)) for name, c in recipe.columns.items()},
        detect=shrink(recipe.detect),
        mend=smoke_mend(recipe.mend),
        retune=shrink(recipe.retune),
        defects=smoke_defects(recipe.defects),
        bases={name: shrink(train) for name, train in recipe.bases.items()},
        smoke=True,
    )
