"""AutoAttack through the authors' package (pyautoattack), on a tiny MLP trained here on separable 1×8×8 data
with 10 classes (the standard version's 9 target classes), and on a nearest-centroid Fashion-MNIST artefact
for the command (docs/methods.md §5)."""

from __future__ import annotations

import json

import pyautoattack
import pytest
import torch
from torch import nn

from mendnet.cli import main
from mendnet.data.imageset import ImageSet, to_uint8
from mendnet.errors import MendnetError
from mendnet.threats.adversarial import (
    AutoAttack,
    AutoAttackL2,
    PGDLinf,
    make_attack,
    robust_accuracy,
)
from mendnet.threats.adversarial.autoattack import package_run, summary_lines
from tests.test_adversarial import toy_data, trained_mlp

pytestmark = pytest.mark.usefixtures("one_thread")

K = 10


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return toy_data(n, seed, classes=K)


class Scaled(nn.Module):
    """Gradient masking: the logits times a huge factor, so the softmax saturates and the cross-entropy
    gradient is exactly zero at every confidently classified point; the decisions do not change."""

    def __init__(self, net: nn.Module, factor: float = 1e4) -> None:
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.factor


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    return trained_mlp(600, classes=K)


@pytest.fixture(scope="module")
def points(mlp) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _data(32, seed=2)
    with torch.no_grad():
        assert (mlp(x).argmax(1) == y).all()
    return x, y


def _package_run(model, x, y, eps, norm="Linf", seed=0, attacks=None, batch_size=250):
    """The reference: the authors' package called here directly, not through mendnet."""
    aa = pyautoattack.AutoAttack(model, eps=eps, norm=norm, version="standard", seed=seed, device="cpu")
    if attacks is not None:  # the package's own way to run a subset (run_standard_evaluation_individual)
        aa.attacks_to_run = attacks
    x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return x_adv, (y_adv == y).float().mean().item()


# ---- equal to the package called directly ------------------------------------------------------------


def test_linf_standard_equals_the_package_called_directly(mlp, points, monkeypatch):
    x, y = points
    eps = 0.15  # most points fall to APGD-CE, some to APGD-T, a few are left to FAB-T and Square
    runs = []  # the run robust_accuracy makes, kept to compare its points (a second run costs seconds)
    original = AutoAttack.run

    def recorded(self, *args, **kwargs):
        runs.append(original(self, *args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(AutoAttack, "run", recorded)
    attack = AutoAttack(eps=eps, seed=0)
    result = robust_accuracy(mlp, x, y, attacks={"aa": attack}, batch_size=250, progress=False)
    (run,) = runs
    assert all(p.grad is None for p in mlp.parameters())  # FAB's backward did not reach the weights
    assert all(p.requires_grad for p in mlp.parameters()) and not mlp.training
    direct_adv, direct_acc = _package_run(mlp, x, y, eps)
    mlp.zero_grad(set_to_none=True)  # the package's own run fills them
    assert result.per_attack["aa"] == direct_acc
    assert 0.0 < direct_acc < 0.5  # a mixed case, not all-or-nothing
    assert torch.equal(run.x_adv, direct_adv)  # the very same adversarial points
    assert run.robust.float().mean().item() == direct_acc
    assert (run.x_adv - x).abs().amax() <= eps + 1e-6 and run.x_adv.min() >= 0 and run.x_adv.max() <= 1
    with torch.no_grad():
        broken = mlp(run.x_adv).argmax(1) != y
    assert torch.equal(broken, ~run.robust)
    counts = run.counts
    assert list(counts) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert sum(counts.values()) == int(broken.sum()) and counts["apgd-ce"] > 0
    summary = result.details["aa"]
    assert summary["broken_by"] == counts and summary["version"] == "standard" and summary["seconds"] > 0
    assert summary["eps"] == eps and summary["targets"] == 9 and summary["square_queries"] == 5000


def test_l2_components_equal_the_package_and_stay_in_the_ball(mlp, points):
    x, y = points
    eps, comps = 0.8, ["apgd-ce", "apgd-t"]
    run = AutoAttackL2(eps=eps, seed=1, aa_attacks=",".join(comps)).run(mlp, x, y, batch_size=16)
    direct_adv, direct_acc = _package_run(mlp, x, y, eps, "L2", seed=1, attacks=comps, batch_size=16)
    mlp.zero_grad(set_to_none=True)
    wrapped = package_run(mlp, x, y, eps=eps, norm="l2", seed=1, attacks=comps, batch_size=16)
    assert torch.equal(wrapped.x_adv, direct_adv) and wrapped.accuracy == pytest.approx(direct_acc)
    assert run.robust.float().mean().item() == direct_acc and 0 < direct_acc < 1
    assert torch.equal(run.x_adv, direct_adv)
    assert (run.x_adv - x).flatten(1).norm(dim=1).max() <= eps + 1e-5
    assert run.x_adv.min() >= 0 and run.x_adv.max() <= 1 and run.components == tuple(comps)


def test_worst_case_with_other_attacks_is_per_sample(mlp, points):
    x, y = points
    attacks = {"pgd": PGDLinf(eps=0.15, steps=10), "aa": AutoAttack(eps=0.15, aa_attacks="apgd-ce")}
    res = robust_accuracy(mlp, x, y, attacks=attacks, batch_size=20, progress=False)
    both = res.masks["pgd"] & res.masks["aa"]
    assert res.worst_case == both.float().mean().item() <= min(res.per_attack.values())
    assert res.per_attack["aa"] == res.masks["aa"].float().mean().item()
    cascade = robust_accuracy(mlp, x, y, attacks=attacks, batch_size=20, progress=False, cascade=True)
    assert cascade.worst_case == res.worst_case and list(cascade.per_attack) == ["pgd", "aa"]


def test_nothing_to_attack(mlp, points):
    x, y = points
    wrong = (y + 1) % K
    run = AutoAttack(eps=0.1).run(mlp, x, wrong)
    assert not run.clean.any() and not run.robust.any() and torch.equal(run.x_adv, x)
    assert run.counts == {"apgd-ce": 0, "apgd-t": 0, "fab-t": 0, "square": 0}
    res = robust_accuracy(mlp, x, wrong, attacks={"aa": AutoAttack(eps=0.1)}, progress=False)
    assert res.per_attack["aa"] == 0 and res.details["aa"]["images"] == 0
    assert summary_lines("aa", res.details["aa"])[0].startswith("aa: standard (apgd-ce, apgd-t, fab-t")


# ---- gradient masking ----------------------------------------------------------------------------------


def test_a_gradient_masked_model_fools_pgd_not_autoattack(mlp, points, capsys):
    x, y = points
    masked = Scaled(mlp).eval()
    eps = 0.2  # the unmasked model has no robust point left here
    attacks = {"pgd": PGDLinf(eps=eps, steps=20), "aa": AutoAttack(eps=eps, seed=0)}
    res = robust_accuracy(masked, x, y, attacks=attacks, progress=False)
    assert res.clean_acc == 1.0
    assert res.per_attack["pgd"] >= 0.9  # PGD cannot move: zero gradients
    assert res.per_attack["aa"] <= 0.1  # APGD-T's DLR loss does not care about the scale
    summary = res.details["aa"]
    assert summary["broken_by"]["apgd-ce"] == 0 and summary["broken_by"]["apgd-t"] >= 29
    for line in summary_lines("aa", summary):
        print(line)
    out = capsys.readouterr().out
    masking = [line for line in out.splitlines() if line.startswith("warning: autoattack: possible gradient")]
    assert len(masking) == 2, out  # zero CE gradients; later components breaking what APGD-CE left
    assert "zero cross-entropy gradient" in masking[0] and "survived APGD-CE" in masking[1]


def test_a_gap_of_exactly_two_points_is_not_flagged():
    from mendnet.threats.adversarial.autoattack import gap_flagged

    assert 0.77 - 0.75 > 0.02  # float noise: 4 of 200 images, computed as a difference of two means
    assert not gap_flagged(0.77 - 0.75) and not gap_flagged(154 / 200 - 150 / 200)
    # accuracies as robust_metrics computes them, means of float32 masks: 120 and 116 of 200 images give
    # 0.020000040531158447; the robust table's seed-0 FGSM-RS row (149 and 145 of 200) recorded
    # 0.020000004768371604 and was flagged before the rounding to 6 decimals
    pgd = float(torch.tensor([True] * 120 + [False] * 80).float().mean())
    aa = float(torch.tensor([True] * 116 + [False] * 84).float().mean())
    assert pgd - aa > 0.02 and not gap_flagged(pgd - aa) and not gap_flagged(0.020000004768371604)
    assert gap_flagged(155 / 200 - 150 / 200) and gap_flagged(0.0201) and gap_flagged(0.020005)


def test_the_package_check_flags_more_than_one_image_of_200_not_float_noise():
    from mendnet.threats.adversarial.autoattack import PACKAGE_DIFF_FLAG, exceeds

    def mean(hits: int) -> float:  # an accuracy over 200 images as a float32 mean
        return float(torch.tensor([True] * hits + [False] * (200 - hits)).float().mean())

    one_image = mean(107) - mean(106)  # 0.005000054836273193
    assert one_image > PACKAGE_DIFF_FLAG and not exceeds(one_image, PACKAGE_DIFF_FLAG)
    assert exceeds(mean(108) - mean(106), PACKAGE_DIFF_FLAG)


def test_report_metrics_flag_the_pgd_autoattack_gap(mlp):
    from mendnet.robust.evaluation import report_rows, robust_metrics

    x, y = _data(24, seed=3)
    images = ImageSet(to_uint8(x), y, classes=tuple("abcdefghij"), mean=(0.5,), std=(0.25,))
    masked = robust_metrics(Scaled(mlp).eval(), images, eps=0.2, aa_images=16, progress=False)
    assert masked["aa"]["images"] == 16 and masked["aa"]["version"] == "standard"
    assert masked["pgd-linf-20"] >= 0.9 and masked["autoattack"] <= 0.1
    assert masked["aa_gap_flag"] and masked["aa"]["pgd_gap"] > 0.8
    assert masked["worst_case"] <= masked["pgd-linf-20"] - 0.5  # AutoAttack enters the worst case
    rows, lines = report_rows(masked)
    assert "autoattack (standard, 16 images)" in rows and "worst case (autoattack on 16 of 24)" in rows
    assert any("likely gradient masking" in line for line in lines)
    plain = robust_metrics(mlp, images, eps=0.05, aa_images=8, progress=False)
    assert not plain["aa_gap_flag"] and plain["aa"]["pgd_gap"] <= 0.02
    off = robust_metrics(mlp, images, eps=0.05, aa_images=0, progress=False)
    assert "autoattack" not in off and "aa" not in off
    assert {k: off[k] for k in ("acc", "pgd-linf-20", "cw-linf")} == {
        k: plain[k] for k in ("acc", "pgd-linf-20", "cw-linf")
    }


# ---- the command -----------------------------------------------------------------------------------------

CENTROIDS = """
from torch import nn


class Centroids(nn.Module):
    def __init__(self, num_classes, in_channels, input_size, scale):
        super().__init__()
        self.linear = nn.Linear(in_channels * input_size[0] * input_size[1], num_classes)
        self.scale = scale

    def forward(self, x):
        return self.linear(x.flatten(1)) * self.scale


def make(num_classes, in_channels, input_size, scale=1.0):
    return Centroids(num_classes, in_channels, input_size, scale)
"""


@pytest.fixture(scope="module")
def masked_artefact(tmp_path_factory):
    """A nearest-centroid Fashion-MNIST classifier (centroids of test images 1000–2999; the command
    attacks the first ones) whose logits are scaled by 1e4: gradient-masked."""
    from mendnet.artefact import save_artefact
    from mendnet.data.catalog import load_dataset
    from mendnet.models import ModelSpec, build_classifier

    root = tmp_path_factory.mktemp("aa")
    (root / "centroids.py").write_text(CENTROIDS)
    test = load_dataset("fashion-mnist", "test", None)
    x, y = test.float_images(torch.arange(1000, 3000)).flatten(1), test.labels[1000:3000]
    mu = torch.stack([x[y == k].mean(0) for k in range(10)])
    arch_args = {"scale": 1e4, "stages": []}
    spec = ModelSpec(f"{root / 'centroids.py'}:make", 10, (1, 28, 28), (0.0,), (1.0,), arch_args)
    model = build_classifier(spec)
    with torch.no_grad():
        model.net.linear.weight.copy_(mu)
        model.net.linear.bias.copy_(-(mu**2).sum(1) / 2)
    meta = {"data": {"name": "fashion-mnist", "data_dir": None}, "threat": None}
    return save_artefact(root / "masked", model, meta, {})


def test_attack_command_writes_component_counts_and_warns(masked_artefact, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["attack", masked_artefact, "--attack", "pgd-linf", "--attack", "autoattack", "--eps", "0.2"]
    argv += ["--aa-attacks", "apgd-ce,apgd-t", "--aa-targets", "3", "--steps", "10", "--images", "24"]
    assert main([str(a) for a in [*argv, "--out", out, "--quiet", "--device", "cpu"]]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    name = "autoattack(eps=0.2,aa_attacks=apgd-ce,apgd-t,aa_targets=3)"
    aa = report["autoattack"][name]
    assert aa["broken_by"]["apgd-ce"] == 0 and aa["broken_by"]["apgd-t"] > 0
    assert list(aa["broken_by"]) == ["apgd-ce", "apgd-t"] and aa["targets"] == 3
    correct = round(report["clean_acc"] * report["n"])
    assert aa["clean"] == correct and sum(aa["broken_by"].values()) == aa["clean"] - aa["robust"]
    assert report["robust_acc"][name] == aa["robust"] / report["n"] >= report["worst_case"]
    assert aa["seconds"] > 0 and report["seconds"] >= aa["seconds"] and aa["version"] == "standard"
    assert report["pgd_autoattack_gap"][0]["flag"]
    assert f"{name}: standard (apgd-ce, apgd-t;" in printed
    assert "warning: autoattack: possible gradient masking" in printed
    assert "likely gradient masking; trust AutoAttack's number" in printed


# ---- bad settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"eps": 0}, "eps must be a finite number > 0"),
        ({"eps": -0.1}, "eps must be a finite number > 0"),
        ({"aa_attacks": "apgd-ce,pgd"}, "unknown AutoAttack component 'pgd'; known: apgd-ce"),
        ({"aa_attacks": "apgd-ce,apgd-ce"}, "names a component twice"),
        ({"aa_attacks": " , "}, "names no component"),
        ({"aa_version": "fast"}, "unknown AutoAttack version 'fast'; known: standard, plus, rand"),
        ({"aa_targets": 0}, "aa_targets must be an integer ≥ 1"),
        ({"aa_square_queries": 0}, "aa_square_queries must be an integer ≥ 1"),
        ({"targeted": True}, "autoattack is untargeted"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(MendnetError, match=message.replace("(", r"\(")) as info:
        make_attack("autoattack", (1, 8, 8), **settings)
    assert "\n" not in str(info.value)


def test_too_few_classes_for_apgd_t(points):
    x, y = points
    three = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(MendnetError, match="apgd-t needs ≥ 4 classes"):
        AutoAttack(eps=0.1).run(three, x[:4], y[:4] % 3)


def test_bad_setting_on_the_command_line(masked_artefact, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(
        ["attack", str(masked_artefact), "--attack", "autoattack", "--aa-version", "fast", "--out", str(out)]
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "unknown AutoAttack version 'fast'" in lines[0]
    assert not out.exists()
