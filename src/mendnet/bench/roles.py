"""The models a recipe trains for a role rather than for a row: the attacker's clean model (Trojan optimises
its patch on it, CL its perturbation) and the natural teacher of robustifiers that distil one
(AGKD-BML). `run.attacker_model` and `run.natural_teacher` choose them; a `[base.NAME]` table defines an
extra model for either role: the recipe's [train] with the table's fields changed, trained per data set,
model and seed like the row it stands beside (the clean row's training images for the attacker, the
robustifiers' `run.split` half for the natural teacher), and shown in no row."""

from __future__ import annotations

from typing import Any

from mendnet.bench.columns import VARIANT_NAME, Column
from mendnet.bench.grid import CLEAN, NATURAL, Grid
from mendnet.bench.settings import config_from_table, table
from mendnet.errors import MendnetError
from mendnet.registry import ROBUSTIFIERS
from mendnet.threats.backdoor import TRIGGERS
from mendnet.train import TrainConfig

SURROGATE = "surrogate"
"""`run.attacker_model`'s default: each attack that needs a clean model trains its own surrogate inside
its base (`jobs.train.train_model`: the same training settings and images, seed + 1)."""
CLEAN_ROW = "clean"
"""`run.attacker_model`: the clean row's model (attack "none") of the same data set, model and seed."""


def _model_attacks(grid: Grid) -> list[str]:
    """The attacks of the grid whose trigger is prepared on a clean model (Trojan, CL)."""
    return [a for a in grid.attacks if a != CLEAN and TRIGGERS[a].needs_model]


def _natural_takers(columns: dict[str, Column]) -> list[str]:
    """The robustifier columns that distil a natural teacher."""
    return [
        n
        for n, c in columns.items()
        if c.method in ROBUSTIFIERS and ROBUSTIFIERS[c.method].teacher == NATURAL
    ]


def _check_role(key: str, value: str, defaults: tuple[str, ...], bases: dict[str, TrainConfig]) -> None:
    if value not in (*defaults, *bases):
        given = ", ".join(f'"{v}"' for v in defaults)
        raise MendnetError(f"run.{key}: unknown {value!r}; give {given} or the NAME of a [base.NAME] table")


def parse_bases(
    doc: dict[str, Any], grid: Grid, attacker: str, natural: str, columns: dict[str, Column]
) -> dict[str, TrainConfig]:
    """Each `[base.NAME]` as its TrainConfig ([train] with the table's changes), after checking that
    `attacker` (run.attacker_model) and `natural` (run.natural_teacher) name models the grid can train and
    use, and that every [base.NAME] serves one of them. columns: the recipe's method columns."""
    bases = {}
    for name, changes in table(doc, "base").items():
        if not isinstance(changes, dict):
            raise MendnetError(f"[base.{name}] must be a table of [train] settings")
        if name in (SURROGATE, CLEAN_ROW, NATURAL) or not VARIANT_NAME.fullmatch(name):
            raise MendnetError(
                f"[base.{name}]: a model's name is letters and digits joined by single '-', '_' or '.', "
                f"other than {SURROGATE}, {CLEAN_ROW} and {NATURAL}"
            )
        bases[name] = config_from_table(TrainConfig, {**table(doc, "train"), **changes}, f"base.{name}")
    _check_role("attacker_model", attacker, (SURROGATE, CLEAN_ROW), bases)
    _check_role("natural_teacher", natural, (NATURAL,), bases)
    if attacker != SURROGATE and not _model_attacks(grid):
        needing = ", ".join(a for a, e in TRIGGERS.items() if e.needs_model)
        raise MendnetError(f"run.attacker_model: no attack of grid.attacks uses a clean model ({needing})")
    if attacker == CLEAN_ROW and CLEAN not in grid.attacks:
        raise MendnetError(f'run.attacker_model = "clean" needs the clean row: add "{CLEAN}" to grid.attacks')
    if natural != NATURAL and not _natural_takers(columns):
        raise MendnetError("run.natural_teacher: no robustifier of the grid distils a natural teacher")
    for name in bases:
        if name not in (attacker, natural):
            raise MendnetError(
                f"[base.{name}] is used by no role; name it in run.attacker_model or run.natural_teacher"
            )
    return bases
