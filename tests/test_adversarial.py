"""Adversarial attacks and robust accuracy on a tiny MLP trained here on separable 1×8×8 data."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mendnet.data.imageset import ImageSet, to_uint8
from mendnet.errors import MendnetError
from mendnet.threats.adversarial import (
    ATTACKS,
    CWL2,
    FGSM,
    MIFGSM,
    PGD,
    PGDL2,
    Attack,
    CWLinf,
    PGDLinf,
    RobustResult,
    margin_loss,
    robust_accuracy,
)

K = 4
BOUNDED = [FGSM, PGDLinf, PGDL2, MIFGSM, CWLinf]


def toy_data(n: int, seed: int, classes: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k: a fixed random 0.3/0.7 pattern plus Gaussian noise (σ 0.1), clipped to [0, 1]."""
    protos = (torch.rand(classes, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5) * 0.4 + 0.3
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = (protos[y] + 0.1 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0.0, 1.0)
    return x, y


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return toy_data(n, seed)


def trained_mlp(n: int, classes: int = K) -> nn.Module:
    """A 64-32-classes MLP trained (Adam, 150 full-batch steps) on n toy images; eval mode, no grads."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, classes))
    x, y = toy_data(n, seed=1, classes=classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.zero_grad(set_to_none=True)
    return net.eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return trained_mlp(400)


@pytest.fixture(scope="module")
def batch(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _data(64, seed=2)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() == 1.0
    return x, y


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _dist(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


# ---- the threat model's bounds ------------------------------------------------------------------


@pytest.mark.parametrize("cls", BOUNDED)
@settings(max_examples=15, deadline=None)
@given(
    eps=st.floats(1e-3, 1.0),
    steps=st.integers(1, 3),
    targeted=st.booleans(),
    random_start=st.booleans(),
)
def test_bounded_attacks_stay_in_ball_and_box(cls, model, batch, eps, steps, targeted, random_start):
    x, y = batch
    kwargs = {"eps": eps, "targeted": targeted, "target_mode": "random"}
    if cls is not FGSM:
        kwargs["steps"] = steps
    if cls in (PGDLinf, PGDL2, CWLinf):
        kwargs["random_start"] = random_start
    x_adv = cls(**kwargs)(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (_dist(x_adv, x, cls.norm) <= eps + 1e-6).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@settings(max_examples=5, deadline=None)
@given(c=st.floats(1e-2, 100.0), kappa=st.floats(0.0, 2.0), targeted=st.booleans())
def test_cw_l2_stays_in_box(model, batch, c, kappa, targeted):
    x, y = batch
    x_adv = CWL2(c=c, kappa=kappa, steps=5, search_steps=2, targeted=targeted, target_mode="least-likely")(
        model, x, y
    )
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_project_is_the_ball_and_box():
    x = torch.tensor([[0.0, 0.5, 1.0, 0.5]])
    far = torch.tensor([[-1.0, 0.9, 2.0, 0.1]])
    assert torch.allclose(FGSM(eps=0.1).project(far, x), torch.tensor([[0.0, 0.6, 1.0, 0.4]]))
    inside = PGDL2(eps=0.1).project(x + torch.tensor([[0.0, 3.0, 0.0, 4.0]]), x)
    assert torch.allclose(inside, torch.tensor([[0.0, 0.56, 1.0, 0.58]]))
    assert torch.equal(CWL2().project(far, x), far.clamp(0, 1))


@pytest.mark.parametrize("cls", list(ATTACKS.values()))
def test_inputs_and_parameters_untouched(cls, model, batch):
    x, y = batch
    x0, y0 = x.clone(), y.clone()
    params = [p.detach().clone() for p in model.parameters()]
    cheap = {"steps": 3, "aa_targets": 1, "aa_square_queries": 10}  # AutoAttack: every component, small
    attack = cls(**{k: v for k, v in cheap.items() if k in cls.__dataclass_fields__})
    attack(model, x, y)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))
    assert all(p.grad is None for p in model.parameters())


def test_train_eval_modes_restored(model):
    net = nn.Sequential(model, nn.Dropout(0.5), nn.Sequential(nn.Identity()))
    net.train()
    net[0].eval()
    before = [m.training for m in net.modules()]
    seen = []
    net[2].register_forward_hook(lambda m, i, o: seen.append(m.training))
    x, y = _data(8, seed=3)
    PGDLinf(steps=2)(net, x, y)
    assert [m.training for m in net.modules()] == before
    assert seen and not any(seen)


def test_modes_restored_after_an_error():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    net = nn.Sequential(nn.Flatten(), Broken()).train()
    with pytest.raises(RuntimeError, match="boom"):
        FGSM()(net, torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))
    assert all(m.training for m in net.modules())


# ---- strength ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attack",
    [
        PGDLinf(eps=0.3, steps=20, targeted=True),
        PGDL2(eps=3.0, steps=20, targeted=True),
        MIFGSM(eps=0.3, steps=20, targeted=True),
        CWLinf(eps=0.3, steps=20, targeted=True),
        CWL2(steps=50, targeted=True),
    ],
    ids=lambda a: a.slug,
)
def test_targeted_attacks_reach_given_target(attack, model, batch):
    x, y = batch
    target = (y + 1) % K
    x_adv = attack(model, x, y, target)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == target).float().mean() >= 0.9


@pytest.mark.parametrize("mode", ["random", "least-likely"])
def test_target_modes(mode, model, batch):
    x, y = batch
    attack = PGDLinf(eps=0.3, steps=20, targeted=True, target_mode=mode, seed=3)
    with torch.no_grad():
        clean = model(x)
    goal = attack._goal(clean, y, None)
    assert (goal != y).all() and ((goal >= 0) & (goal < K)).all()
    if mode == "least-likely":
        assert torch.equal(goal, clean.argmin(1))
    else:
        assert len(goal.unique()) > 1 and torch.equal(goal, attack._goal(clean, y, None))
    with torch.no_grad():
        assert (model(attack(model, x, y)).argmax(1) == goal).float().mean() >= 0.9


def test_pgd_not_weaker_than_fgsm(model, batch):
    x, y = batch
    accs = []
    for eps in (0.05, 0.1, 0.15, 0.2):
        fgsm, pgd = (
            _acc(model, FGSM(eps=eps)(model, x, y), y),
            _acc(model, PGD(eps=eps, steps=20)(model, x, y), y),
        )
        assert pgd <= fgsm
        accs.append(pgd)
    assert accs[-1] < accs[0]  # a budget that matters


def test_restarts_only_help(model, batch):
    x, y = batch
    one = _acc(model, PGDLinf(eps=0.15, steps=5)(model, x, y), y)
    three = _acc(model, PGDLinf(eps=0.15, steps=5, restarts=3)(model, x, y), y)
    assert three <= one < 1.0


def test_cw_l2_needs_less_than_pgd_l2(model, batch):
    x, y = batch
    pgd = PGDL2(eps=2.0, steps=20)(model, x, y)
    cw = CWL2(steps=100)(model, x, y)
    with torch.no_grad():
        pgd_ok, cw_ok = model(pgd).argmax(1) != y, model(cw).argmax(1) != y
    assert cw_ok.float().mean() >= pgd_ok.float().mean() >= 0.9
    both = pgd_ok & cw_ok
    assert _dist(cw, x, "l2")[both].mean() < _dist(pgd, x, "l2")[both].mean()


def test_cw_l2_leaves_unbroken_samples_unchanged(model, batch):
    x, y = batch
    x_adv = CWL2(steps=2, search_steps=1, c=1e-3)(model, x, y)
    with torch.no_grad():
        kept = model(x_adv).argmax(1) == y
    assert kept.any()
    assert torch.equal(x_adv[kept], x[kept])


def test_misclassified_samples_returned_unchanged(model, batch):
    x, y = batch
    wrong = (y + 1) % K
    for cls in ATTACKS.values():
        assert torch.equal(cls()(model, x[:8], wrong[:8]), x[:8])


def test_broken_points_are_not_attacked_again(model, batch):
    x, y = batch
    rows = []
    hook = model.register_forward_hook(lambda m, i, o: rows.append(len(o)))
    try:
        PGDLinf(eps=0.15, steps=3, restarts=3)(model, x, y)
    finally:
        hook.remove()
    assert rows[:5] == [len(x)] * 5  # the clean pass, then restart 1: 3 steps and a final check
    later = rows[5:]
    assert later and max(later) < len(x) and len(later) <= 8  # restarts 2, 3: unbroken points only


def test_first_breaking_point_is_kept(model, batch):
    """More steps wander on, but a sample broken by step 1 keeps its step-1 point."""
    x, y = batch
    short = PGDLinf(eps=0.15, alpha=0.15, steps=1, random_start=False)(model, x, y)
    long = PGDLinf(eps=0.15, alpha=0.15, steps=15, random_start=False)(model, x, y)
    with torch.no_grad():
        broken_early = model(short).argmax(1) != y
    assert broken_early.any()
    assert torch.equal(long[broken_early], short[broken_early])


# ---- the margin loss ---------------------------------------------------------------------------


def test_margin_loss_with_all_other_logits_negative():
    logits = torch.tensor([[-1.0, -2.0, -3.0], [-5.0, -0.5, -4.0], [2.0, -1.0, -0.25]])
    y = torch.tensor([0, 1, 0])
    assert torch.allclose(margin_loss(logits, y), torch.tensor([-1.0, -3.5, -2.25]))
    assert torch.allclose(margin_loss(logits, torch.tensor([2, 2, 1])), torch.tensor([2.0, 3.5, 3.0]))


def test_margin_loss_gradient_ignores_true_class_mask():
    logits = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    margin_loss(logits, torch.tensor([1])).sum().backward()
    assert torch.equal(logits.grad, torch.tensor([[1.0, -1.0, 0.0]]))


# ---- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attack", [FGSM(eps=0.1), PGDLinf(eps=0.1, steps=5, random_start=False)], ids=["fgsm", "pgd"]
)
def test_batch_size_does_not_change_deterministic_attacks(attack, model, batch):
    x, y = batch
    whole = attack(model, x, y)
    pieces = torch.cat([attack(model, x[i : i + 7], y[i : i + 7]) for i in range(0, len(x), 7)])
    assert torch.allclose(whole, pieces, atol=1e-6)


def test_same_seed_same_result(model, batch):
    x, y = batch
    a, b = PGDL2(eps=1.0, seed=5), PGDL2(eps=1.0, seed=5)
    assert torch.equal(a(model, x, y), b(model, x, y))


# ---- errors and warnings -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.5, -0.25])
def test_images_outside_unit_range_raise(bad, model, batch):
    x, y = batch
    x = x.clone()
    x[0, 0, 0, 0] = bad
    with pytest.raises(MendnetError, match=r"\[0, 1\].*" + str(bad).replace(".", r"\.")) as err:
        FGSM()(model, x, y)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FGSM(eps=0.0),
        lambda: FGSM(eps=-0.1),
        lambda: PGDLinf(eps=float("nan")),
        lambda: PGDL2(eps=float("inf")),
        lambda: PGDLinf(steps=0),
        lambda: PGDL2(alpha=-1.0),
        lambda: PGDLinf(restarts=0),
        lambda: MIFGSM(steps=0),
        lambda: MIFGSM(mu=-1.0),
        lambda: CWL2(steps=0),
        lambda: CWL2(search_steps=0),
        lambda: CWL2(c=0.0),
        lambda: CWL2(kappa=-1.0),
        lambda: CWLinf(eps=0.0),
        lambda: FGSM(targeted=True, target_mode="nearest"),
    ],
)
def test_invalid_settings_raise(make):
    with pytest.raises(MendnetError) as err:
        make()
    assert "\n" not in str(err.value)


def test_bad_targets_raise(model, batch):
    x, y = batch
    with pytest.raises(MendnetError, match="needs target labels"):
        FGSM(targeted=True)(model, x, y)
    with pytest.raises(MendnetError, match="untargeted"):
        FGSM()(model, x, y, (y + 1) % K)
    with pytest.raises(MendnetError, match="equal the true label"):
        FGSM(targeted=True)(model, x, y, y)


def test_probability_outputs_warn(model, batch):
    x, y = batch
    with pytest.warns(UserWarning, match="probabilities"):
        FGSM()(nn.Sequential(model, nn.Softmax(dim=1)), x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FGSM()(model, x, y)


def test_registry_and_names():
    assert list(ATTACKS) == [
        "fgsm",
        "pgd-linf",
        "pgd-l2",
        "mi-fgsm",
        "cw-l2",
        "cw-linf",
        "autoattack",
        "autoattack-l2",
    ]
    assert all(issubclass(cls, Attack) and cls.slug == key for key, cls in ATTACKS.items())
    assert PGD is PGDLinf
    assert PGDLinf(eps=8 / 255, steps=20).name == "pgd-linf(eps=0.0314,steps=20)"
    assert CWL2().eps is None and CWL2.norm == "l2"


# ---- robust accuracy ---------------------------------------------------------------------------


def _identity_model() -> nn.Module:
    """logits = the two pixels: class 0 iff x₀ > x₁."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(2))
    return net


def test_robust_accuracy_hand_checked():
    # Label 0 with margins x₀ − x₁ = 0.05, 0.15, 0.3, 0.5 and one misclassified (−0.1).
    # FGSM at ε moves both pixels by ε: breaks margins < 2ε. PGD-L∞ likewise (linear model).
    pixels = torch.tensor([[0.5, 0.45], [0.5, 0.35], [0.6, 0.3], [0.75, 0.25], [0.4, 0.5]])
    x, y = pixels.view(5, 1, 1, 2), torch.zeros(5, dtype=torch.long)
    attacks = [PGDLinf(eps=0.2, steps=5, random_start=False), FGSM(eps=0.1)]
    res = robust_accuracy(_identity_model(), x, y, attacks=attacks, batch_size=2, progress=False)
    assert isinstance(res, RobustResult) and res.n == 5
    assert res.clean_acc == pytest.approx(4 / 5)
    pgd_name, fgsm_name = (a.name for a in attacks)
    assert res.per_attack == {pgd_name: pytest.approx(1 / 5), fgsm_name: pytest.approx(2 / 5)}
    assert res.worst_case == pytest.approx(1 / 5)


def test_robust_accuracy_worst_case_and_imageset(model):
    x, y = _data(48, seed=4)
    x = to_uint8(x)
    images = ImageSet(x, y, classes=tuple("abcd"), mean=(0.5,), std=(0.25,))
    attacks = {"fgsm": FGSM(eps=0.15), "mi": MIFGSM(eps=0.15), "l2": PGDL2(eps=0.9)}
    res = robust_accuracy(model, images, attacks=attacks, batch_size=20, progress=False)
    assert 0.0 <= res.worst_case <= min(res.per_attack.values()) <= res.clean_acc <= 1.0
    assert res.worst_case < min(res.per_attack.values())  # the attacks break different points
    again = robust_accuracy(model, x.float() / 255, y, attacks=attacks, batch_size=48, progress=False)
    assert again.clean_acc == res.clean_acc
    assert again.per_attack["fgsm"] == res.per_attack["fgsm"]


def test_robust_accuracy_input_errors(model):
    x, y = _data(4, seed=5)
    with pytest.raises(MendnetError, match=r"\[0, 1\]"):
        robust_accuracy(model, x * 2, y, attacks=[FGSM()], progress=False)
    with pytest.raises(MendnetError, match="labels"):
        robust_accuracy(model, x, attacks=[FGSM()], progress=False)
    with pytest.raises(MendnetError, match="share a name"):
        robust_accuracy(model, x, y, attacks=[FGSM(), FGSM()], progress=False)
