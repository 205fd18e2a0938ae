"""NAD's mechanics on toy data: teacher of another architecture, stage matching, the loss term."""

import math

import pytest
import torch

from mendnet.errors import MendnetError
from mendnet.models import ModelSpec, build_classifier
from mendnet.repair import nad
from mendnet.repair.context import RepairContext
from mendnet.train import fit
from tests.test_train import toy_set


def models():
    torch.manual_seed(0)
    student = build_classifier(ModelSpec("wrn-16-1", 2, (1, 8, 8), (0.4,), (0.3,)))
    teacher = build_classifier(ModelSpec("small-cnn", 2, (1, 8, 8), (0.4,), (0.3,)))
    return student, teacher


def test_teacher_of_another_architecture_is_resized_and_student_input_untouched():
    student, teacher = models()
    data = toy_set(64)
    ctx = RepairContext(data, data, progress=False, teacher=teacher)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    cfg = nad.Config(epochs=1, betas=(1000.0, 1000.0), batch_size=16)
    result = nad.run(student, ctx, cfg)
    assert result.info["stages"] == ["net.block2", "net.block3"]
    assert result.info["teacher_stages"] == ["net.stage1", "net.stage2"]
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # a copy was trained
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())


def test_stage_count_mismatch_names_both_lists():
    student, teacher = models()
    data = toy_set(32)
    ctx = RepairContext(data, data, progress=False, teacher=teacher)
    with pytest.raises(MendnetError, match=r"teacher needs 3 stages.*net\.stage1, net\.stage2"):
        nad.run(student, ctx, nad.Config(epochs=1))


def test_distillation_term_is_zero_against_itself_and_positive_otherwise():
    student, _teacher = models()
    x = torch.rand(4, 1, 8, 8)
    stages = ("net.block1", "net.block2", "net.block3")
    shapes = [(8, 8), (4, 4), (2, 2)]
    from mendnet.models.taps import FeatureTap

    with FeatureTap(student, stages) as feats:
        logits = student(x)
    same = nad.AttentionDistillation(student, stages, stages, shapes, nad.Config())
    assert same(x, None, logits, feats).item() == pytest.approx(0.0, abs=1e-7)
    other = build_classifier(ModelSpec("wrn-16-1", 2, (1, 8, 8), (0.4,), (0.3,)))
    differs = nad.AttentionDistillation(other, stages, stages, shapes, nad.Config())
    assert differs(x, None, logits, feats).item() > 0


def test_teacher_from_scratch_is_a_fresh_network_of_the_student_architecture():
    student, _ = models()
    data = toy_set(64)
    ctx = RepairContext(data, data, progress=False)
    cfg = nad.Config(epochs=1, teacher_epochs=1, batch_size=16, teacher_init="scratch")
    teacher, seconds = nad.train_teacher(student, ctx, cfg)
    assert seconds > 0 and teacher.spec == student.spec and teacher is not student
    # not a copy of the student: trained from other (fresh) weights
    assert any(not torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters(), strict=True))
    result = nad.run(student, ctx, cfg)
    assert result.info["teacher"] == "scratch" and result.info["teacher_seconds"] > 0
    with pytest.raises(MendnetError, match="unknown teacher init 'twin'"):
        nad.Config(teacher_init="twin")


def test_teacher_finetuned_with_student_settings_starts_from_the_backdoored_weights():
    student, _ = models()
    data = toy_set(64)
    ctx = RepairContext(data, data, progress=False)
    cfg = nad.Config(epochs=1, teacher_epochs=2, batch_size=16, teacher_init="finetune-student", lr=1e-9)
    teacher, seconds = nad.train_teacher(student, ctx, cfg)
    # the student's settings (lr 1e-9 here) reach the teacher: its weights stay the backdoored model's
    assert seconds > 0 and teacher is not student
    pairs = zip(teacher.parameters(), student.parameters(), strict=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)
    moved, _ = nad.train_teacher(
        student, ctx, nad.Config(teacher_epochs=1, batch_size=16, teacher_init="finetune-student")
    )
    assert any(not torch.equal(a, b) for a, b in zip(moved.parameters(), student.parameters(), strict=True))


def test_teacher_lr_replaces_the_init_lr_and_rejects_non_positive_values():
    student, _ = models()
    data = toy_set(64)
    ctx = RepairContext(data, data, progress=False)
    for init in ("finetune", "finetune-student"):
        cfg = nad.Config(teacher_epochs=1, batch_size=16, teacher_init=init, teacher_lr=1e-9)
        teacher, _ = nad.train_teacher(student, ctx, cfg)
        # lr 1e-9 reaches the teacher whatever the init's own lr (0.01 or the student's 0.1)
        pairs = zip(teacher.parameters(), student.parameters(), strict=True)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs), init
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(MendnetError, match="teacher_lr must be a positive number"):
            nad.Config(teacher_lr=bad)


def record_step_lrs(monkeypatch):
    """The lr of every SGD step taken from now on, read from the optimiser's param group at its step."""
    seen = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    return seen


@pytest.mark.parametrize("lr", [0.1, 0.045])
def test_student_runs_at_lr_for_two_epochs_then_at_a_fixed_0_01(monkeypatch, lr):
    # the release: lr for epochs 0-1, then 0.01 whatever lr is (not 0.1 × lr: 0.0045 for lr 0.045)
    student, teacher = models()
    data = toy_set(16)  # batch 8, drop_last: 2 steps an epoch
    ctx = RepairContext(data, data, progress=False, teacher=teacher)
    cfg = nad.Config(lr=lr, betas=(1000.0, 1000.0), batch_size=8)
    assert cfg.epochs == 20 and cfg.lr_drop_epoch == 2 and cfg.lr_after_drop == 0.01
    steps = record_step_lrs(monkeypatch)
    nad.run(student, ctx, cfg)
    per_epoch = [lr, lr] + [0.01] * 18
    assert steps == pytest.approx([v for v in per_epoch for _ in range(2)], rel=1e-12)
    history = fit(student, data, cfg.train_config(), progress=False)  # the loop's own log
    assert [e.lr for e in history.epochs] == pytest.approx(per_epoch, rel=1e-12)


def test_lr_after_drop_is_a_setting_of_its_own_and_must_be_positive(monkeypatch):
    student, teacher = models()
    data = toy_set(16)
    ctx = RepairContext(data, data, progress=False, teacher=teacher)
    cfg = nad.Config(epochs=4, lr=0.2, lr_drop_epoch=1, lr_after_drop=0.003, betas=(1.0, 1.0), batch_size=16)
    steps = record_step_lrs(monkeypatch)
    nad.run(student, ctx, cfg)
    assert steps == pytest.approx([0.2, 0.003, 0.003, 0.003], rel=1e-12)
    for bad in (0.0, -0.01, float("nan"), float("inf")):
        with pytest.raises(MendnetError, match="lr_after_drop must be a positive number"):
            nad.Config(lr_after_drop=bad)


def test_finetune_student_teacher_drops_to_the_fixed_lr_after_drop(monkeypatch):
    student, _ = models()
    data = toy_set(16)
    ctx = RepairContext(data, data, progress=False)
    steps = record_step_lrs(monkeypatch)
    cfg = nad.Config(teacher_epochs=5, lr=0.045, batch_size=16, teacher_init="finetune-student")
    nad.train_teacher(student, ctx, cfg)
    assert steps == pytest.approx([0.045, 0.045, 0.01, 0.01, 0.01], rel=1e-12)
    steps.clear()
    nad.train_teacher(
        student,
        ctx,
        nad.Config(teacher_epochs=4, batch_size=16, teacher_init="finetune-student", teacher_lr=0.2),
    )
    assert steps == pytest.approx([0.2, 0.2, 0.01, 0.01], rel=1e-12)


def test_finetune_and_scratch_teachers_keep_their_own_schedules(monkeypatch):
    student, _ = models()
    data = toy_set(64)  # FT's batch 64: one step an epoch
    ctx = RepairContext(data, data, progress=False)
    steps = record_step_lrs(monkeypatch)
    nad.train_teacher(student, ctx, nad.Config(teacher_epochs=4, teacher_init="finetune"))
    assert steps == pytest.approx([0.01] * 4, rel=1e-12)  # FT: constant 0.01
    steps.clear()
    nad.train_teacher(student, ctx, nad.Config(teacher_epochs=4, teacher_init="finetune", teacher_lr=0.03))
    assert steps == pytest.approx([0.03] * 4, rel=1e-12)
    steps.clear()
    # scratch: teacher_epochs of FT's settings at lr 0.1 with a per-step cosine decay (4 steps here)
    nad.train_teacher(student, ctx, nad.Config(teacher_epochs=4, teacher_init="scratch"))
    cosine = [0.05 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert steps == pytest.approx(cosine, rel=1e-9)
