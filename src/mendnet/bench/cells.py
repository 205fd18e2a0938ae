"""The cells of a recipe's grid, their names on disk, and the settings that determine each one.

A *base* is the model a group of cells starts from: the backdoored model of (data, model, attack, seed),
a clean model (attack "none"), or the naturally trained one of (data, model, seed) for robustifiers. It
is trained once and cached as an artefact; its own metrics are the grid's "none" (or "natural") cell,
and each repair or robustifier column of the grid is one more cell on it, as are its detect and mend
cells, and a clean base's defects cell. A robustifier that distils a teacher takes the natural base, or
the robust teacher (a base trained by the recipe's `run.robust_teacher` robustifier), as its teacher (or
an extra natural base of `run.natural_teacher`, mendnet.bench.roles). A Trojan or CL base may be planted
with the clean model of
another base, its *attacker* (`run.attacker_model`); a backdoored base of a grid with the clean row is
measured on the clean row's model too (its trigger's ASR on that model, `clean_asr`); the specs of both
are part of its own, and both are trained before it (`given_bases`). A cell may also take
what another cell of its base makes: its *source*'s model (a repair column with `teacher = "COLUMN"`
takes that column's model as its teacher, a retune cell the model of the column it retunes) and its
*trigger* cell's reversed trigger (a column with `trigger = "detect"` takes the detect cell's). Their
specs are part of the cell's spec, and the cells come in an order where each such cell precedes the
cells that take what it makes.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from mendnet.bench.grid import CLEAN, DEFECTS, DETECT, MEND, NATURAL, NO_REPAIR, RETUNE
from mendnet.bench.recipe import Recipe
from mendnet.bench.roles import CLEAN_ROW, SURROGATE
from mendnet.bench.run_settings import VALIDATION, RunSettings
from mendnet.data.tuning import TUNING_SEED, VALIDATION_IMAGES
from mendnet.registry import ROBUSTIFIERS
from mendnet.threats.backdoor import TRIGGERS
from mendnet.train import TrainConfig


def slug(text: str) -> str:
    """A file-name-safe form of a name (a user factory "pkg.mod:make" becomes "pkg.mod_make")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


@dataclass(frozen=True)
class BaseKey:
    """A model trained for the grid: backdoored by `attack` (CLEAN: a clean model), trained by the
    robustifier `teacher` (a robust teacher), or naturally trained (both None); `train` names the
    [base.NAME] whose training settings replace [train]'s (an extra clean or natural model; None: none)."""

    data: str
    model: str
    attack: str | None
    seed: int
    teacher: str | None = None
    train: str | None = None

    @property
    def id(self) -> str:
        kind = self.attack or (f"teacher-{self.teacher}" if self.teacher else NATURAL)
        if self.train is not None:
            kind += f"-{self.train}"
        return f"{slug(self.data)}--{slug(self.model)}--{slug(kind)}--s{self.seed}"


@dataclass(frozen=True)
class Cell:
    """One result of the grid: column `method` on the base (NO_REPAIR or NATURAL: the base itself).
    kind: "base", "repair", "robustify", "detect", "mend", "retune" (method: the column retuned) or
    "defects";
    teacher: the base a robustifier distils (None: none); source: the cell whose model this cell takes
    (a repair's teacher column, a retuned column; None: none); trigger: the detect cell whose reversed
    trigger this cell takes (None: none)."""

    base: BaseKey
    method: str
    kind: str
    teacher: BaseKey | None = None
    source: Cell | None = None
    trigger: Cell | None = None

    @property
    def takes(self) -> list[Cell]:
        """The cells whose output this cell takes: its source (a model), its trigger cell."""
        return [c for c in (self.source, self.trigger) if c is not None]

    @property
    def id(self) -> str:
        if self.kind == RETUNE:
            return f"{self.base.id}--{RETUNE}--{slug(self.method)}"
        return f"{self.base.id}--{slug(self.method)}"

    def key(self) -> dict[str, Any]:
        """The grid coordinates, as a results row names them."""
        b = self.base
        return {
            "data": b.data,
            "model": b.model,
            "attack": b.attack or NATURAL,
            "method": self.method,
            "seed": b.seed,
        }


def base_cells(recipe: Recipe, base: BaseKey) -> list[Cell]:
    """The cells of a backdoored or clean base: itself, its detection, its repair columns (those that
    take no teacher column first), mend, the retuning attack on the chosen columns (backdoored only), and
    the general-defect experiment (clean only)."""
    g = recipe.grid
    cells = [Cell(base, NO_REPAIR, "base")]
    made: dict[str, Cell] = {}
    if g.detect:
        made[DETECT] = Cell(base, DETECT, DETECT)
        cells.append(made[DETECT])
    for name in sorted(g.repairs, key=lambda n: recipe.columns[n].teacher is not None):
        column = recipe.columns[name]
        source = made[column.teacher] if column.teacher else None
        trigger = made[column.trigger] if column.trigger else None
        made[name] = Cell(base, name, "repair", source=source, trigger=trigger)
        cells.append(made[name])
    if g.mend:
        made[MEND] = Cell(base, MEND, MEND)
        cells.append(made[MEND])
    if base.attack != CLEAN:
        cells += [Cell(base, name, RETUNE, source=made[name]) for name in g.retune]
    elif g.defects:
        cells.append(Cell(base, DEFECTS, DEFECTS))
    return cells


def smoke_rows(recipe: Recipe) -> set[str]:
    """The attack rows whose method cells a smoke run computes: the first backdoor attack's and the
    clean row's (every other row trains its base only: each attack and each method still runs once)."""
    backdoors = [a for a in recipe.grid.attacks if a != CLEAN]
    return {*backdoors[:1], CLEAN}


def enumerate_cells(recipe: Recipe) -> list[Cell]:
    """Every cell, grouped by base (so a local run trains each base just before its cells), each source
    before the cells that take its model. A smoke recipe keeps the method cells of `smoke_rows` only."""
    g = recipe.grid
    full = smoke_rows(recipe) if recipe.smoke else set(g.attacks)
    cells = []
    for data in g.data:
        for model in g.models:
            for attack in g.attacks:
                for seed in g.seeds:
                    base = BaseKey(data, model, attack, seed)
                    cells += base_cells(recipe, base) if attack in full else [Cell(base, NO_REPAIR, "base")]
            if g.robustifiers:
                for seed in g.seeds:
                    base = BaseKey(data, model, None, seed)
                    natural = recipe.run.natural_teacher
                    teachers = {
                        "natural": base if natural == NATURAL else replace(base, train=natural),
                        "robust": BaseKey(data, model, None, seed, recipe.run.robust_teacher),
                    }
                    cells.append(Cell(base, NATURAL, "base"))
                    for name in g.robustifiers:
                        role = ROBUSTIFIERS[recipe.columns[name].method].teacher
                        cells.append(Cell(base, name, "robustify", teachers.get(role or "")))
    return cells


def attacker_of(recipe: Recipe, base: BaseKey) -> BaseKey | None:
    """The base whose model plants `base`'s backdoor (Trojan's patch, CL's perturbation are prepared on
    it): the clean row's or a [base.NAME] clean model of the same data, model and seed; None when the
    attack needs no model or trains its own surrogate (`run.attacker_model`, mendnet.bench.roles)."""
    chosen = recipe.run.attacker_model
    if base.attack in (None, CLEAN) or not TRIGGERS[base.attack].needs_model or chosen == SURROGATE:
        return None
    return BaseKey(base.data, base.model, CLEAN, base.seed, train=None if chosen == CLEAN_ROW else chosen)


def clean_row_of(recipe: Recipe, base: BaseKey) -> BaseKey | None:
    """The clean row's base beside a backdoored base (the same data, model and seed), when the grid has
    the clean row: the clean model's ASR under `base`'s trigger is the floor its ASR is compared with
    (`clean_asr`). None for a clean or natural base, or without a clean row."""
    if base.attack in (None, CLEAN) or CLEAN not in recipe.grid.attacks:
        return None
    return BaseKey(base.data, base.model, CLEAN, base.seed)


def given_bases(recipe: Recipe, base: BaseKey) -> list[BaseKey]:
    """The bases whose models `base` is made with, each once: its attacker (`attacker_of`) and the clean
    row's (`clean_row_of`). Each is trained before `base`, and its spec is part of `base`'s."""
    given = (attacker_of(recipe, base), clean_row_of(recipe, base))
    return list(dict.fromkeys(b for b in given if b is not None))


def base_train(recipe: Recipe, base: BaseKey) -> TrainConfig:
    """The training settings of a backdoored, clean or natural base: its [base.NAME]'s, else [train]."""
    return recipe.bases[base.train] if base.train is not None else recipe.train


def _plain(obj: Any) -> Any:
    """JSON round trip, so a spec compares equal to the one read back from a file (tuples → lists)."""
    return json.loads(json.dumps(obj))


def report_spec(run: RunSettings) -> dict[str, Any]:
    """The settings of a robustness report: its L∞ budget, AutoAttack's images and, only when on, the
    check against the authors' package (absent when off, so the cells without it keep their identity)."""
    spec: dict[str, Any] = {"eval_eps": run.eval_eps, "aa_images": run.aa_images}
    if run.aa_check:
        spec["aa_check"] = True
    return spec


def base_spec(recipe: Recipe, base: BaseKey) -> dict[str, Any]:
    """Everything that determines a base model and the metrics measured when it is trained (the target
    class of a clean base's target-class ACC, the clean row's model a backdoored base's `clean_asr` is
    measured on, under run.evaluate_on "validation" the carved split it trains without and is measured
    on): change any of it and the base is trained again."""
    run = recipe.run
    spec: dict[str, Any] = {
        "data": base.data,
        "model": base.model,
        "attack": base.attack,
        "seed": base.seed,
        "train": asdict(base_train(recipe, base)),
        "train_subset": run.train_subset,
        "test_images": run.test_images,
        "threads": run.threads,
        "device": run.device,
    }
    if recipe.smoke:
        spec["smoke"] = True
    if run.evaluate_on == VALIDATION:  # absent on the test set, whose cells keep their identity
        spec["evaluate_on"] = {"split": VALIDATION, "images": VALIDATION_IMAGES, "carving_seed": TUNING_SEED}
    if base.attack == CLEAN:  # its target-class ACC is measured on the backdoors' target
        spec["target"] = recipe.poison.target
    if base.attack not in (None, CLEAN):
        spec["poison"] = asdict(recipe.poison)
        spec["attack_params"] = dict(recipe.attack_params.get(base.attack, ()))
        attacker = attacker_of(recipe, base)
        if attacker is not None:
            spec["attacker"] = base_spec(recipe, attacker)
        clean = clean_row_of(recipe, base)
        if clean is not None:
            spec["clean_row"] = base_spec(recipe, clean)
    if base.attack is None and base.teacher is None:
        spec["split"] = run.split
    if base.teacher is not None:
        spec.pop("train")
        column = recipe.columns[base.teacher]
        spec["teacher"] = {"method": column.method, "config": asdict(column.config)}
        spec["split"] = run.teacher_split
        spec.update(report_spec(run))
    return _plain(spec)


def cell_spec(recipe: Recipe, cell: Cell) -> dict[str, Any]:
    """Everything that determines a cell's result: its base's spec, its kind and column, the settings
    of the method it runs (its registered name under "registered"), and its source cell's spec."""
    spec = base_spec(recipe, cell.base)
    spec["method"] = cell.method
    spec["kind"] = cell.kind
    if cell.kind in ("repair", "robustify"):
        column = recipe.columns[cell.method]
        spec["registered"] = column.method
        spec["config"] = asdict(column.config)
    elif cell.kind != "base":
        configs = {DETECT: recipe.detect, MEND: recipe.mend, RETUNE: recipe.retune, DEFECTS: recipe.defects}
        spec["config"] = asdict(configs[cell.kind])
    if cell.kind == "robustify":
        spec["split"] = recipe.run.split
        spec["teacher"] = base_spec(recipe, cell.teacher) if cell.teacher else None
    elif cell.kind != "base":
        spec["clean_fraction"] = recipe.run.clean_fraction
    if cell.source is not None:
        spec["source"] = cell_spec(recipe, cell.source)
    if cell.trigger is not None:
        spec["trigger"] = cell_spec(recipe, cell.trigger)
    if cell.kind in ("base", "robustify") and cell.base.attack is None:
        spec.update(report_spec(recipe.run))
    return _plain(spec)
