"""AI-Lancet (docs/methods.md §4): features and importance against hand computation and autograd, the
ablation search on a network whose error depends on known weights, flip and gradient-mask locality,
bad input, and a real repair of the session's backdoored model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mendnet.errors import MendnetError
from mendnet.repair.lancet.ablation import ablation_search, defect_success, fine_ratios, ratio_count
from mendnet.repair.lancet.companion import MaskSettings, backdoor_pairs, mask_companions
from mendnet.repair.lancet.features import ei_features, weight_importance
from mendnet.repair.lancet.flip import flip_signs
from mendnet.repair.lancet.layers import resolve_layer
from mendnet.repair.lancet.tune import MixedBatches, kd_loss, neuron_finetune


def tiny_mlp() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.8, -1.0]]))
        net[0].bias.copy_(torch.tensor([0.1, 0.2]))
        net[2].weight.copy_(torch.tensor([[2.0, -1.0], [-1.5, 1.0]]))
        net[2].bias.copy_(torch.tensor([0.0, 0.3]))
    return net


def test_former_importance_options_match_hand_computation():
    """The former form, kept as options: f_L the raw layer output, both passes differentiated."""
    net = tiny_mlp()
    x = torch.tensor([[1.0, 0.5, 2.0], [0.2, -1.0, 0.4]])
    x_comp = torch.tensor([[0.5, 0.5, 1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([1, 0])
    w1, b1, w2, b2 = (p.detach() for p in (net[0].weight, net[0].bias, net[2].weight, net[2].bias))
    # by hand: h = W1 x + b1 (the layer's output); df = W1 (x − x'), the bias cancels
    h = x @ w1.T + b1
    df = (x - x_comp) @ w1.T
    z = h.clamp_min(0) @ w2.T + b2
    g = ((z.softmax(1) - F.one_hot(y, 2)) @ w2 * (h > 0)).abs()  # |∂CE/∂h|
    gain = g / g.amax(1, keepdim=True)
    ei = df * (gain + 0.5)
    feats = ei_features(net, net[0], x, x_comp, y, alpha=0.5, feature_point="layer")
    torch.testing.assert_close(feats.df, df)
    torch.testing.assert_close(feats.gain, gain)
    torch.testing.assert_close(feats.ei, ei)
    # ‖EI‖ = ‖(W1 d) ⊙ c‖ with c = G + α constant: ∂/∂W1[j, k] = EI_j c_j / ‖EI‖ · d_k
    c = gain + 0.5
    expected = ((ei * c / ei.norm(dim=1, keepdim=True))[:, :, None] * (x - x_comp)[:, None, :]).abs()
    torch.testing.assert_close(weight_importance(net[0], feats, companion="differentiated"), expected)


def test_former_conv_importance_matches_per_sample_autograd():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4))
    x, x_comp = torch.rand(3, 2, 5, 5), torch.rand(3, 2, 5, 5)
    y = torch.tensor([0, 2, 3])
    feats = ei_features(net, net[0], x, x_comp, y, feature_point="layer")
    scores = weight_importance(net[0], feats, chunk_size=2, companion="differentiated")
    c = feats.gain + feats.alpha
    for i in range(3):  # one sample at a time, plain autograd through the layer
        w = net[0].weight.detach().clone().requires_grad_()
        d = F.conv2d(x[i : i + 1], w, net[0].bias, padding=1) - F.conv2d(
            x_comp[i : i + 1], w, net[0].bias, padding=1
        )
        (grad,) = torch.autograd.grad((d[0] * c[i]).norm(), w)
        torch.testing.assert_close(scores[i], grad.abs(), rtol=1e-4, atol=1e-6)


def test_ablation_search_returns_the_minimal_ratio():
    # Linear 1000 → 2, n = 2000 weights. Logit 1 sums the first m inputs (weights W[1, :m] = 1), logit 0 is
    # a bias of 0.5: the true label 0 wins exactly when all m of sample i's active weights are zeroed.
    layer = nn.Linear(1000, 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1] = 1.0
        layer.bias.copy_(torch.tensor([0.5, 0.0]))
    ms = [37, 5, 400]
    x = torch.zeros(3, 1000)
    scores = torch.zeros(3, 2, 1000)
    for i, m in enumerate(ms):
        x[i, :m] = 1.0
        scores[i, 1, :m] = torch.linspace(2, 1, m)  # the error's weights rank first
    result = ablation_search(layer, layer, x, torch.zeros(3, dtype=torch.long), scores, defect_success)
    # by hand, counts are ceil(r·2000): m = 37 fails at coarse 0.01 (20) and succeeds at 0.02 (40); the fine
    # steps 0.011…0.019 give 22…38, first ≥ 37 at 0.019. m = 5: coarse 0.002 (4) fails, 0.003 (6) succeeds,
    # fine 0.0021 gives 5. m = 400: 0.1 (200) fails, 0.2 (400) succeeds; fine 0.19 gives 380, so 0.2.
    assert result.found.all()
    torch.testing.assert_close(result.ratio, torch.tensor([0.019, 0.0021, 0.2], dtype=torch.float64))
    assert result.count.tolist() == [38, 5, 400]
    mask = result.neuron_mask().view(3, 2, 1000)
    for i, m in enumerate(ms):
        assert mask[i, 1, :m].all()


def test_ablation_grid_helpers():
    assert fine_ratios(0.01, 0.02) == pytest.approx([0.011 + 0.001 * k for k in range(10)])
    assert ratio_count(0.019, 2000) == 38
    assert ratio_count(1e-6, 10) == 1
    assert ratio_count(0.9, 10) == 9


def test_flip_changes_only_the_selected_signs():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    idx = torch.tensor([0, 17, 50, 107])
    flipped = flip_signs(w, idx)
    changed = torch.nonzero((flipped != w).flatten()).flatten()
    assert changed.tolist() == idx.tolist()
    assert torch.equal(flipped.flatten()[idx], -w.flatten()[idx])
    assert torch.equal(w, w.clone())  # the input is not changed


def test_gradient_mask_keeps_every_other_weight_bit_identical():
    from mendnet.data.imageset import ImageSet
    from mendnet.models import ModelSpec, build_classifier
    from mendnet.train import TrainConfig

    torch.manual_seed(0)
    model = build_classifier(ModelSpec("small-cnn", 10, (1, 28, 28), (0.5,), (0.5,)))
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=gen)
    data = ImageSet(images, torch.randint(0, 10, (64,), generator=gen), tuple("abcdefghij"), (0.5,), (0.5,))
    name = "net.stage2.3"
    mask = torch.rand(model.get_submodule(name).weight.shape, generator=gen) < 0.01
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, weight_decay=0.0, schedule="constant")
    tuned, _ = neuron_finetune(model, name, mask, data.subset(torch.arange(32)), data, cfg, progress=False)
    before, after = model.state_dict(), tuned.state_dict()
    for key in before:  # BatchNorm statistics included
        if key != f"{name}.weight":
            assert torch.equal(before[key], after[key]), key
    changed = before[f"{name}.weight"] != after[f"{name}.weight"]
    assert changed.any()
    assert not (changed & ~mask).any()


def test_mixed_batches_take_kd_on_the_original_rows_only():
    """Paper §5.2: CE over N_e and N_o, KD to the original only on N_o; checked by hand on a linear model."""
    from mendnet.data.imageset import ImageSet

    gen = torch.Generator().manual_seed(3)
    originals = ImageSet(
        torch.randint(0, 256, (5, 1, 2, 2), dtype=torch.uint8, generator=gen),
        torch.tensor([0, 1, 2, 0, 1]),
        ("a", "b", "c"),
        (0.0,),
        (1.0,),
    )
    student = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    original = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    objective = MixedBatches(original, originals, weight=0.7, temperature=2.0, seed=0)
    expected_order = torch.randperm(5, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 1, 2, 2, generator=gen)
    y = torch.tensor([2, 2, 1])
    loss, logits = objective(student, x, y)
    x_o = originals.float_images(expected_order[:3])
    y_o = originals.labels[expected_order[:3]]
    all_logits = student(torch.cat([x, x_o]))
    by_hand = F.cross_entropy(all_logits, torch.cat([y, y_o]))
    log_s = F.log_softmax(all_logits[3:] / 2.0, 1)
    log_t = F.log_softmax(original(x_o) / 2.0, 1)
    by_hand = by_hand + 0.7 * (4.0 * (log_t.exp() * (log_t - log_s)).sum(1)).mean()
    assert torch.allclose(loss, by_hand, atol=1e-6)
    assert torch.allclose(logits, all_logits[:3], atol=1e-6)
    assert torch.allclose(
        kd_loss(all_logits[3:], original(x_o), 2.0), 4.0 * (log_t.exp() * (log_t - log_s)).sum(1)
    )
    # the next draw finishes the first permutation, then starts a fresh one
    assert torch.equal(objective.draw(2), expected_order[3:])
    assert sorted(objective.draw(5).tolist()) == [0, 1, 2, 3, 4]


def test_bad_layers_are_one_line_errors():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(MendnetError, match="unknown layer") as unknown:
        resolve_layer(net, "9")
    with pytest.raises(MendnetError, match="no weights") as weightless:
        resolve_layer(net, "1")
    for error in (unknown, weightless):
        assert "\n" not in str(error.value)
    assert resolve_layer(net, "3") is net[3]


def always_one() -> nn.Module:
    """A classifier of 1×4×4 images that answers label 1 whatever the input."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor([0.0, 1.0]))
    return net


def test_no_erroneous_samples_is_a_one_line_error():
    x, y = torch.rand(8, 1, 4, 4), torch.ones(8, dtype=torch.long)
    with pytest.raises(MendnetError, match="no erroneous samples found"):
        backdoor_pairs(always_one(), x, y, lambda t: t, target=0, limit=5)
    with pytest.raises(MendnetError, match="no companion found"):
        mask_companions(always_one(), x, torch.zeros(8, dtype=torch.long), MaskSettings(steps=3))


def test_flip_with_the_true_trigger_lowers_asr(backdoored, fmnist):
    from mendnet.jobs.repair import repair_model
    from mendnet.repair.lancet.repair import FlipConfig

    train, test = fmnist
    sets = (train, test.subset(torch.arange(1000)))
    before = {key: backdoored.metrics[key] for key in ("acc", "asr", "ra")}
    cfg = FlipConfig(oracle_trigger=True, layer="net.fc", pairs=20)
    out = repair_model(backdoored, "lancet-flip", cfg, sets=sets, progress=False)
    info = out.meta["repair"]["info"]
    assert before["asr"] > 0.9
    assert out.metrics["asr"] < 0.3, out.metrics
    assert info["trigger"] == "recorded (oracle)" and info["layer"] == "net.fc"
    assert info["weights_changed"] in range(1, info["ei_neurons"] + 1), info  # flipped ⊆ voted EI neurons
    original, repaired = backdoored.model.state_dict(), out.model.state_dict()
    for key in original:
        if key != "net.fc.weight":
            assert torch.equal(original[key].cpu(), repaired[key].cpu()), key
    w0, w1 = original["net.fc.weight"].cpu().flatten(), repaired["net.fc.weight"].cpu().flatten()
    changed = torch.nonzero(w0 != w1).flatten()
    assert changed.tolist() == sorted(info["changed_indices"])
    assert len(changed) == info["weights_changed"]
    assert torch.equal(w1[changed], -w0[changed])


def test_locate_command_writes_its_folder(backdoored, tmp_path):
    import json

    from mendnet.artefact import save_artefact
    from mendnet.cli import main

    art = tmp_path / "bd"
    save_artefact(art, backdoored.model, backdoored.meta, backdoored.metrics, {})
    out = tmp_path / "located"
    args = ["locate", str(art), "--oracle-trigger", "--layers", "net.block3.1.conv2", "net.fc"]
    args += ["--pairs", "8", "--out", str(out), "--quiet"]
    assert main(args) == 0
    report = json.loads((out / "locate.json").read_text())
    assert [row["layer"] for row in report["layers"]] == ["net.block3.1.conv2", "net.fc"]
    assert report["chosen_layer"] in ("net.block3.1.conv2", "net.fc")
    assert report["ei_neurons"] > 0 and report["top_votes"][0]["votes"] >= 1
    assert (out / "lancet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "votes.safetensors").exists()
    assert main(args) == 2  # the folder exists and --force was not given
