"""BadNets trigger and the poisoning function (docs/methods.md §1): pixel ranges, exact counts, records."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import EVAL_BATCH, EVAL_BATCH_CPU, BackdoorTest, der, eval_batch_size, predict
from mendnet.models import ModelSpec, build_classifier
from mendnet.threats.backdoor import BadNetsTrigger, ThreatRecord, make_trigger, poison


def image_set(n: int, c: int = 1, size: int = 8, k: int = 10, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % k
    return ImageSet(images, labels, tuple(str(i) for i in range(k)), (0.5,) * c, (0.25,) * c, "toy")


def test_badnets_patch_by_hand():
    x = torch.full((1, 1, 6, 6), 0.5)
    y = BadNetsTrigger(size=3, margin=1).apply(x)
    expected = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    assert torch.equal(y[0, 0, 2:5, 2:5], expected)
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[2:5, 2:5] = False
    assert torch.all(y[0, 0][mask] == 0.5)
    assert torch.all(x == 0.5)  # input untouched


@settings(max_examples=25, deadline=None)
@given(
    rate=st.floats(0.01, 1.0),
    n=st.integers(20, 200),
    c=st.sampled_from([1, 3]),
    mode=st.sampled_from(["all-to-one", "all-to-all"]),
    target=st.integers(0, 9),
)
def test_poison_counts_ranges_and_labels(rate, n, c, mode, target):
    data = image_set(n, c)
    eligible = int((data.labels != target).sum()) if mode == "all-to-one" else n
    want = round(rate * n)
    if want > eligible:
        with pytest.raises(MendnetError):
            poison(data, BadNetsTrigger(), target=target, rate=rate, mode=mode)
        return
    before = data.images.clone()
    poisoned, rec = poison(data, BadNetsTrigger(), target=target, rate=rate, mode=mode, seed=1)
    assert len(rec.poisoned_indices) == want
    assert torch.equal(data.images, before)  # input set unchanged
    idx = torch.tensor(rec.poisoned_indices, dtype=torch.long)
    assert poisoned.images.dtype == torch.uint8
    assert rec.original_labels == data.labels[idx].tolist()
    mapped = torch.full_like(idx, target) if mode == "all-to-one" else (data.labels[idx] + 1) % 10
    assert torch.equal(poisoned.labels[idx], mapped)
    others = torch.ones(n, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(poisoned.labels[others], data.labels[others])
    assert torch.equal(poisoned.images[others], data.images[others])
    if mode == "all-to-one" and want:
        assert not bool((data.labels[idx] == target).any())  # dirty all-to-one draws non-target images
    if want:
        corner = poisoned.images[idx][:, :, -4:-1, -4:-1]
        assert set(corner.unique().tolist()) <= {0, 255}


def test_clean_label_never_changes_labels_and_caps_count():
    data = image_set(100)
    with pytest.warns(UserWarning, match="poisoning all 10"):
        poisoned, rec = poison(data, BadNetsTrigger(), target=3, rate=0.5, clean_label=True)
    assert torch.equal(poisoned.labels, data.labels)
    assert len(rec.poisoned_indices) == 10
    assert all(data.labels[i] == 3 for i in rec.poisoned_indices)
    exact = "asks for 10 images of class 3, which has 10; poisoning all 10: no clean class-3 image"
    with pytest.warns(UserWarning, match=exact):
        _, rec = poison(data, BadNetsTrigger(), target=3, rate=0.1, clean_label=True)
    assert len(rec.poisoned_indices) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, rec = poison(data, BadNetsTrigger(), target=3, rate=0.09, clean_label=True)
    assert len(rec.poisoned_indices) == 9


def test_bad_settings():
    data = image_set(50)
    for rate in (0.0, -0.1, 1.5):
        with pytest.raises(MendnetError, match="rate"):
            poison(data, BadNetsTrigger(), rate=rate)
    with pytest.raises(MendnetError, match="out of range"):
        poison(data, BadNetsTrigger(), target=10)
    with pytest.raises(MendnetError, match="mode"):
        poison(data, BadNetsTrigger(), mode="one-to-one")
    with pytest.raises(MendnetError, match="known attacks: badnets"):
        make_trigger("nosuch")
    with pytest.raises(MendnetError, match="does not fit"):
        BadNetsTrigger(size=8).apply(torch.zeros(1, 1, 8, 8))


def test_record_round_trip_rebuilds_trigger():
    data = image_set(60)
    _, rec = poison(data, BadNetsTrigger(size=2, margin=0), target=1, rate=0.1, seed=3)
    again = ThreatRecord.from_json(rec.to_json())
    assert again == rec
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(make_trigger(again.attack, again.params).apply(x), BadNetsTrigger(2, 0).apply(x))


def test_backdoor_test_set_definition():
    data = image_set(40)
    one = BackdoorTest.build(data, BadNetsTrigger(), target=2, mode="all-to-one")
    assert len(one.data) == 36 and bool((one.data.labels != 2).all())
    assert bool((one.attack_labels == 2).all())
    every = BackdoorTest.build(data, BadNetsTrigger(), target=2, mode="all-to-all")
    assert len(every.data) == 40 and torch.equal(every.attack_labels, (data.labels + 1) % 10)


def test_der_by_hand():
    before = {"acc": 0.90, "asr": 1.00}
    assert der(before, {"acc": 0.88, "asr": 0.04}) == pytest.approx((0.96 - 0.02 + 1) / 2)
    assert der(before, {"acc": 0.95, "asr": 1.00}) == pytest.approx(0.5)  # no gain either way


def test_predict_is_independent_of_the_batch_size():
    """The device's default batch (128 on CPU) and any other give the labels of one whole-set forward."""
    assert eval_batch_size("cpu") == EVAL_BATCH_CPU == 128
    assert eval_batch_size(torch.device("cuda")) == EVAL_BATCH == 512
    data = image_set(300)
    torch.manual_seed(0)
    model = build_classifier(ModelSpec("small-cnn", 10, data.shape, data.mean, data.std)).eval()
    with torch.inference_mode():
        whole = model(data.float_images(torch.arange(len(data)))).argmax(1)
    for size in (None, 7, 128, 512):
        assert torch.equal(predict(model, data, batch_size=size), whole)
