"""The pure loss functions of the robustness methods against hand-computed or explicit values."""

import pytest
import torch
from torch import nn

from mendnet.losses.attention_minmax import attention_l1, minmax_attention
from mendnet.losses.divergence import kl_per_sample, mart_loss, trades_kl
from mendnet.losses.feature_distill import cosine_distance, squared_l2
from mendnet.losses.jacobian import jacobian_matching, projected_jacobian, random_unit
from mendnet.losses.triplet import abs_cosine_distance, bml_loss, triplet_loss


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8, 5), nn.Tanh())


def explicit_jacobian(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """N×out×in Jacobian of each sample, by torch.autograd.functional.jacobian."""
    return torch.stack(
        [
            torch.autograd.functional.jacobian(lambda s: net(s.unsqueeze(0)).squeeze(0), xi).flatten(1)
            for xi in x
        ]
    )


def test_projection_equals_v_transposed_times_the_explicit_jacobian():
    net = tiny_net()
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64).requires_grad_(True)
    net.double()
    out = net(x)
    v = random_unit(out, torch.Generator().manual_seed(1))
    assert torch.allclose(v.norm(dim=1), torch.ones(3, dtype=torch.float64))
    vjp = projected_jacobian(out, x, v)
    jac = explicit_jacobian(net, x.detach())
    expected = torch.einsum("no,noi->ni", v, jac)
    assert vjp.shape == x.shape
    assert torch.allclose(vjp.flatten(1), expected, atol=1e-12)


def test_expected_squared_projection_is_the_frobenius_norm_over_d():
    net = tiny_net().double()
    x0 = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    n = 20_000
    x = x0.expand(n, -1, -1, -1).clone().requires_grad_(True)
    out = net(x)
    v = random_unit(out, torch.Generator().manual_seed(2))
    vjp = projected_jacobian(out, x, v)
    frob = explicit_jacobian(net, x0)[0].pow(2).sum()
    d = out.shape[1]
    estimate = d * vjp.flatten(1).pow(2).sum(dim=1).mean()
    assert estimate.item() == pytest.approx(frob.item(), rel=0.05)


def test_jacobian_matching_is_zero_for_equal_nets_and_trains_the_student_through_create_graph():
    student, teacher = tiny_net(), tiny_net()
    x = torch.rand(4, 1, 4, 4)
    xs, xt = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_s, out_t = student(xs), teacher(xt)
    v = random_unit(out_s, torch.Generator().manual_seed(0))
    j_s = projected_jacobian(out_s, xs, v, create_graph=True)
    j_t = projected_jacobian(out_t, xt, v).detach()
    assert jacobian_matching(j_s, j_t).item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        student[3].weight.mul_(1.5)
    out_s = student(xs)
    j_s = projected_jacobian(out_s, xs, v, create_graph=True)
    loss = jacobian_matching(j_s, j_t)
    assert loss.item() > 0
    loss.backward()
    assert student[0].weight.grad is not None and student[0].weight.grad.abs().sum() > 0


def test_cosine_term_is_zero_for_identical_features_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    f_s, f_t = torch.randn(6, 4, 3, 3, generator=g), torch.randn(6, 4, 3, 3, generator=g)
    assert cosine_distance(f_s, f_s).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_distance(7.3 * f_s, 0.2 * f_s).item() == pytest.approx(0.0, abs=1e-6)
    base = cosine_distance(f_s, f_t).item()
    assert base > 0.5
    assert cosine_distance(3.0 * f_s, 0.01 * f_t).item() == pytest.approx(base, rel=1e-5)
    assert cosine_distance(f_s, -f_s).item() == pytest.approx(2.0, abs=1e-6)
    assert squared_l2(f_s, f_s).item() == 0
    assert squared_l2(2 * f_s, f_s).item() == pytest.approx(f_s.pow(2).mean().item(), rel=1e-6)


def test_triplet_uses_one_minus_absolute_cosine():
    a = torch.tensor([[1.0, 0.0]])
    assert abs_cosine_distance(a, -a).item() == pytest.approx(0.0)
    assert abs_cosine_distance(a, torch.tensor([[0.0, 2.0]])).item() == pytest.approx(1.0)
    p = torch.tensor([[1.0, 1.0]])  # d(a, p) = 1 − 1/√2
    n = torch.tensor([[0.0, 1.0]])  # d(a, n) = 1
    expected = max(0.0, 0.5 + (1 - 2**-0.5) - 1.0)
    assert triplet_loss(a, p, n, margin=0.5).item() == pytest.approx(expected)
    assert triplet_loss(a, p, n, margin=0.03).item() == 0.0
    reg = 0.5 + 1.0 + 0.5  # mean(a²) + mean(p²) + mean(n²)
    assert bml_loss(a, p, n, 0.5, 0.1).item() == pytest.approx(expected + 0.1 * reg)


def test_bml_feature_term_sums_the_three_per_batch_mean_squares():
    # the release's λ₂·(mean(a²) + mean(p²) + mean(n²)), each mean over all N×D entries
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # squares 1, 0, 0, 4: mean 1.25
    p = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # 4, 0, 0, 1: mean 1.25; d(a, p) = 0
    n = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # 1, 0, 0, 9: mean 2.5; d(a, n) = 0
    # triplet: max(0, 0.03 + 0 − 0) = 0.03; feature term 0.001 · 5.0
    assert bml_loss(a, p, n, 0.03, 0.001).item() == pytest.approx(0.035, abs=1e-7)
    assert bml_loss(a, p, n, 0.0, 1.0).item() == pytest.approx(5.0)


def test_minmax_attention_spans_zero_to_one_and_l1_compares_maps():
    f = torch.rand(3, 5, 4, 4)
    a = minmax_attention(f)
    assert a.shape == (3, 16)
    assert torch.allclose(a.amin(dim=1), torch.zeros(3)) and torch.allclose(a.amax(dim=1), torch.ones(3))
    assert torch.allclose(minmax_attention(4 * f + 1), a, atol=1e-6)
    assert attention_l1(a, a).item() == 0
    flipped = minmax_attention(-f)
    assert attention_l1(a, flipped).item() == pytest.approx((a - flipped).abs().mean().item())


def test_kl_terms():
    g = torch.Generator().manual_seed(0)
    clean, adv = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert trades_kl(clean, clean).item() == pytest.approx(0.0, abs=1e-7)
    p, q = clean.softmax(1), adv.softmax(1)
    assert torch.allclose(kl_per_sample(clean, adv), (p * (p / q).log()).sum(1), atol=1e-6)
    y = torch.tensor([0, 1, 2, 3, 0])
    other = q.scatter(1, y[:, None], 0).amax(1)
    p_true = p.gather(1, y[:, None]).squeeze(1)
    expected = (-(1 - other).log() + 6 * (p * (p / q).log()).sum(1) * (1 - p_true)).mean()
    assert mart_loss(clean, adv, y, 6.0).item() == pytest.approx(expected.item(), rel=1e-5)
