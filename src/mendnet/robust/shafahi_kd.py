"""Feature-distillation baseline of Shafahi et al., "Adversarially robust transfer learning" (ICLR 2020),
as docs/methods.md §6 defines it: the student (initialised from a robust teacher, new head when the classes
differ) is trained on clean target images with

    L = CE(f_S(x), y) + λ · ‖z_S(x) − z_T(x)‖²

z the penultimate (pooled) features, the teacher frozen. λ = 1 with the squared distance averaged
over feature entries, lr 0.01, is our choice (the paper tunes λ per task).

Differences from the paper and the authors' release: docs/deviations.md#shafahi.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from mendnet.errors import MendnetError
from mendnet.losses.feature_distill import squared_l2
from mendnet.models import Classifier
from mendnet.robust.context import RobustContext, RobustResult, Schedule, train_student
from mendnet.robust.distill import FeatureDistillation, frozen_copy
from mendnet.robust.transfer import penultimate_name


@dataclass(frozen=True)
class Config(Schedule):
    """λ (`weight`) = 1.0 on the mean squared penultimate-feature difference; lr 0.01 (our choices)."""

    lr: float = 0.01
    weight: float = 1.0


def run(model: Classifier, ctx: RobustContext, config: Config = Config()) -> RobustResult:
    """Distil the teacher's penultimate features into a copy of `model` on clean `ctx.train`."""
    if config.weight < 0:
        raise MendnetError(f"weight must be ≥ 0, got {config.weight}")
    teacher = frozen_copy(ctx.require_teacher("shafahi", "robust"), ctx.device)
    layer = penultimate_name(model)
    if layer != penultimate_name(teacher):
        raise MendnetError(
            f"student's penultimate layer {layer} is not the teacher's {penultimate_name(teacher)}; "
            "distil between models of the same architecture"
        )
    return train_student(
        copy.deepcopy(model),
        ctx,
        config,
        "Shafahi KD",
        {"layer": layer},
        extra_loss=FeatureDistillation(teacher, (layer,), squared_l2, config.weight),
    )
