"""The cells of a recipe's grid, their names on disk, and the settings that determine each one.

A *base* is the model a group of cells starts from: the backdoored model of (data, model, attack, seed),
or the naturally trained one of (data, model, seed) for robustifiers. It is trained once and cached as
an artefact; its own metrics are the grid's "none" (or "natural") cell, and each repair or robustifier
of the grid is one more cell on it. A robustifier that distils a teacher takes the natural base, or the
robust teacher (a base trained by the recipe's `run.robust_teacher` robustifier), as its teacher.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from mendnet.bench.recipe import Recipe
from mendnet.registry import ROBUSTIFIERS

NO_REPAIR = "none"
NATURAL = "natural"


def slug(text: str) -> str:
    """A file-name-safe form of a name (a user factory "pkg.mod:make" becomes "pkg.mod_make")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


@dataclass(frozen=True)
class BaseKey:
    """A model trained for the grid: backdoored by `attack`, trained by the robustifier `teacher` (a
    robust teacher), or naturally trained (both None)."""

    data: str
    model: str
    attack: str | None
    seed: int
    teacher: str | None = None

    @property
    def id(self) -> str:
        kind = self.attack or (f"teacher-{self.teacher}" if self.teacher else NATURAL)
        return f"{slug(self.data)}--{slug(self.model)}--{slug(kind)}--s{self.seed}"


@dataclass(frozen=True)
class Cell:
    """One result of the grid: `method` applied to the base (NO_REPAIR or NATURAL: the base itself).
    kind: "base", "repair" or "robustify"; teacher: the base a robustifier distils (None: none)."""

    base: BaseKey
    method: str
    kind: str
    teacher: BaseKey | None = None

    @property
    def id(self) -> str:
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


def enumerate_cells(recipe: Recipe) -> list[Cell]:
    """Every cell, grouped by base (so a local run trains each base just before its cells)."""
    g = recipe.grid
    cells = []
    for data in g.data:
        for model in g.models:
            for attack in g.attacks:
                for seed in g.seeds:
                    base = BaseKey(data, model, attack, seed)
                    cells.append(Cell(base, NO_REPAIR, "base"))
                    cells += [Cell(base, name, "repair") for name in g.repairs]
            if g.robustifiers:
                for seed in g.seeds:
                    base = BaseKey(data, model, None, seed)
                    teachers = {
                        "natural": base,
                        "robust": BaseKey(data, model, None, seed, recipe.run.robust_teacher),
                    }
                    cells.append(Cell(base, NATURAL, "base"))
                    for name in g.robustifiers:
                        role = ROBUSTIFIERS[name].teacher
                        cells.append(Cell(base, name, "robustify", teachers.get(role or "")))
    return cells


def _plain(obj: Any) -> Any:
    """JSON round trip, so a spec compares equal to the one read back from a file (tuples → lists)."""
    return json.loads(json.dumps(obj))


def base_spec(recipe: Recipe, base: BaseKey) -> dict[str, Any]:
    """Everything that determines a base model: change any of it and the base is trained again."""
    run = recipe.run
    spec: dict[str, Any] = {
        "data": base.data,
        "model": base.model,
        "attack": base.attack,
        "seed": base.seed,
        "train": asdict(recipe.train),
        "train_subset": run.train_subset,
        "test_images": run.test_images,
        "threads": run.threads,
        "device": run.device,
    }
    if recipe.smoke:
        spec["smoke"] = True
    if base.attack is not None:
        spec["poison"] = asdict(recipe.poison)
        spec["attack_params"] = dict(recipe.attack_params.get(base.attack, ()))
    if base.attack is None and base.teacher is None:
        spec["split"] = run.split
    if base.teacher is not None:
        spec.pop("train")
        spec["teacher"] = {"method": base.teacher, "config": asdict(recipe.configs[base.teacher])}
        spec["split"] = run.teacher_split
        spec["eval_eps"] = run.eval_eps
        spec["aa_images"] = run.aa_images
    return _plain(spec)


def cell_spec(recipe: Recipe, cell: Cell) -> dict[str, Any]:
    """Everything that determines a cell's result (its base's spec, the method and its settings)."""
    spec = base_spec(recipe, cell.base)
    spec["method"] = cell.method
    if cell.kind == "repair":
        spec["config"] = asdict(recipe.configs[cell.method])
        spec["clean_fraction"] = recipe.run.clean_fraction
    elif cell.kind == "robustify":
        spec["config"] = asdict(recipe.configs[cell.method])
        spec["split"] = recipe.run.split
        spec["teacher"] = base_spec(recipe, cell.teacher) if cell.teacher else None
    if cell.kind != "repair" and cell.base.attack is None:
        spec["eval_eps"] = recipe.run.eval_eps
        spec["aa_images"] = recipe.run.aa_images
    return _plain(spec)
