"""NAD: Neural Attention Distillation (Li et al., ICLR 2021), docs/methods.md §3.

Step 1, teacher: a fine-tuned copy of the backdoored model (FT, 10 epochs), or a teacher given by the
user (another artefact, possibly another architecture). Step 2, student = the backdoored model trained on
the defender data with
    L = CE(f_S(x), y) + Σ_l β_l · D(A(F_T^l), A(F_S^l))                       (NAD eq. 3)
the teacher frozen, A an attention operator (default A^2_sum) and D the distance of normalised maps.
The student trains at lr 0.1 for 2 epochs, then at a fixed 0.01 (not 0.1 × lr), as the authors'
release does; `Config` lists which defaults are the release's and which ours.

Differences from the paper and the authors' release: docs/deviations.md#nad.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.losses.attention import attention_distance, normalized_attention
from mendnet.models import Classifier, build_classifier, check_attention_stages
from mendnet.models.taps import FeatureTap
from mendnet.repair import finetune
from mendnet.repair.context import RepairContext, RepairResult
from mendnet.train import TrainConfig, fit_in, train_config_from

TEACHER_INITS = ("finetune", "finetune-student", "scratch")


@dataclass(frozen=True)
class Config:
    """NAD's settings (docs/methods.md §3). [release]: the default is the authors' released code's
    (github.com/bboylyg/NAD: config.py, main.py, utils/util.py, data_loader.py), which docs/methods.md §3
    follows; [ours]: our choice.

    Student schedule, as implemented: SGD (momentum 0.9, Nesterov), lr `lr` for epochs
    [0, lr_drop_epoch), then the fixed `lr_after_drop` for the remaining epochs, whatever `lr` is. The
    release sets 0.1 for epochs 0–1 and 0.01 from epoch 2 on: an absolute lr, not 0.1 × lr (its 1e-4
    from epoch 20 on is never reached in its 20 epochs and is not implemented). epochs 20, batch 64,
    lr 0.1, lr_drop_epoch 2, lr_after_drop 0.01, momentum 0.9, weight decay 1e-4 [release].
    Augmentation: random crop (pad 4), horizontal flip [release]; cutout 3: one 3×3 zero square at a
    random centre, clipped at the borders, as docs/methods.md §3 states it [ours: the release's
    Cutout(n_holes=1, length=3) zeroes rows y−1..y and columns x−1..x, a 2×2 square].

    betas (500, 1000, 1000) for WRN-16-1's three groups [release], with the mean-squared distance of
    the normalised maps [release; the paper's eq. 2 is the plain L2 norm, distance "l2"]; operator
    A^p_sum with p 2 [release].

    stages: student stage names; empty = the model's deepest len(betas) stages (our choice for models with
    more stages than betas). teacher_stages: matched in order; empty = the teacher's deepest ones.
    teacher_epochs: epochs of the teacher's training when none is given (10: the top of the 5–10 the
    release's README gives). teacher_init: "finetune" (the paper's default as docs/methods.md §3 states it: FT
    of a copy of the backdoored model with FT's settings, lr 0.01 constant), "finetune-student" (a copy of
    the backdoored model trained with the student's own settings above and no distillation term: the
    authors' release obtains its teacher by running the NAD script with β = 0 for 5–10 epochs, so the
    teacher runs at `teacher_lr` (else `lr`) for epochs [0, lr_drop_epoch) and at the fixed
    `lr_after_drop` afterwards; with a given lr this teacher keeps less of the backdoor than FT at 0.01)
    or "scratch" (the paper's variant: a fresh network of the student's architecture trained on the
    defender data alone; our choice of its schedule: FT's settings but lr 0.1 with a cosine decay, as a
    network that starts from random weights needs). teacher_lr: the teacher's lr in place of its init's
    own (FT's constant 0.01, the student's first-phase lr, 0.1); None keeps that; it does not change
    `lr_after_drop`. The authors' release trains teacher and student with the same schedule.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    lr_drop_epoch: int = 2
    lr_after_drop: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: tuple[float, ...] = (500.0, 1000.0, 1000.0)
    operator: str = "pow-sum"
    p: float = 2.0
    distance: str = "mean-squared"
    stages: tuple[str, ...] = ()
    teacher_stages: tuple[str, ...] = ()
    teacher_epochs: int = 10
    teacher_lr: float | None = None
    teacher_init: str = "finetune"
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 3

    def __post_init__(self) -> None:
        if self.teacher_init not in TEACHER_INITS:
            raise MendnetError(
                f"unknown teacher init {self.teacher_init!r}; choose {', '.join(TEACHER_INITS)}"
            )
        if self.teacher_lr is not None and not (math.isfinite(self.teacher_lr) and self.teacher_lr > 0):
            raise MendnetError(f"NAD teacher_lr must be a positive number, got {self.teacher_lr}")
        if not (math.isfinite(self.lr_after_drop) and self.lr_after_drop > 0):
            raise MendnetError(f"NAD lr_after_drop must be a positive number, got {self.lr_after_drop}")

    def train_config(self) -> TrainConfig:
        """The student's training: `lr` until epoch lr_drop_epoch, then the absolute `lr_after_drop`."""
        return train_config_from(
            self,
            nesterov=True,
            schedule="step",
            milestones=(self.lr_drop_epoch,),
            milestone_lrs=(self.lr_after_drop,),
        )


def pick_stages(model: Classifier, asked: tuple[str, ...], count: int, who: str) -> tuple[str, ...]:
    """The stages to distil: those asked for, else the model's deepest `count` stages."""
    stages = asked or model.stages[-count:]
    if len(stages) != count:
        raise MendnetError(
            f"{who} needs {count} stages to match {count} betas, got {len(stages)}: {', '.join(stages)}"
        )
    return tuple(stages)


class AttentionDistillation(nn.Module):
    """The extra loss term Σ_l β_l · D(A(F_T^l), A(F_S^l)) for the shared training loop."""

    def __init__(
        self,
        teacher: nn.Module,
        student_stages: tuple[str, ...],
        teacher_stages: tuple[str, ...],
        student_sizes: list[tuple[int, int]],
        config: Config,
    ) -> None:
        super().__init__()
        self.teacher = teacher
        self.taps = student_stages
        self.teacher_stages = teacher_stages
        self.sizes = student_sizes
        self.config = config

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        logits: torch.Tensor,
        features: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        cfg = self.config
        with torch.no_grad(), FeatureTap(self.teacher, self.teacher_stages) as t_feats:
            self.teacher(x)
        total = logits.new_zeros(())
        for beta, s_name, t_name, size in zip(
            cfg.betas, self.taps, self.teacher_stages, self.sizes, strict=True
        ):
            a_s = normalized_attention(features[s_name], cfg.operator, cfg.p)
            a_t = normalized_attention(t_feats[t_name], cfg.operator, cfg.p, size=size)
            total = total + beta * attention_distance(a_s, a_t, cfg.distance)
        return total


def train_teacher(model: Classifier, ctx: RepairContext, config: Config) -> tuple[Classifier, float]:
    """NAD's teacher and its training seconds: a fine-tuned copy of `model` (FT's settings, or with
    teacher_init "finetune-student" the student's: teacher_lr or lr, then lr_after_drop from epoch
    lr_drop_epoch on), or (teacher_init "scratch") a fresh network of its architecture, seeded with
    ctx.seed, trained on the defender data alone."""
    ft = finetune.Config(epochs=config.teacher_epochs)
    if config.teacher_init == "finetune":
        result = finetune.run(model, ctx, replace(ft, lr=config.teacher_lr or ft.lr))
        return result.model, result.info["train_seconds"]
    if config.teacher_init == "finetune-student":
        teacher = copy.deepcopy(model)
        cfg = replace(config.train_config(), epochs=config.teacher_epochs, lr=config.teacher_lr or config.lr)
    else:
        torch.manual_seed(ctx.seed)
        teacher = build_classifier(model.spec)
        cfg = replace(ft.train_config(), lr=config.teacher_lr or 0.1, schedule="cosine")
    history = fit_in(
        ctx, teacher, ctx.defender_train, cfg, description=f"NAD teacher ({config.teacher_init})"
    )
    return teacher, history.seconds


def run(model: Classifier, ctx: RepairContext, config: Config = Config()) -> RepairResult:
    """Return the NAD-repaired copy of `model` (the input model is not changed)."""
    info: dict = {}
    if ctx.teacher is not None:
        teacher = copy.deepcopy(ctx.teacher)
        info["teacher"] = "given"
    else:
        teacher, info["teacher_seconds"] = train_teacher(model, ctx, config)
        info["teacher"] = config.teacher_init
    n = len(config.betas)
    s_stages = pick_stages(model, config.stages, n, "student")
    t_stages = pick_stages(teacher, config.teacher_stages, n, "teacher")
    s_shapes = check_attention_stages(model, s_stages, model.spec.input_shape)
    check_attention_stages(teacher, t_stages, teacher.spec.input_shape)
    teacher.to(ctx.device, memory_format=torch.channels_last).eval()
    for prm in teacher.parameters():
        prm.requires_grad_(False)
    term = AttentionDistillation(teacher, s_stages, t_stages, [s_shapes[s][1:] for s in s_stages], config)
    student = copy.deepcopy(model)
    history = fit_in(
        ctx, student, ctx.defender_train, config.train_config(), extra_loss=term, description="NAD student"
    )
    info.update(stages=list(s_stages), teacher_stages=list(t_stages), train_seconds=history.seconds)
    return RepairResult(student, info)
