"""The researcher's validation split: seeded, disjoint from what a tuning run trains and repairs on."""

import pytest
import torch

from mendnet.data.defender import defender_split
from mendnet.data.tuning import TUNING_SEED, carve_validation
from mendnet.errors import MendnetError
from tests.test_train import toy_set


def marked(n: int):
    """A toy set whose images carry their own index in the first two pixels (to trace them)."""
    data = toy_set(n)
    images = data.images.clone()
    images[:, 0, 0, 0] = torch.arange(n) // 256
    images[:, 0, 0, 1] = torch.arange(n) % 256
    return data.with_data(images, data.labels)


def ids(data) -> set[int]:
    return set((data.images[:, 0, 0, 0].long() * 256 + data.images[:, 0, 0, 1].long()).tolist())


def test_validation_is_carved_out_seeded_and_disjoint_from_the_defender_data():
    data = marked(600)
    rest, val = carve_validation(data, 100)
    assert len(val) == 100 and len(rest) == 500
    assert ids(val).isdisjoint(ids(rest)) and ids(val) | ids(rest) == set(range(600))
    again_rest, again_val = carve_validation(data, 100)
    assert torch.equal(again_val.images, val.images) and torch.equal(again_rest.labels, rest.labels)
    other = carve_validation(data, 100, seed=TUNING_SEED + 1)[1]
    assert ids(other) != ids(val)
    split = defender_split(len(rest), 0.2, seed=0)
    assert ids(rest.subset(split.all)).isdisjoint(ids(val))


@pytest.mark.parametrize("count", [0, 600, -3])
def test_impossible_validation_sizes_are_refused(count):
    with pytest.raises(MendnetError, match="validation split"):
        carve_validation(marked(600), count)
