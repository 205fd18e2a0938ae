"""Fine-pruning and Mode Connectivity Repair: their mechanics on toy models, and real behaviour on the
session's backdoored Fashion-MNIST WRN-16-1."""

import pytest
import torch
from torch import nn

from mendnet.artefact import load_artefact, save_artefact
from mendnet.errors import MendnetError
from mendnet.models import Classifier, FeatureTap, ModelSpec, build_classifier
from mendnet.repair import fineprune, mcr
from mendnet.repair.context import RepairContext
from mendnet.train import fit
from tests.test_train import toy_set

TOY_SPEC = ModelSpec("wrn-16-1", 2, (1, 8, 8), (0.4,), (0.3,))


def gelu_cnn(num_classes: int, in_channels: int) -> nn.Module:
    """Conv (with bias) → BN → GELU, twice, then pool and a linear layer. GELU'(0) = 0.5, so without the
    gradient mask fine-tuning would revive a pruned channel: the mask tests below can fail."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.GELU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def gelu_model() -> Classifier:
    torch.manual_seed(0)
    return build_classifier(ModelSpec("tests.test_fineprune_mcr:gelu_cnn", 2, (1, 8, 8), (0.4,), (0.3,)))


def context(n_train: int = 64, n_val: int = 32, **kw) -> RepairContext:
    return RepairContext(toy_set(n_train, seed=1), toy_set(n_val, seed=2), progress=False, **kw)


# --- fine-pruning -------------------------------------------------------------------------------------


def test_prune_site_is_the_last_convolution_and_its_bn_and_activation():
    wrn = build_classifier(TOY_SPEC)
    assert fineprune.find_prune_site(wrn) == fineprune.PruneSite(
        "net.block3.1.conv2", "net.bn", "net.relu", 64
    )
    cnn = build_classifier(ModelSpec("small-cnn", 2, (1, 8, 8), (0.4,), (0.3,)))
    assert fineprune.find_prune_site(cnn) == fineprune.PruneSite(
        "net.stage2.3", "net.stage2.4", "net.stage2.5", 64
    )


def test_budget_and_mean_activation():
    assert fineprune.prune_budget(0.9, 64) == 57
    assert fineprune.prune_budget(0.57, 100) == 57  # 0.57 * 100 is 56.99999999999999 in floats
    model = gelu_model()
    data = toy_set(20)
    mean = fineprune.mean_activation(model.train(), "net.5", data)  # measured in eval mode
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        direct = model.net[:6]((data.float_images() - 0.4) / 0.3).mean(dim=(0, 2, 3))
    torch.testing.assert_close(mean, direct)


@pytest.mark.parametrize("fraction, expected", [(0.0, 0), (0.25, 2), (0.5, 4)])
def test_pruning_stops_at_the_budget(fraction, expected):
    # max_relative_drop = 1: accuracy never stops the pruning, so only the budget can
    cfg = fineprune.Config(epochs=1, batch_size=16, max_relative_drop=1.0, max_prune_fraction=fraction)
    result = fineprune.run(gelu_model(), context(), cfg)
    assert result.info["budget"] == expected
    assert len(result.info["pruned"]) == expected


def pruned_outputs(
    model: Classifier, info: dict, train_mode: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The site's BN-activation output on random input: (pruned channels, the other channels)."""
    x = torch.rand(16, *model.spec.input_shape)
    model.train(train_mode)
    with torch.no_grad(), FeatureTap(model, [info["activation_read_at"]]) as feats:
        model(x)
    out = feats[info["activation_read_at"]]
    pruned = torch.tensor(info["pruned"])
    kept = torch.tensor([c for c in range(out.shape[1]) if c not in info["pruned"]])
    return out[:, pruned], out[:, kept]


def test_pruned_channels_output_zero_after_finetuning_and_after_reloading(tmp_path):
    cfg = fineprune.Config(epochs=2, batch_size=16, max_relative_drop=1.0, max_prune_fraction=0.5)
    model = gelu_model()
    result = fineprune.run(model, context(), cfg)
    info = result.info
    assert (info["layer"], info["norm"], info["activation_read_at"]) == ("net.3", "net.4", "net.5")
    assert len(info["pruned"]) == 4
    for train_mode in (False, True):
        pruned, kept = pruned_outputs(result.model, info, train_mode)
        assert torch.count_nonzero(pruned) == 0
        assert torch.count_nonzero(kept) > 0
    # the fine-tuning step really trained (the other channels moved), and the input model is untouched
    before, after = model.net[3].weight, result.model.net[3].weight
    kept_channels = [c for c in range(8) if c not in info["pruned"]]
    assert not torch.equal(before[kept_channels], after[kept_channels])
    assert torch.count_nonzero(model.net[3].weight[info["pruned"]]) > 0

    folder = save_artefact(tmp_path / "fp", result.model.cpu(), {}, {})
    reloaded = load_artefact(folder).model
    for train_mode in (False, True):
        pruned, _ = pruned_outputs(reloaded, info, train_mode)
        assert torch.count_nonzero(pruned) == 0


def test_fineprune_bad_input():
    spec = ModelSpec("mlp", 2, (1, 8, 8), (0.4,), (0.3,))
    mlp = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), spec, ())
    with pytest.raises(MendnetError, match="needs a convolutional layer"):
        fineprune.run(mlp, context(), fineprune.Config(epochs=1))
    with pytest.raises(MendnetError, match="at least 10 defender validation images, got 9"):
        fineprune.run(gelu_model(), context(n_val=9), fineprune.Config(epochs=1))
    with pytest.raises(MendnetError, match="max prune fraction"):
        fineprune.Config(max_prune_fraction=1.5)
    with pytest.raises(MendnetError, match="max relative drop"):
        fineprune.Config(max_relative_drop=-0.1)


# --- mode connectivity ----------------------------------------------------------------------------------


def test_bezier_formula():
    g = torch.Generator().manual_seed(0)
    w1, theta, w2 = (torch.randn(5, 3, generator=g) for _ in range(3))
    assert torch.equal(mcr.bezier(0.0, w1, theta, w2), w1)
    assert torch.equal(mcr.bezier(1.0, w1, theta, w2), w2)
    torch.testing.assert_close(mcr.bezier(0.5, w1, theta, w2), 0.25 * w1 + 0.5 * theta + 0.25 * w2)
    # a bend at the midpoint makes the curve the straight line
    mid = (w1 + w2) / 2
    for t in (0.1, 0.3, 0.8):
        torch.testing.assert_close(mcr.bezier(t, w1, mid, w2), (1 - t) * w1 + t * w2)


def two_models() -> tuple[Classifier, Classifier]:
    torch.manual_seed(0)
    return build_classifier(TOY_SPEC), build_classifier(TOY_SPEC)


def test_curve_endpoints_reproduce_the_models_and_their_outputs():
    w1, w2 = two_models()
    curve = mcr.BezierCurve(w1, w2, seed=0)
    with torch.no_grad():  # move the bend off the midpoint and spoil its BN statistics
        for p in curve.bend.parameters():
            p.add_(torch.randn_like(p))
        for name, b in curve.bend.named_buffers():
            if "running" in name:
                b.uniform_(0.5, 2.0)
    data = toy_set(40, seed=3)
    x = torch.rand(8, 1, 8, 8)
    for t, endpoint in ((0.0, w1), (1.0, w2)):
        point = curve.point(t)
        for name, param in point.named_parameters():
            assert torch.equal(param, dict(endpoint.named_parameters())[name]), name
        reference = build_classifier(TOY_SPEC)
        reference.load_state_dict(endpoint.state_dict())
        for net in (point, reference):
            mcr.recompute_batchnorm(net, data, batch_size=16)
        with torch.no_grad():
            assert torch.equal(point.eval()(x), reference.eval()(x))
    # an interior point is a different network
    assert not torch.equal(curve.point(0.5).net.fc.weight, w1.net.fc.weight)


def test_curve_training_moves_only_the_bend():
    w1, w2 = two_models()
    curve = mcr.BezierCurve(w1, w2, seed=0)
    bend0 = {k: v.clone() for k, v in curve.bend.named_parameters()}
    ends0 = {k: v.clone() for k, v in curve.state_dict().items() if not k.startswith("bend.")}
    cfg = mcr.Config(epochs=1, batch_size=16)
    fit(curve, toy_set(64), cfg.train_config(), params=list(curve.bend.parameters()), progress=False)
    assert all(torch.equal(v, curve.state_dict()[k]) for k, v in ends0.items())
    assert any(not torch.equal(v, dict(curve.bend.named_parameters())[k]) for k, v in bend0.items())


def test_choose_t():
    acc = {0.1: 0.80, 0.2: 0.845, 0.3: 0.86, 0.4: 0.87}
    assert mcr.choose_t(acc, 0.86, 0.01, "smallest") == (0.3, "within tolerance")
    assert mcr.choose_t(acc, 0.855, 0.01, "smallest") == (0.2, "within tolerance")
    assert mcr.choose_t(acc, 0.855, 0.01, "middle") == (0.4, "within tolerance")
    assert mcr.choose_t(acc, 0.95, 0.01) == (0.4, "most accurate")
    assert mcr.choose_t({0.1: 0.5, 0.2: 0.5}, 0.9, 0.01) == (0.1, "most accurate")
    # middle: nearest 0.5, ties to the fine-tuned side; the accuracy filter still applies
    flat = {t / 10: 0.9 for t in range(1, 10)}
    assert mcr.choose_t(flat, 0.9, 0.01) == (0.5, "within tolerance")
    assert mcr.choose_t({**flat, 0.5: 0.7}, 0.9, 0.01) == (0.6, "within tolerance")
    assert mcr.choose_t({**flat, 0.5: 0.7, 0.6: 0.7}, 0.9, 0.01) == (0.4, "within tolerance")


def test_mcr_run_on_toy_data_records_its_choice():
    w1, w2 = two_models()
    ctx = context(teacher=w2)
    cfg = mcr.Config(epochs=1, batch_size=16, t_grid=(0.25, 0.5, 0.75))
    result = mcr.run(w1, ctx, cfg)
    info = result.info
    assert info["endpoint"] == "given"
    assert set(info["val_acc"]) == {"0.25", "0.5", "0.75"}
    assert info["t"] in cfg.t_grid
    best = max(info["val_acc_endpoints"])
    within = [t for t in cfg.t_grid if info["val_acc"][f"{t:g}"] >= best - 0.01 - 1e-9]
    if info["rule"] == "within tolerance":
        assert info["t"] == min(within, key=lambda t: (abs(t - 0.5), -t))
    else:
        assert not within
    assert isinstance(result.model, Classifier)


def test_mcr_bad_input():
    w1, _ = two_models()
    other = build_classifier(ModelSpec("small-cnn", 2, (1, 8, 8), (0.4,), (0.3,)))
    with pytest.raises(MendnetError, match="two models of one architecture"):
        mcr.run(w1, context(teacher=other), mcr.Config(epochs=1))
    with pytest.raises(MendnetError, match="at least 10 defender validation images"):
        mcr.run(w1, context(n_val=5), mcr.Config(epochs=1))
    with pytest.raises(MendnetError, match="t grid"):
        mcr.Config(t_grid=(0.5, 1.5))


# --- real behaviour ---------------------------------------------------------------------------------------
# Shortened settings keep these two runs within about a minute on 2 CPU cores. Fine-pruning keeps its whole
# pruning rule (that is where its backdoor removal comes from: the dormant channels carry the trigger) and
# fine-tunes for 2 epochs instead of 10 (measured on this fixture: ASR 99.99% → 10.5%, ACC 85.8% → 82.4%,
# where 2 epochs of fine-tuning alone leave the ASR at 97%).


@pytest.fixture(scope="module")
def fp_outcome(backdoored, fmnist):
    from mendnet.jobs.repair import repair_model

    cfg = fineprune.Config(epochs=2)
    return repair_model(
        backdoored,
        "fineprune",
        cfg,
        clean_fraction=0.05,
        sets=fmnist,
        progress=False,
        before=backdoored.metrics,
    )


def test_fineprune_removes_backdoor_and_keeps_accuracy(backdoored, fp_outcome):
    before, after = backdoored.metrics, fp_outcome.metrics
    assert after["asr"] < 0.5 * before["asr"], (before, after)
    assert after["acc"] >= before["acc"] - 0.05, (before, after)
    info = fp_outcome.meta["repair"]["info"]
    assert (info["layer"], info["norm"], info["channels_total"]) == ("net.block3.1.conv2", "net.bn", 64)
    assert 0 < len(info["pruned"]) <= info["budget"] == 57
    assert info["val_acc_after_pruning"] >= 0.9 * info["val_acc_before_pruning"]
    pruned, kept = pruned_outputs(fp_outcome.model, info)
    assert torch.count_nonzero(pruned) == 0 and torch.count_nonzero(kept) > 0


# MCR: the endpoint w₂ is the session's `finetuned` model, which is the one MCR's default would train (FT's
# 10 epochs on the same defender data and seed); the bend runs 6 epochs at lr 0.1 instead of 100 at lr 0.01,
# so that in a tenth of the steps it moves about as far from the straight line as in the full run (an
# earlier measurement on this fixture: test-set ASR 8–15% at t = 0.5–0.8 here, 12–14% at t = 0.6–0.8 with
# the full defaults), while t is still chosen by the default rule (the qualifying t nearest the middle,
# after the accuracy filter, which can push it towards the ends).


@pytest.fixture(scope="module")
def mcr_outcome(backdoored, finetuned, fmnist):
    from mendnet.jobs.repair import repair_model

    cfg = mcr.Config(epochs=6, lr=0.1)
    return repair_model(
        backdoored,
        "mcr",
        cfg,
        clean_fraction=0.05,
        sets=fmnist,
        progress=False,
        before=backdoored.metrics,
        teacher=finetuned.model,
    )


def test_mcr_keeps_accuracy_along_the_curve_and_follows_its_rule(backdoored, mcr_outcome):
    before, after = backdoored.metrics, mcr_outcome.metrics
    assert after["acc"] >= before["acc"] - 0.05, (before, after)
    info = mcr_outcome.meta["repair"]["info"]
    assert info["endpoint"] == "given"
    best = max(info["val_acc_endpoints"])
    val_acc = {float(t): acc for t, acc in info["val_acc"].items()}
    assert len(val_acc) == 9 and min(val_acc.values()) >= best - 0.05, info  # a low-loss path
    within = [t for t in sorted(val_acc) if val_acc[t] >= best - 0.01 - 1e-9]
    if info["rule"] == "within tolerance":
        assert info["t"] == min(within, key=lambda t: (abs(t - 0.5), -t))
    else:
        assert not within


# With the default endpoint (FT's 10 epochs: 81.1% ACC, 19.6% ASR here) the default rule picked t = 0.6 and
# measured 84.8% ACC, 10.0% ASR on the 5,000 test images (before: 85.9 / 100). With a 2-epoch endpoint it
# had measured 99.6% ASR (then a strict xfail), and on the demo's 3-epoch setting MCR kept 80% ASR (a
# former section of docs/benchmarks.md, git history): what removes the backdoor is mostly the endpoint.
def test_mcr_removes_backdoor(backdoored, mcr_outcome):
    before, after = backdoored.metrics, mcr_outcome.metrics
    assert after["asr"] < 0.5 * before["asr"], (before, after)
