"""Feature Shift Tuning (repair/fst.py): the penalty, the head's re-initialisation and norm constraint by
hand, and on real data that it lowers the ASR of the genuinely backdoored fixture model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.models import ModelSpec, build_classifier
from mendnet.repair import fst
from mendnet.repair.context import RepairContext
from mendnet.train import TrainConfig, fit


def test_shift_penalty_is_alpha_times_the_inner_product():
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    w_ori = torch.tensor([[2.0, 1.0], [-4.0, 1.0]])
    # 1·2 + (−2)·1 + 0.5·(−4) + 3·1 = 1
    assert fst.shift_penalty(w, w_ori, 0.3).item() == pytest.approx(0.3)


def test_head_is_the_last_linear_with_one_output_per_class():
    wrn = build_classifier(ModelSpec("wrn-16-1", 10, (1, 28, 28), (0.5,), (0.5,)))
    cnn = build_classifier(ModelSpec("small-cnn", 10, (1, 28, 28), (0.5,), (0.5,)))
    assert fst.head_name(wrn) == "net.fc"
    assert isinstance(cnn.get_submodule(fst.head_name(cnn)), nn.Linear)
    assert cnn.get_submodule(fst.head_name(cnn)).out_features == 10


def test_reinitialisation_is_seeded_and_within_the_release_bound():
    head_a, head_b = nn.Linear(16, 3), nn.Linear(16, 3)
    fst.reinitialise(head_a, torch.Generator().manual_seed(4))
    fst.reinitialise(head_b, torch.Generator().manual_seed(4))
    assert torch.equal(head_a.weight, head_b.weight) and torch.equal(head_a.bias, head_b.bias)
    bound = 1 / math.sqrt(16)
    assert head_a.weight.abs().max() <= bound and head_a.bias.abs().max() <= bound


def test_training_keeps_the_head_norm_and_moves_away_from_the_original(tmp_path):
    """A few steps of `fit` with the penalty and the projection: ‖w‖ stays ‖w_ori‖ after every step and
    ⟨w, w_ori⟩ ends lower than with plain CE from the same start."""
    from mendnet.data.imageset import ImageSet

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 4, 4), dtype=torch.uint8, generator=gen)
    data = ImageSet(images, torch.randint(0, 3, (64,), generator=gen), ("a", "b", "c"), (0.5,), (0.5,))
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.1, weight_decay=0.0, schedule="constant")

    def run(alpha: float) -> tuple[nn.Linear, torch.Tensor, list[float]]:
        torch.manual_seed(1)
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
        head = net[3]
        original = head.weight.detach().clone()
        fst.reinitialise(head, torch.Generator().manual_seed(2))
        norms: list[float] = []
        project = fst.norm_projection(head, float(original.norm()))

        def after_step(model: nn.Module) -> None:
            project(model)
            norms.append(float(head.weight.detach().norm()))

        fit(
            net,
            data,
            cfg,
            extra_loss=fst.ShiftPenalty(head, original, alpha),
            after_step=after_step,
            progress=False,
        )
        return head, original, norms

    head, original, norms = run(5.0)
    assert len(norms) == 3 * 4
    assert all(n == pytest.approx(float(original.norm()), rel=1e-5) for n in norms)
    plain_head, _, _ = run(0.0)
    assert (head.weight * original).sum() < (plain_head.weight * original).sum()


def test_negative_alpha_is_an_error():
    with pytest.raises(MendnetError, match="alpha"):
        fst.Config(alpha=-1)


@pytest.mark.slow
def test_fst_removes_the_backdoor_and_keeps_accuracy(backdoored, fmnist):
    from mendnet.jobs.repair import repair_model

    out = repair_model(
        backdoored,
        "fst",
        fst.Config(),
        clean_fraction=0.05,
        sets=fmnist,
        progress=False,
        before=backdoored.metrics,
    )
    before, after = backdoored.metrics, out.metrics
    assert after["asr"] < 0.5 * before["asr"], (before, after)
    # With the release's defaults FST costs accuracy on this fixture (2 epochs on 16,000 images, ACC 85%):
    # measured 85.0 → 75.3% at 0.0% ASR. The bound says "not destroyed", the measured cost is in
    # docs/deviations.md#fst; the benchmark reports FST on the fully trained models.
    assert after["acc"] >= before["acc"] - 0.12, (before, after)
    assert out.meta["repair"]["info"]["head"] == "net.fc"


def test_fst_leaves_the_input_model_unchanged():
    from mendnet.data.imageset import ImageSet

    model = build_classifier(ModelSpec("small-cnn", 10, (1, 28, 28), (0.5,), (0.5,)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=gen)
    data = ImageSet(images, torch.randint(0, 10, (40,), generator=gen), tuple("abcdefghij"), (0.5,), (0.5,))
    ctx = RepairContext(data, data, progress=False)
    result = fst.run(model, ctx, fst.Config(epochs=1, batch_size=20))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    head = fst.head_name(model)
    assert not torch.equal(result.model.get_submodule(head).weight, model.get_submodule(head).weight)
