"""AI-Lancet weight importance as in the authors' release (docs/methods.md §4 steps 2–4): the companion's
features are a constant in ‖EI‖, and f_L is read at the output of the unit or block that holds the layer.
References are closed forms or plain autograd written here, never the functions under test."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mendnet.errors import MendnetError
from mendnet.models.resnet import BasicBlock
from mendnet.repair.lancet.features import ei_features, weight_importance
from mendnet.repair.lancet.layers import feature_site

ALPHA = 0.5


def hand_gain(grad_f: torch.Tensor) -> torch.Tensor:
    """G = |∂CE/∂f| / max, per sample (rows)."""
    g = grad_f.abs().flatten(1)
    return (g / g.amax(1, keepdim=True)).view_as(grad_f)


def test_linear_logits_layer_matches_closed_form_with_constant_companion():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4))
    a, a_comp = torch.randn(3, 5), torch.randn(3, 5)
    y = torch.tensor([0, 2, 3])
    w, b = net[0].weight.detach(), net[0].bias.detach()
    z, z_comp = a @ w.T + b, a_comp @ w.T + b  # f_L = the logits (the output layer: its own feature point)
    df = z - z_comp
    gain = hand_gain(z.softmax(1) - F.one_hot(y, 4))  # ∂CE/∂z = softmax − one-hot
    c = gain + ALPHA
    ei = df * c
    u = ei * c / ei.norm(dim=1, keepdim=True)  # ∂‖EI‖/∂f_L(x)
    expected = (u[:, :, None] * a[:, None, :]).abs()  # f_L(x') constant: u ⊗ a_err
    old_form = (u[:, :, None] * (a - a_comp)[:, None, :]).abs()  # both passes differentiated

    feats = ei_features(net, net[0], a, a_comp, y, alpha=ALPHA)
    assert feats.site.kind == "layer"
    torch.testing.assert_close(feats.df, df, atol=1e-5, rtol=0)
    torch.testing.assert_close(feats.gain, gain, atol=1e-5, rtol=0)
    torch.testing.assert_close(feats.ei, ei, atol=1e-5, rtol=0)
    scores = weight_importance(net[0], feats)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    assert ((scores - old_form).norm() / old_form.norm()) > 0.1  # the two forms really differ here
    # the old form stays available as a named option
    torch.testing.assert_close(
        weight_importance(net[0], feats, companion="differentiated"), old_form, atol=1e-5, rtol=0
    )


def test_hidden_linear_reads_features_after_its_relu():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    a, a_comp = torch.randn(4, 5), torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 1])
    w1, b1, w2, b2 = (p.detach() for p in (net[0].weight, net[0].bias, net[2].weight, net[2].bias))
    h = a @ w1.T + b1
    f, f_comp = h.clamp_min(0), (a_comp @ w1.T + b1).clamp_min(0)  # the unit Linear → ReLU
    z = f @ w2.T + b2
    gain = hand_gain((z.softmax(1) - F.one_hot(y, 3)) @ w2)  # ∂CE/∂f (the ReLU is before f)
    c = gain + ALPHA
    ei = (f - f_comp) * c
    u = ei * c / ei.norm(dim=1, keepdim=True)
    expected = ((u * (h > 0))[:, :, None] * a[:, None, :]).abs()  # back through the ReLU to W1

    feats = ei_features(net, net[0], a, a_comp, y, alpha=ALPHA)
    assert feats.site.name == "[0:2]" and feats.site.kind == "unit"
    torch.testing.assert_close(feats.df, f - f_comp, atol=1e-6, rtol=0)
    torch.testing.assert_close(feats.gain, gain, atol=1e-5, rtol=0)
    torch.testing.assert_close(weight_importance(net[0], feats), expected, atol=1e-5, rtol=0)
    # feature_point="layer": the raw linear output, as before
    raw = ei_features(net, net[0], a, a_comp, y, alpha=ALPHA, feature_point="layer")
    torch.testing.assert_close(raw.df, (a - a_comp) @ w1.T, atol=1e-6, rtol=0)


def test_conv_matches_unfolded_closed_form():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    head = nn.Linear(3 * 5 * 5, 4)
    net = nn.Sequential(conv, nn.Flatten(), head)  # feature point: conv → flatten
    x, x_comp = torch.rand(3, 2, 5, 5), torch.rand(3, 2, 5, 5)
    y = torch.tensor([0, 2, 3])
    w, b = conv.weight.detach(), conv.bias.detach()
    cols, cols_comp = F.unfold(x, 3, padding=1), F.unfold(x_comp, 3, padding=1)  # N × 18 × 25
    out = w.view(3, 18) @ cols + b[:, None]  # N × 3 × 25, the conv as a matrix product
    out_comp = w.view(3, 18) @ cols_comp + b[:, None]
    f, f_comp = out.flatten(1), out_comp.flatten(1)  # Flatten keeps channel-major order
    z = f @ head.weight.detach().T + head.bias.detach()
    gain = hand_gain((z.softmax(1) - F.one_hot(y, 4)) @ head.weight.detach())
    c = gain + ALPHA
    ei = (f - f_comp) * c
    u = (ei * c / ei.norm(dim=1, keepdim=True)).view(3, 3, 25)
    expected = (u @ cols.transpose(1, 2)).view(3, 3, 2, 3, 3).abs()  # Σ over positions of u ⊗ patch(x)

    feats = ei_features(net, conv, x, x_comp, y, alpha=ALPHA)
    assert feats.site.name == "[0:2]"
    torch.testing.assert_close(feats.df, f - f_comp, atol=1e-5, rtol=0)
    torch.testing.assert_close(weight_importance(conv, feats, chunk_size=2), expected, atol=1e-5, rtol=0)


def test_conv_inside_a_block_reads_the_block_output_after_relu_and_pool():
    torch.manual_seed(3)
    block = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2))
    head = nn.Linear(3 * 3 * 3, 4)
    net = nn.Sequential(block, nn.Flatten(), head)
    bn = block[1]
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(3) * 0.2)
        bn.running_var.copy_(torch.rand(3) + 0.5)
        bn.weight.copy_(torch.rand(3) + 0.5)
        bn.bias.copy_(torch.randn(3) * 0.1)
    net.train()  # ei_features must use eval mode inside and restore this
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    x, x_comp = torch.rand(3, 2, 6, 6), torch.rand(3, 2, 6, 6)
    y = torch.tensor([1, 0, 3])

    feats = ei_features(net, block[0], x, x_comp, y, alpha=ALPHA)
    scores = weight_importance(block[0], feats, chunk_size=2)
    assert net.training and block[1].training
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert feats.site.name == "0[0:4]"

    def block_fn(inp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """conv → BN (running statistics) → ReLU → max-pool, by hand."""
        out = F.conv2d(inp, w, block[0].bias.detach(), padding=1)
        out = F.batch_norm(out, stats[0], stats[1], bn.weight.detach(), bn.bias.detach(), False, 0.0, bn.eps)
        return F.max_pool2d(out.clamp_min(0), 2)

    w0 = block[0].weight.detach()
    f, f_comp = block_fn(x, w0), block_fn(x_comp, w0)
    torch.testing.assert_close(feats.df, f - f_comp, atol=1e-6, rtol=0)  # df = block(x) − block(x')
    for i in range(3):
        delta = (f[i : i + 1] - f_comp[i : i + 1]).requires_grad_()  # G: block output := f(x') + δ
        loss = F.cross_entropy(head(torch.flatten(f_comp[i : i + 1] + delta, 1)), y[i : i + 1])
        (g,) = torch.autograd.grad(loss, delta)
        c = g.abs() / g.abs().max() + ALPHA
        torch.testing.assert_close(feats.gain[i], (c - ALPHA)[0], atol=1e-6, rtol=0)
        w = w0.clone().requires_grad_()
        ei = (block_fn(x[i : i + 1], w) - f_comp[i : i + 1]) * c  # companion's output a constant
        (expected,) = torch.autograd.grad(ei.norm(), w)
        torch.testing.assert_close(scores[i], expected.abs(), atol=1e-5, rtol=1e-4)


class TinyResidual(nn.Module):
    """conv1 → ReLU → conv2, plus the input: a block whose forward cannot be split."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x))) + x


def test_layer_inside_a_residual_block_reads_the_block_output():
    torch.manual_seed(4)
    net = nn.Sequential(TinyResidual(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    res = net[0]
    x, x_comp = torch.rand(2, 2, 4, 4), torch.rand(2, 2, 4, 4)
    y = torch.tensor([2, 0])
    feats = ei_features(net, res.conv1, x, x_comp, y, alpha=ALPHA)
    scores = weight_importance(res.conv1, feats)
    assert (feats.site.name, feats.site.kind) == ("0", "block")
    with torch.no_grad():
        f, f_comp = res(x), res(x_comp)
    torch.testing.assert_close(feats.df, f - f_comp, atol=1e-6, rtol=0)
    c = feats.gain + ALPHA  # G itself is checked by hand in the tests above
    w0 = res.conv1.weight.detach()
    for i in range(2):  # the gradient flows from the block output back through conv2 to conv1
        w = w0.clone().requires_grad_()
        xi = x[i : i + 1]
        out = res.conv2(F.conv2d(xi, w, res.conv1.bias, padding=1).clamp_min(0)) + xi
        (expected,) = torch.autograd.grad(((out - f_comp[i : i + 1]) * c[i]).norm(), w)
        torch.testing.assert_close(scores[i], expected.abs(), atol=1e-5, rtol=1e-4)


def test_feature_sites_of_the_built_in_models():
    from mendnet.models import ModelSpec, build_classifier

    def sites(arch: str, shape: tuple[int, int, int], names: list[str]) -> list[str]:  # 8×8: fast
        model = build_classifier(ModelSpec(arch, 10, shape, (0.5,) * shape[0], (0.5,) * shape[0]))
        probe = torch.rand(1, *shape)
        return [feature_site(model, model.get_submodule(n), probe).name for n in names]

    assert sites("small-cnn", (1, 8, 8), ["net.stage1.0", "net.stage2.3", "net.head.1", "net.head.3"]) == [
        "net.stage1[0:3]",  # conv-BN-ReLU
        "net.stage2[3:7]",  # conv-BN-ReLU-pool
        "net.head[1:3]",  # linear-ReLU
        "net.head.3",  # the logits
    ]
    wrn = ["net.conv1", "net.block2.0.conv1", "net.block2.0.shortcut", "net.block3.1.conv2", "net.fc"]
    assert sites("wrn-16-1", (1, 8, 8), wrn) == [
        "net.conv1",
        "net.block2.0",
        "net.block2.0",
        "net.block3.1",
        "net.fc",
    ]
    net = nn.Sequential(BasicBlock(2, 4, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    probe = torch.rand(1, 2, 8, 8)
    assert feature_site(net, net[0].shortcut[0], probe).name == "0"  # the ResNet block, not the shortcut
    assert feature_site(net, net[0].conv1, probe, "layer").name == "0.conv1"


def test_bad_options_are_one_line_errors():
    net = nn.Sequential(nn.Linear(3, 2))
    x = torch.rand(2, 3)
    with pytest.raises(MendnetError, match="feature_point") as point:
        ei_features(net, net[0], x, x, torch.zeros(2, dtype=torch.long), feature_point="stage")  # type: ignore[arg-type]
    feats = ei_features(net, net[0], x, x + 1, torch.zeros(2, dtype=torch.long))
    with pytest.raises(MendnetError, match="companion") as companion:
        weight_importance(net[0], feats, companion="both")  # type: ignore[arg-type]
    for error in (point, companion):
        assert "\n" not in str(error.value)
