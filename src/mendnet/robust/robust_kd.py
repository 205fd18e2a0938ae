"""Robust-KD: robustness transfer by feature-map and Jacobian distillation (Zhang & Yi, 2021), §6.

The student (initialised from the frozen robust teacher, new head when the classes differ) is trained on
**clean** images with

    L = CE + α Σ_l (1 − cos(F_S^l, F_T^l)) + β Σ_l Σ_j ‖M_jᵀ J_S^l − M_jᵀ J_T^l‖²       (paper, Eq. 6)

F^l the stage-l maps flattened per sample, J^l = ∂F^l/∂x, M_j random unit vectors over the stage's
output, the same for teacher and student; each M_jᵀJ is one vector-Jacobian product, the student's with
create_graph=True. The Jacobian pass is a separate forward with BatchNorm in eval mode.

Differences from the paper and the authors' release: docs/deviations.md#robust-kd.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from mendnet.errors import MendnetError
from mendnet.losses.feature_distill import cosine_distance
from mendnet.losses.jacobian import jacobian_matching, projected_jacobian, random_unit
from mendnet.models import Classifier
from mendnet.models.taps import FeatureTap
from mendnet.robust.context import RobustContext, RobustResult, Schedule, train_student
from mendnet.robust.distill import FeatureDistillation, frozen_copy
from mendnet.robust.transfer import shared_stages
from mendnet.threats.adversarial.base import eval_mode


@dataclass(frozen=True)
class Config(Schedule):
    """Paper's main setting: α = 50, β = 5e-3, n_proj = 1, every stage (its ablation also favours
    α ∈ {0.5, 0.05}, β ∈ {5e-3, 5e-4}). β = 0 drops the Jacobian term (the "features" variant).
    stages: module names in both models (default: the student's stages). lr 0.01: our choice, since the
    student starts from the teacher."""

    lr: float = 0.01
    alpha: float = 50.0
    beta: float = 5e-3
    n_proj: int = 1
    stages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise MendnetError(f"alpha and beta must be ≥ 0, got {self.alpha} and {self.beta}")
        if self.n_proj < 1:
            raise MendnetError(f"n_proj must be ≥ 1, got {self.n_proj}")


class RobustKDTerm(FeatureDistillation):
    """The training loop's `LossTerm`: α·Σ(1 − cos) on the clean forward, plus β·Σ‖MᵀJ_S − MᵀJ_T‖²."""

    def __init__(
        self, student: Classifier, teacher: Classifier, stages: tuple[str, ...], config: Config, seed: int
    ) -> None:
        super().__init__(teacher, stages, cosine_distance, config.alpha)
        self.student = student
        self.beta = config.beta
        self.n_proj = config.n_proj
        self.seed = seed
        self.generator: torch.Generator | None = None

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        total = super().__call__(x, y, logits, features)
        if self.beta > 0:
            total = total + self.beta * self.jacobian_term(x)
        return total

    def jacobian_term(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_l Σ_j ‖M_jᵀJ_S^l − M_jᵀJ_T^l‖² (batch mean), both models with BatchNorm in eval mode."""
        if self.generator is None:
            self.generator = torch.Generator(device=x.device).manual_seed(self.seed)
        x_s = x.detach().requires_grad_(True)
        x_t = x.detach().requires_grad_(True)
        with eval_mode(self.student), FeatureTap(self.student, self.taps) as f_s:
            self.student(x_s)
        with FeatureTap(self.teacher, self.taps) as f_t:
            self.teacher(x_t)
        total = x.new_zeros(())
        for name in self.taps:
            for _ in range(self.n_proj):
                m = random_unit(f_s[name], self.generator)
                j_s = projected_jacobian(f_s[name], x_s, m, create_graph=True)
                j_t = projected_jacobian(f_t[name], x_t, m).detach()
                total = total + jacobian_matching(j_s, j_t)
        return total


def run(model: Classifier, ctx: RobustContext, config: Config = Config()) -> RobustResult:
    """Distil the robust teacher's stage features (and input Jacobians when β > 0) into a copy of
    `model` on clean `ctx.train` (the input model is not changed)."""
    teacher = frozen_copy(ctx.require_teacher("robust-kd", "robust"), ctx.device)
    student = copy.deepcopy(model)
    stages, _ = shared_stages(student, teacher, config.stages)
    return train_student(
        student,
        ctx,
        config,
        "Robust-KD" + (" +J" if config.beta > 0 else ""),
        {"stages": list(stages)},
        extra_loss=RobustKDTerm(student, teacher, stages, config, ctx.seed),
    )
