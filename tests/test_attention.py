"""Attention operators and distances of NAD (docs/methods.md §3) against hand-computed values."""

import math

import pytest
import torch

from mendnet.errors import MendnetError
from mendnet.losses.attention import attention_distance, attention_map, normalized_attention

# one sample, two channels, 1×2 map: channel 0 = [1, -2], channel 1 = [3, 0]
F = torch.tensor([[[[1.0, -2.0]], [[3.0, 0.0]]]])


def test_operators_by_hand():
    assert attention_map(F, "sum").tolist() == [[[4.0, 2.0]]]  # |1|+|3|, |-2|+|0|
    assert attention_map(F, "pow-sum", 2).tolist() == [[[10.0, 4.0]]]  # 1+9, 4+0
    assert attention_map(F, "pow-mean", 2).tolist() == [[[5.0, 2.0]]]
    assert torch.allclose(attention_map(F, "pow-sum", 3), torch.tensor([[[28.0, 8.0]]]))


def test_normalised_map_has_unit_norm_and_ignores_operator_scale():
    a = normalized_attention(F, "pow-sum", 2)
    norm = math.sqrt(10**2 + 4**2)
    assert torch.allclose(a, torch.tensor([[10 / norm, 4 / norm]]))
    assert torch.allclose(a, normalized_attention(F, "pow-mean", 2))  # 1/C scale cancels


def test_distances_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    b = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    # sample 0: diff (1,-1): squared sum 2, mean over 2 positions 1; sample 1: 0 → batch mean 0.5
    assert attention_distance(a, b, "mean-squared").item() == pytest.approx(0.5)
    # l2: sample 0 sqrt(2), sample 1 0 → mean sqrt(2)/2
    assert attention_distance(a, b, "l2").item() == pytest.approx(math.sqrt(2) / 2)
    assert attention_distance(a, a, "mean-squared").item() == 0.0


def test_resize_for_teacher_of_other_size():
    big = torch.rand(3, 4, 8, 8)
    a = normalized_attention(big, size=(4, 4))
    assert a.shape == (3, 16)
    assert torch.allclose(a.norm(dim=1), torch.ones(3))


def test_bad_operator_and_power():
    with pytest.raises(MendnetError, match="unknown attention operator"):
        attention_map(F, "max")
    with pytest.raises(MendnetError, match="p must be > 1"):
        attention_map(F, "pow-sum", 1.0)
    with pytest.raises(MendnetError, match="unknown attention distance"):
        attention_distance(F.flatten(1), F.flatten(1), "cosine")
