"""The training loop, batching, augmentation, defender split and config parsing."""

import argparse

import pytest
import torch

from mendnet.cli.config import add_config_arguments, config_from_args, parse_number
from mendnet.data.augment import cutout, random_crop, random_flip
from mendnet.data.batches import iterate_batches
from mendnet.data.defender import defender_split
from mendnet.data.imageset import ImageSet, to_uint8
from mendnet.errors import MendnetError
from mendnet.models import ModelSpec, build_classifier
from mendnet.repair import nad
from mendnet.train import TrainConfig, fit, lr_factor


def toy_set(n=256, size=8, seed=0):
    """Two classes told apart by which half of the image is bright."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 60, (n, 1, size, size), generator=g, dtype=torch.uint8)
    images[labels == 0, :, : size // 2] += 180
    images[labels == 1, :, size // 2 :] += 180
    return ImageSet(images, labels, ("top", "bottom"), (0.4,), (0.3,), "toy")


def test_crop_is_a_window_of_the_padded_image():
    x = torch.rand(16, 2, 6, 6)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        assert any(
            torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6]) for dy in range(5) for dx in range(5)
        )


def test_flip_and_cutout():
    x = torch.rand(64, 1, 5, 5)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54
    holes = (cutout(torch.ones(200, 1, 8, 8), 3, torch.Generator().manual_seed(0)) == 0).sum((1, 2, 3))
    assert int(holes.max()) == 9 and int(holes.min()) >= 4  # a 3×3 hole, clipped at borders to ≥ 2×2


def test_shuffled_batches_cover_every_image_once():
    data = toy_set(50)
    data = data.with_data(
        torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 1, 8, 8).clone(), data.labels
    )
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in iterate_batches(data, 16, shuffle=True)])
    assert sorted((seen * 255).round().long().tolist()) == list(range(50))
    assert sum(len(y) for _, y in iterate_batches(data, 16, drop_last=True)) == 48


def test_schedules():
    step = TrainConfig(epochs=20, schedule="step", milestones=(2,), gamma=0.1)
    assert [lr_factor(step, e * 10, 10) for e in (0, 1, 2, 19)] == pytest.approx([1, 1, 0.1, 0.1])
    cos = TrainConfig(epochs=2, schedule="cosine")
    assert lr_factor(cos, 0, 10) == 1.0 and lr_factor(cos, 10, 10) == pytest.approx(0.5)
    assert lr_factor(cos, 20, 10) == pytest.approx(0.0)


def test_step_schedule_with_absolute_milestone_lrs_in_the_loop():
    # milestones 2 and 4 with absolute lrs 0.01 and 0.002: the base lr never scales them
    data = toy_set(32)  # batch 16: 2 steps an epoch
    model = build_classifier(ModelSpec("small-cnn", 2, (1, 8, 8), (0.4,), (0.3,)))
    kw = {"epochs": 6, "batch_size": 16, "schedule": "step", "milestones": (2, 4)}
    absolute = TrainConfig(lr=0.045, milestone_lrs=(0.01, 0.002), **kw)
    hist = fit(model, data, absolute, progress=False)
    assert [e.lr for e in hist.epochs] == pytest.approx([0.045, 0.045, 0.01, 0.01, 0.002, 0.002], rel=1e-12)
    assert absolute.lr * lr_factor(absolute, 11, 2) == pytest.approx(0.002, rel=1e-12)
    # without milestone_lrs the step schedule stays relative: lr · gamma per milestone passed
    relative = TrainConfig(lr=0.045, gamma=0.1, **kw)
    hist = fit(model, data, relative, progress=False)
    assert [e.lr for e in hist.epochs] == pytest.approx([0.045, 0.045, 0.0045, 0.0045, 0.00045, 0.00045])


def test_bad_milestone_lrs():
    step = {"schedule": "step", "milestones": (2, 5)}
    with pytest.raises(MendnetError, match="one lr per milestone: 2 milestones, 1 lrs"):
        TrainConfig(milestone_lrs=(0.01,), **step)
    with pytest.raises(MendnetError, match="milestones must increase"):
        TrainConfig(schedule="step", milestones=(5, 2), milestone_lrs=(0.01, 0.001))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(MendnetError, match="milestone_lrs must be positive numbers"):
            TrainConfig(milestone_lrs=(0.01, bad), **step)


def test_fit_learns_and_calls_the_extra_loss_with_taps():
    data = toy_set()
    torch.manual_seed(0)
    model = build_classifier(ModelSpec("small-cnn", 2, (1, 8, 8), (0.4,), (0.3,)))
    seen_keys = []

    class Probe:
        taps = ("net.stage1",)

        def __call__(self, x, y, logits, features):
            seen_keys.append(tuple(features))
            return features["net.stage1"].pow(2).mean() * 0.0

    hist = fit(model, data, TrainConfig(epochs=3, batch_size=32, lr=0.05), extra_loss=Probe(), progress=False)
    assert hist.epochs[-1].train_acc > 0.95
    assert set(seen_keys) == {("net.stage1",)}
    assert not model.training


def test_after_backward_gradient_mask_freezes_weights_bit_identically():
    data = toy_set(64)
    model = build_classifier(ModelSpec("small-cnn", 2, (1, 8, 8), (0.4,), (0.3,)))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def freeze_all_but_fc(m):
        for name, p in m.named_parameters():
            if "head" not in name:
                p.grad = None

    fit(
        model,
        data,
        TrainConfig(epochs=1, batch_size=16, weight_decay=5e-4),
        after_backward=freeze_all_but_fc,
        progress=False,
    )
    after = model.state_dict()
    for name, _p in model.named_parameters():
        assert torch.equal(before[name], after[name]) != ("head" in name), name


def test_defender_split():
    split = defender_split(1000, 0.05, seed=1, exclude=torch.arange(100))
    assert len(split.train) == 45 and len(split.val) == 5
    assert int(split.all.min()) >= 100 and len(set(split.all.tolist())) == 50
    assert torch.equal(split.all, defender_split(1000, 0.05, seed=1, exclude=torch.arange(100)).all)
    with pytest.raises(MendnetError, match="at least 10"):
        defender_split(100, 0.05)
    with pytest.raises(MendnetError, match=r"\(0, 1\]"):
        defender_split(100, 1.5)


def test_uint8_conversion_clips_without_wraparound():
    assert to_uint8(torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.7])).tolist() == [0, 0, 128, 255, 255]


def test_bad_training_config():
    for kwargs, msg in (
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "learning rate"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"schedule": "poly"}, "schedule"),
    ):
        with pytest.raises(MendnetError, match=msg):
            TrainConfig(**kwargs)


def test_config_flags_round_trip():
    assert parse_number("8/255") == pytest.approx(8 / 255) and parse_number("1e-3") == 0.001
    for bad in ("x", "1/0", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_number(bad)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, nad.Config)
    assert config_from_args(nad.Config, parser.parse_args([])) == nad.Config()
    cfg = config_from_args(
        nad.Config, parser.parse_args(["--betas", "1", "2", "3", "--no-flip", "--lr", "1/100"])
    )
    assert cfg.betas == (1.0, 2.0, 3.0) and cfg.flip is False and cfg.lr == pytest.approx(0.01)
