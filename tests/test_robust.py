"""Robustness training and transfer (issue 7): the training loop's batch objective, transfer set-ups,
AGKD-BML's adversarial pairs, PGD-AT on real data, the robustify and steps-curve commands, and errors."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from mendnet.cli import main
from mendnet.data.augment import NO_AUGMENT, Augment
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.errors import MendnetError
from mendnet.models import ModelSpec, build_classifier
from mendnet.models.taps import FeatureTap
from mendnet.registry import ROBUSTIFIERS
from mendnet.robust import agkd_bml, pgd_at, robust_kd
from mendnet.robust.adversary import craft
from mendnet.robust.context import RobustContext
from mendnet.robust.distill import frozen_copy
from mendnet.robust.job import robustify_model, training_set
from mendnet.robust.transfer import split_indices, student_from_teacher
from mendnet.threats.adversarial import PGDLinf, robust_accuracy
from mendnet.train import TrainConfig, fit
from tests.test_train import toy_set

EPS = 0.1


def toy_model(arch="small-cnn", classes=2):
    torch.manual_seed(0)
    return build_classifier(ModelSpec(arch, classes, (1, 8, 8), (0.4,), (0.3,)))


@pytest.fixture(scope="module")
def natural(fmnist):
    """A naturally trained small CNN on 2,048 Fashion-MNIST images (2 epochs) and the data sets."""
    train, test = fmnist
    data = training_set(train, "target", 0, 2048, 0)
    torch.manual_seed(0)
    model = build_classifier(ModelSpec("small-cnn", 10, data.shape, data.mean, data.std))
    fit(model, data, TrainConfig(epochs=2, batch_size=64, lr=0.05), progress=False)
    return model, train, test


def pgd_accuracy(model, test, n=300):
    attack = PGDLinf(eps=EPS, steps=10)
    return robust_accuracy(model, test.subset(torch.arange(n)), attacks=[attack], progress=False)


@pytest.mark.parametrize("method", list(ROBUSTIFIERS))
def test_every_method_trains_a_copy_through_the_one_loop(method):
    data = toy_set(64)
    model = toy_model()
    ctx = RobustContext(data, progress=False, teacher=toy_model())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = ROBUSTIFIERS[method].run(model, ctx, ROBUSTIFIERS[method].config(epochs=1, batch_size=16))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())
    assert result.info["train_seconds"] > 0 and not result.model.training


def test_crafting_runs_in_eval_mode_and_leaves_batchnorm_statistics_alone():
    model = toy_model().train()
    x, y = toy_set(16).float_images(), toy_set(16).labels
    stats = [b.clone() for b in model.buffers()]
    attack = PGDLinf(eps=EPS, steps=3)
    x_adv = craft(attack, model, x, y, torch.Generator().manual_seed(0))
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > EPS / 2  # it moved


def test_objective_and_extra_loss_are_exclusive():
    term = robust_kd.RobustKDTerm(toy_model(), toy_model(), ("net.stage1",), robust_kd.Config(), 0)
    with pytest.raises(MendnetError, match="not both"):
        fit(toy_model(), toy_set(32), TrainConfig(epochs=1), extra_loss=term, objective=lambda m, x, y: None)


def test_same_data_split_and_new_head():
    src, tgt = split_indices(101, "source", 3), split_indices(101, "target", 3)
    assert len(src) == 51 and len(tgt) == 50
    assert torch.equal(torch.cat([src, tgt]).sort().values, torch.arange(101))
    assert torch.equal(src, split_indices(101, "source", 3)) and not torch.equal(
        src, split_indices(101, "source", 4)
    )
    teacher = toy_model(classes=10)
    student = student_from_teacher(teacher, toy_set(8))
    assert student.spec.num_classes == 2 and student(torch.rand(3, 1, 8, 8)).shape == (3, 2)
    assert teacher.spec.num_classes == 10 and teacher.net.head[3].out_features == 10
    assert torch.equal(student.net.stage1[0].weight, teacher.net.stage1[0].weight)


def test_class_pool_draws_images_of_the_asked_class():
    labels = torch.arange(40) % 4
    images = (labels * 60).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    data = ImageSet(images, labels, ("a", "b", "c", "d"), (0.5,), (0.5,))
    pool = agkd_bml.ClassPool(data, "cpu")
    asked = torch.tensor([3, 0, 2, 2, 1, 3, 0] * 20)
    drawn = pool.draw(asked, torch.Generator().manual_seed(0))
    assert torch.equal((drawn[:, 0, 0, 0] * 255 / 60).round().long(), asked)


def test_agkd_label_smoothing_is_the_releases_convention():
    # release: true class 1 − s, the others s/(K − 1); s = 0.5, K = 10
    y = torch.tensor([3, 0])
    q = agkd_bml.smoothed_targets(y, 10, 0.5)
    expected = torch.full((2, 10), 0.5 / 9)
    expected[0, 3] = expected[1, 0] = 0.5
    assert torch.allclose(q, expected)
    # logits (ln 2, 0, …, 0): p = (2/11, 1/11, …); y = 0 → −0.5·ln(2/11) − 9·(0.5/9)·ln(1/11)
    logits = torch.zeros(1, 10)
    logits[0, 0] = math.log(2.0)
    loss = agkd_bml.smoothed_cross_entropy(logits, torch.tensor([0]), 0.5).item()
    assert loss == pytest.approx(math.log(11) - 0.5 * math.log(2), rel=1e-6)
    # torch's ε = 0.5 would give 0.55 to the true class: ln 11 − 0.55·ln 2; ε = s·K/(K − 1) agrees
    torch_half = F.cross_entropy(logits, torch.tensor([0]), label_smoothing=0.5).item()
    assert torch_half == pytest.approx(math.log(11) - 0.55 * math.log(2), rel=1e-6)
    torch_same = F.cross_entropy(logits, torch.tensor([0]), label_smoothing=5 / 9).item()
    assert torch_same == pytest.approx(loss, rel=1e-6)


@pytest.mark.parametrize(
    ("arch", "stage"),
    [
        ("wrn-16-1", "net.relu"),
        ("preact-resnet-18", "net.relu"),
        ("resnet-18", "net.layer4"),
        ("vgg-11-bn", "net.features.stage5"),
        ("small-cnn", "net.stage2"),
    ],
)
def test_agkd_default_attention_stage_is_the_last_map_before_pooling(arch, stage):
    torch.manual_seed(0)
    model = build_classifier(ModelSpec(arch, 2, (1, 16, 16), (0.4,), (0.3,)))  # last maps 2×2 or more
    assert agkd_bml.attention_stage(model) == stage


def test_agkd_attention_on_wrn_is_taken_after_the_final_bn_relu():
    model = toy_model("wrn-16-1")
    bn = model.net.bn
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # BN statistics and affine parameters away from the identity
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(bn.num_features, generator=g))
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
    ctx = RobustContext(toy_set(32), progress=False, teacher=model)
    objective = agkd_bml.objective_for(model, ctx, agkd_bml.Config())
    assert objective.stage == "net.relu" and objective.features == "net.flatten"
    x = toy_set(32).float_images()[:6]
    with torch.no_grad(), FeatureTap(objective.teacher, ("net.block3", objective.stage)) as taps:
        objective.teacher(x)
    b3 = taps["net.block3"]
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    by_hand = (
        (b3 - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None]
    ).clamp_min(0)
    assert torch.allclose(taps[objective.stage], by_hand, atol=1e-5)
    assert not torch.allclose(taps[objective.stage], b3, atol=1e-2)


def _x2(augment, seed=0):
    data = toy_set(32)
    model = toy_model()
    pool = agkd_bml.ClassPool(data, "cpu")
    attack = PGDLinf(eps=EPS, steps=1, targeted=True)
    objective = agkd_bml.AGKDObjective(
        frozen_copy(toy_model(), "cpu"),
        pool,
        "net.stage2",
        "net.head.2",
        attack,
        agkd_bml.Config(),
        seed,
        augment,
    )
    x, y = data.float_images()[:16], data.labels[:16]
    c, _, x2, _ = objective.adversarial_pair(model, x, y)
    return data, c, x2


def test_agkd_x2_is_augmented_like_x1_deterministically_under_the_seed():
    data, c, plain = _x2(NO_AUGMENT)
    originals = data.float_images()
    assert all(any(torch.equal(img, o) for o in originals) for img in plain)
    augment = Augment(crop_padding=2, flip=True)
    _, c_aug, x2 = _x2(augment)
    assert torch.equal(c_aug, c) and torch.equal(x2, _x2(augment)[2])
    assert not torch.equal(x2, _x2(augment, seed=1)[2])
    # every x2 is a crop (zero padding 2) of a class-c image, maybe flipped; not all are un-augmented
    padded = F.pad(originals, (2, 2, 2, 2))
    for img, cls in zip(x2, c_aug, strict=True):
        windows = [
            w
            for p in padded[data.labels == cls]
            for dy in range(5)
            for dx in range(5)
            for w in (p[:, dy : dy + 8, dx : dx + 8], p[:, dy : dy + 8, dx : dx + 8].flip(2))
        ]
        assert any(torch.equal(img, w) for w in windows)
    assert sum(any(torch.equal(img, o) for o in originals) for img in x2) < len(x2) // 2


def test_agkd_adversarial_pairs_are_targeted_at_the_right_classes_and_inside_the_ball(natural):
    model, train, test = natural
    ctx = RobustContext(training_set(train, "target", 0, 2048, 0), progress=False, teacher=model)
    objective = agkd_bml.objective_for(model, ctx, agkd_bml.Config())
    x, y = test.float_images(torch.arange(64)), test.labels[:64]
    c, x1a, x2, x2a = objective.adversarial_pair(model, x, y)
    with torch.no_grad():
        logits = model(x)
        assert torch.equal(c, logits.scatter(1, y[:, None], float("-inf")).argmax(1))
        assert bool((c != y).all())
        # share landing on the target, before (clean image) and after the targeted attack
        forward = [(model(v).argmax(1) == c).float().mean().item() for v in (x, x1a)]
        backward = [(model(v).argmax(1) == y).float().mean().item() for v in (x2, x2a)]
    assert forward[1] > 0.5 and forward[1] - forward[0] > 0.35
    assert backward[1] > 0.5 and backward[1] - backward[0] > 0.35
    for adv, start in ((x1a, x), (x2a, x2)):
        assert (adv - start).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_short_pgd_at_raises_pgd_accuracy_well_above_the_natural_model(natural):
    model, train, test = natural
    data = training_set(train, "source", 0, 1024, 0)
    cfg = pgd_at.Config(epochs=1, batch_size=64, lr=0.02, steps=3, alpha=0.04)
    robust = pgd_at.run(model, RobustContext(data, progress=False), cfg).model
    before, after = pgd_accuracy(model, test), pgd_accuracy(robust, test)
    print(f"PGD-10 accuracy natural {before.worst_case:.3f}, PGD-AT {after.worst_case:.3f}")
    assert after.worst_case > before.worst_case + 0.2
    assert after.clean_acc > 0.55


def test_teacher_of_another_architecture_is_refused_with_stage_names():
    data = toy_set(32)
    ctx = RobustContext(data, progress=False, teacher=toy_model("wrn-16-1"))
    with pytest.raises(MendnetError, match=r"teacher stages: net\.block1.*student stages: net\.stage1"):
        robust_kd.run(toy_model(), ctx, robust_kd.Config(epochs=1))


@pytest.mark.parametrize(
    ("method", "settings", "teacher", "message"),
    [
        ("pgd-at", {"eps": 1.5}, False, r"eps must lie in \(0, 1\]"),
        ("fgsm-rs", {"eps": -0.1}, False, r"eps must lie in \(0, 1\]"),
        ("pgd-at", {"norm": "l1"}, False, "norm must be linf or l2"),
        ("robust-kd", {}, False, "needs a robust teacher"),
        ("pgd-at", {}, True, "trains without a teacher"),
    ],
)
def test_bad_input_is_one_line_error(fmnist, method, settings, teacher, message):
    from mendnet.artefact import Artefact

    art = Artefact(toy_model(), {}, {}, None) if teacher else None
    cfg = ROBUSTIFIERS[method].config(epochs=1, **settings)
    with pytest.raises(MendnetError, match=message):
        robustify_model(
            method, cfg, data=DataRef(), teacher=art, train_subset=32, sets=fmnist, progress=False
        )


def test_robust_kd_config_refuses_negative_weights():
    with pytest.raises(MendnetError, match="alpha and beta"):
        robust_kd.Config(beta=-1.0)


def test_robustify_and_steps_curve_commands(tmp_path, capsys):
    out = tmp_path / "fast"
    argv = ["robustify", "fgsm-rs", "--train-subset", "128", "--epochs", "1", "--eval-images", "24"]
    # AutoAttack off: one robust image costs its full standard run (Square's 5000 queries), over 10 s on a
    # CPU; tests/test_autoattack.py checks the report's AutoAttack column on a tiny model
    assert main([*argv, "--aa-images", "0", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    keys = {"acc", "fgsm", "pgd-linf-7", "pgd-linf-20", "pgd-l2-0.25", "pgd-l2-0.5", "cw-linf", "worst_case"}
    assert keys <= set(metrics) and metrics["train_seconds"] > 0 and metrics["eps_linf"] == EPS
    robust = [metrics[k] for k in keys - {"acc", "worst_case"}]
    assert metrics["worst_case"] <= min(robust) <= max(robust) <= metrics["acc"]
    assert "autoattack" not in metrics and "aa_gap_flag" not in metrics
    meta = json.loads((out / "model.json").read_text())
    assert meta["robustify"]["method"] == "fgsm-rs" and meta["robustify"]["train_images"] == 128

    curve_args = [
        "attack",
        str(out),
        "--images",
        "24",
        "--steps-curve",
        "0,1,3",
        "--quiet",
        "--device",
        "cpu",
    ]
    assert main(curve_args) == 0
    report = json.loads((out / "robustness.json").read_text())
    acc = report["steps_curve"]["accuracy"]
    assert acc["0"] >= acc["1"] >= acc["3"]
    assert (out / "steps_curve.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["attack", str(out), "--steps-curve", "1,x", "--force"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
