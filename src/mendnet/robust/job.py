"""The `robustify` job: pick the training data (a task, or its source/target half), make the starting
model (an artefact, the teacher with a new head, or a fresh network), run a registered robustifier,
and measure the robustness report. Shared by the CLI and the benchmark."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from mendnet.artefact import Artefact, provenance
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.errors import MendnetError
from mendnet.models import Classifier, ModelSpec, build_classifier, check_fits
from mendnet.robust.context import RobustContext
from mendnet.robust.evaluation import AA_IMAGES, robust_metrics
from mendnet.robust.transfer import split_set, student_from_teacher


@dataclass
class RobustOutcome:
    model: Classifier
    meta: dict[str, Any]
    metrics: dict[str, Any]


def training_set(train: ImageSet, split: str, split_seed: int, subset: int | None, seed: int) -> ImageSet:
    """The `split` half of `train` (seeded by `split_seed`), then its first `subset` images under a
    permutation seeded by `seed` (a quick run)."""
    data = split_set(train, split, split_seed)
    if subset is None:
        return data
    if not 0 < subset <= len(data):
        raise MendnetError(f"train subset {subset} must lie in [1, {len(data)}]")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(perm[:subset].sort().values)


def starting_model(
    train: ImageSet, teacher: Classifier | None, init: Classifier | None, arch: str, seed: int
) -> Classifier:
    """`init` if given; else the teacher adapted to the task (new head when the classes differ); else a
    fresh `arch` seeded with `seed`."""
    if init is not None:
        return init
    if teacher is not None:
        return student_from_teacher(teacher, train)
    torch.manual_seed(seed)
    return build_classifier(ModelSpec(arch, train.num_classes, train.shape, train.mean, train.std))


def robustify_model(
    method: str,
    config: Any,
    *,
    data: DataRef,
    teacher: Artefact | None = None,
    init: Artefact | None = None,
    arch: str = "small-cnn",
    split: str = "all",
    split_seed: int = 0,
    train_subset: int | None = None,
    eval_images: int = 1000,
    eval_eps: float | None = None,
    aa_images: int = AA_IMAGES,
    aa_check: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    sets: tuple[ImageSet, ImageSet] | None = None,
) -> RobustOutcome:
    """Run robustifier `method` with `config` and measure clean, per-attack and worst-case accuracy on
    the first `eval_images` test images (AutoAttack on the first `aa_images` of them; 0: none; with
    `aa_check` the authors' package called directly on them too, `robust_metrics`), plus the method's
    training seconds."""
    from mendnet.registry import ROBUSTIFIERS

    if method not in ROBUSTIFIERS:
        raise MendnetError(f"unknown robustifier {method!r}; known: {', '.join(ROBUSTIFIERS)}")
    role = ROBUSTIFIERS[method].teacher
    if role and teacher is None:
        raise MendnetError(f"{method} needs a {role} teacher: pass --teacher ARTEFACT")
    if not role and teacher is not None:
        raise MendnetError(f"{method} trains without a teacher; start from an artefact with --model instead")
    if eval_images < 1:
        raise MendnetError(f"eval images must be ≥ 1, got {eval_images}")
    full_train, test = sets if sets is not None else data.load()
    train = training_set(full_train, split, split_seed, train_subset, seed)
    t_model = teacher.model if teacher is not None else None
    model = starting_model(train, t_model, init.model if init is not None else None, arch, seed)
    check_fits(model, test)
    ctx = RobustContext(train, device=device, seed=seed, progress=progress, teacher=t_model)
    result = ROBUSTIFIERS[method].run(model.to(device), ctx, config)
    test = test.subset(torch.arange(min(eval_images, len(test))))
    metrics: dict[str, Any] = robust_metrics(
        result.model,
        test,
        eps=eval_eps,
        device=device,
        seed=seed,
        progress=progress,
        aa_images=aa_images,
        aa_check=aa_check,
    )
    metrics["train_seconds"] = result.info["train_seconds"]
    meta = {
        "data": asdict(data),
        "threat": None,
        "robustify": {
            "method": method,
            "config": asdict(config),
            "teacher": str(teacher.path) if teacher is not None and teacher.path else None,
            "init": str(init.path) if init is not None and init.path else None,
            "split": split,
            "split_seed": split_seed,
            "train_subset": train_subset,
            "train_images": len(train),
            "info": result.info,
        },
        "provenance": provenance(seed),
    }
    return RobustOutcome(result.model.cpu(), meta, metrics)
