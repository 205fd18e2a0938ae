"""A recipe's [run] and [poison] tables: how every cell runs, and what every planted backdoor is."""

from __future__ import annotations

from dataclasses import dataclass

from mendnet.bench.grid import NATURAL
from mendnet.bench.roles import SURROGATE
from mendnet.errors import MendnetError
from mendnet.robust.evaluation import AA_IMAGES
from mendnet.robust.transfer import SPLITS

TEST = "test"
VALIDATION = "validation"
EVALUATIONS = (TEST, VALIDATION)
"""What `run.evaluate_on` may name: the images every figure is measured on."""


@dataclass(frozen=True)
class RunSettings:
    """How every cell runs.

    train_subset: train on this many seeded training images (None: all). test_images: evaluate on the
    first N test images (None: all). evaluate_on: "test" (the default), or "validation": every model
    trains on the training set less the researcher's validation images (`mendnet.data.tuning`: 5,000
    images, carving seed 100) and every figure is measured on those images (the first `test_images` of
    them) in the test set's place; the test set is never loaded (a selection run, mendnet.bench.selection).
    clean_fraction: the defender data of repairs. threads: torch threads of every cell, locally and as a
    Ray task (the thread count changes float summation order, so equal counts are what make local and
    Ray results identical).
    Robustifier cells: robust_teacher is the robustifier whose model (trained once per data set, model
    and seed, on the `teacher_split` half) is the teacher of methods with a robust teacher; `split` is
    the half the robustifiers train on ("all", or "source"/"target": Robust-KD's same-data split);
    eval_eps the L∞ budget of their robustness report (None: 0.1 on 28×28 greyscale, else 8/255);
    aa_images the test images AutoAttack runs on in that report (the first N; 0: no AutoAttack);
    aa_check: the authors' package also runs directly on those images with the same settings, its robust
    accuracy checked against mendnet's (issue 27; `robust.evaluation.package_check`; needs aa_images).
    attacker_model and natural_teacher: the models of those roles (mendnet.bench.roles).
    """

    train_subset: int | None = None
    test_images: int | None = None
    evaluate_on: str = TEST
    clean_fraction: float = 0.05
    threads: int = 1
    device: str = "cpu"
    data_dir: str | None = None
    robust_teacher: str = "pgd-at"
    split: str = "all"
    teacher_split: str = "all"
    eval_eps: float | None = None
    aa_images: int = AA_IMAGES
    aa_check: bool = False
    attacker_model: str = SURROGATE
    natural_teacher: str = NATURAL

    def __post_init__(self) -> None:
        for name in ("train_subset", "test_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MendnetError(f"run.{name} must be ≥ 1, got {value}")
        if self.aa_images < 0:
            raise MendnetError(f"run.aa_images must be ≥ 0, got {self.aa_images}")
        if self.aa_check and self.aa_images == 0:
            raise MendnetError("run.aa_check checks AutoAttack's images, but run.aa_images is 0")
        if self.threads < 1:
            raise MendnetError(f"run.threads must be ≥ 1, got {self.threads}")
        if not 0 < self.clean_fraction < 1:
            raise MendnetError(f"run.clean_fraction must lie in (0, 1), got {self.clean_fraction}")
        if self.evaluate_on not in EVALUATIONS:
            raise MendnetError(
                f"run.evaluate_on must be one of {', '.join(EVALUATIONS)}, got {self.evaluate_on!r}"
            )
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
