"""NAD's mechanics on toy data: teacher of another architecture, stage matching, the loss term."""

import pytest
import torch

from mendnet.errors import MendnetError
from mendnet.models import ModelSpec, build_classifier
from mendnet.repair import nad
from mendnet.repair.context import RepairContext
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
