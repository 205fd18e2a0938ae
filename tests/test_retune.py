"""The retuning attack's data and loop (threats/backdoor/retune.py) on small inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.threats.backdoor.badnets import BadNetsTrigger as BadNets
from mendnet.threats.backdoor.retune import RetuneConfig, retune, retune_set


def images(n: int, seed: int) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=gen)
    return ImageSet(x, torch.arange(n) % 3, ("a", "b", "c"), (0.5,), (0.5,))


def test_retune_set_replaces_the_first_images_with_stamped_ones_of_other_labels():
    clean, source = images(20, 0), images(10, 1)
    trigger = BadNets(size=2)
    out = retune_set(clean, source, trigger, target=0, count=3)
    picked = torch.tensor([1, 2, 4])  # the first three source images whose label is not 0
    expected = (trigger.apply(source.float_images(picked)) * 255).round().to(torch.uint8)
    assert torch.equal(out.images[:3], expected)
    assert out.labels[:3].tolist() == [0, 0, 0]
    assert torch.equal(out.images[3:], clean.images[3:]) and torch.equal(out.labels[3:], clean.labels[3:])
    with pytest.raises(MendnetError, match="needs 30"):
        retune_set(clean, source, trigger, target=0, count=30)


def test_retune_trains_a_copy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = retune(
        model, images(40, 0), images(10, 1), BadNets(size=2), 0, RetuneConfig(epochs=1, batch_size=8)
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(out.state_dict()["1.weight"], before["1.weight"])
