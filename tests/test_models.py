"""Architectures, the normalising wrapper, stages, feature taps and user factories."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.models import (
    ARCHITECTURES,
    FeatureTap,
    ModelSpec,
    architecture_names,
    build_classifier,
    check_attention_stages,
    discover_stages,
    load_factory,
    stage_shapes,
)
from mendnet.models.wrn import WideResNet

GREY, COLOUR = (1, 28, 28), (3, 32, 32)

# (C, H, W) of each registered stage, for 28×28 greyscale and 32×32 colour inputs.
STAGE_SHAPES = {
    "wrn-16-1": {GREY: [(16, 28, 28), (32, 14, 14), (64, 7, 7)],
                 COLOUR: [(16, 32, 32), (32, 16, 16), (64, 8, 8)]},
    "wrn-16-2": {GREY: [(32, 28, 28), (64, 14, 14), (128, 7, 7)],
                 COLOUR: [(32, 32, 32), (64, 16, 16), (128, 8, 8)]},
    "wrn-40-2": {GREY: [(32, 28, 28), (64, 14, 14), (128, 7, 7)],
                 COLOUR: [(32, 32, 32), (64, 16, 16), (128, 8, 8)]},
    "preact-resnet-18": {GREY: [(64, 28, 28), (128, 14, 14), (256, 7, 7), (512, 4, 4)],
                         COLOUR: [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]},
    "resnet-18": {GREY: [(64, 28, 28), (128, 14, 14), (256, 7, 7), (512, 4, 4)],
                  COLOUR: [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]},
    "vgg-11-bn": {GREY: [(64, 14, 14), (128, 7, 7), (256, 3, 3), (512, 3, 3), (512, 3, 3)],
                  COLOUR: [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2), (512, 2, 2)]},
    "small-cnn": {GREY: [(32, 14, 14), (64, 7, 7)], COLOUR: [(32, 16, 16), (64, 8, 8)]},
}  # fmt: skip


def spec_for(arch: str, shape: tuple[int, int, int], num_classes: int = 10, **args) -> ModelSpec:
    channels = shape[0]
    mean, std = [0.5, 0.4, 0.3][:channels], [0.2, 0.25, 0.3][:channels]
    return ModelSpec(arch, num_classes, shape, mean, std, arch_args=args)


def test_every_architecture_has_documented_shapes() -> None:
    assert sorted(STAGE_SHAPES) == sorted(architecture_names())


@pytest.mark.parametrize("shape", [GREY, COLOUR], ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_architecture_logits_and_stages(arch: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_classifier(spec_for(arch, shape)).eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 10)
        model.to(memory_format=torch.channels_last)
        logits_cl = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(logits_cl, logits, atol=1e-4, rtol=1e-4)
    assert all(name.startswith("net.") for name in model.stages)
    shapes = stage_shapes(model, model.stages, shape)
    assert list(shapes.values()) == STAGE_SHAPES[arch][shape]
    assert check_attention_stages(model, model.stages, shape) == shapes


def test_wrapper_normalises_inside() -> None:
    model = build_classifier(spec_for("small-cnn", COLOUR)).eval()
    x = torch.rand(4, *COLOUR)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((x - mean) / std))
    assert model.mean.shape == (1, 3, 1, 1)
    assert all(key.startswith("net.") for key in model.state_dict())


def test_model_spec_json_round_trip() -> None:
    spec = spec_for("wrn-16-1", COLOUR, dropout=0.3, stages=["a", "b"])
    data = json.loads(json.dumps(spec.to_json()))
    assert data["input_shape"] == [3, 32, 32]
    assert ModelSpec.from_json(data) == spec


def test_model_spec_rejects_bad_values() -> None:
    with pytest.raises(MendnetError, match="one per channel"):
        ModelSpec("small-cnn", 10, (3, 32, 32), (0.5,), (0.2,))
    with pytest.raises(MendnetError, match="missing"):
        ModelSpec.from_json({"arch": "small-cnn"})


def test_unknown_architecture_lists_known_names() -> None:
    with pytest.raises(MendnetError) as error:
        build_classifier(spec_for("wrn-99-9", GREY))
    for name in architecture_names():
        assert name in str(error.value)


def test_unknown_factory_argument() -> None:
    with pytest.raises(MendnetError, match="wrn-16-1"):
        build_classifier(spec_for("wrn-16-1", GREY, widht=3))


def test_feature_tap_matches_manual_hook_and_removes_hooks() -> None:
    model = build_classifier(spec_for("small-cnn", GREY))
    names = ["net.stage1", "net.stage2"]
    manual: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda module, inputs, output, name=name: manual.__setitem__(name, output)
        )
        for name in names
    ]
    x = torch.rand(3, *GREY)
    with FeatureTap(model, names) as features:
        model(x)
    for handle in handles:
        handle.remove()
    assert list(features) == names
    for name in names:
        assert features[name] is manual[name]
        assert features[name].grad_fn is not None
    assert all(not module._forward_hooks for module in model.modules())

    with FeatureTap(model, names, detach=True) as detached:
        model(x)
    torch.testing.assert_close(detached["net.stage2"], manual["net.stage2"])
    assert detached["net.stage2"].grad_fn is None

    with pytest.raises(RuntimeError, match="body failed"), FeatureTap(model, names):
        raise RuntimeError("body failed")
    assert all(not module._forward_hooks for module in model.modules())


def test_feature_tap_unknown_name() -> None:
    model = build_classifier(spec_for("small-cnn", GREY))
    with pytest.raises(MendnetError, match=r"'net.stage3'.*stage1, stage2, head"):
        FeatureTap(model, ["net.stage1", "net.stage3"])


def test_check_attention_stages_names_every_problem() -> None:
    net = WideResNet(16, 1, num_classes=10, in_channels=1)
    assert check_attention_stages(net, ["block3"], GREY) == {"block3": (64, 7, 7)}
    with pytest.raises(MendnetError) as error:
        check_attention_stages(net, ["block2", "pool", "fc", "block9"], GREY)
    message = str(error.value)
    assert "'pool' is 64×1×1" in message
    assert "'fc' gives 10" in message
    assert "'block9'" in message and "block1, block2, relu" in message
    assert "'block2'" not in message
    assert "\n" not in message


def test_discover_stages_wrn_16_1() -> None:
    net = WideResNet(16, 1, num_classes=10, in_channels=1)
    # 7×7: block3, then the final BN and ReLU at the same depth; the ReLU fires last.
    assert discover_stages(net, GREY) == ("block1", "block2", "relu")
    assert net.training  # the dummy forward restores the training mode


def test_discover_stages_sequential_cnn() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip
    # Last module at 32×32, 16×16 and 8×8; the 1×1 pooled map is skipped.
    assert discover_stages(net, COLOUR) == ("2", "5", "6")


class _PreAct(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn(x))
        return self.conv(out) + self.skip(out)


class _PreActNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.group1 = nn.Sequential(_PreAct(8, 8, 1), _PreAct(8, 8, 1))
        self.group2 = nn.Sequential(_PreAct(8, 16, 2), _PreAct(16, 16, 1))
        self.group3 = nn.Sequential(_PreAct(16, 32, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.group3(self.group2(self.group1(self.stem(x)))))


def test_discover_stages_preact_names_group_not_next_bn() -> None:
    # group2.0.bn and group3.0.bn run at the previous resolution but are nested deeper.
    assert discover_stages(_PreActNet(), COLOUR) == ("group1", "group2", "group3")


USER_MODULE = """
from torch import nn

def make(num_classes, in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )

def make_five(width=4):
    return nn.Sequential(nn.Conv2d(1, width, 3), nn.Flatten(1), nn.LazyLinear(5))

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "mendnet_test_user_net.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mendnet_test_user_net"


def test_user_factory_builds_and_discovers_stages(user_module: str) -> None:
    model = build_classifier(spec_for(f"{user_module}:make", GREY))
    assert model.stages == ("net.1", "net.4")
    assert model(torch.rand(2, *GREY)).shape == (2, 10)
    declared = build_classifier(spec_for(f"{user_module}:make", GREY, stages=["0"]))
    assert declared.stages == ("net.0",)


def test_user_factory_from_file_path(tmp_path) -> None:
    path = tmp_path / "some_net.py"
    path.write_text(textwrap.dedent(USER_MODULE))
    assert callable(load_factory(f"{path}:make"))


def test_user_factory_output_mismatch(user_module: str) -> None:
    with pytest.raises(MendnetError, match="outputs 5 logits but the data set has 10 classes"):
        build_classifier(spec_for(f"{user_module}:make_five", GREY))


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("mendnet_no_such_module_xyz:make", "cannot import"),
        ("mendnet_test_user_net:missing", "no attribute 'missing'"),
        ("mendnet_test_user_net:NOT_CALLABLE", "not callable"),
        ("mendnet_test_user_net", "module:factory"),
        ("/no/such/file.py:make", "does not exist"),
    ],
)
def test_bad_factory_paths(user_module: str, path: str, match: str) -> None:
    with pytest.raises(MendnetError, match=match):
        load_factory(path)
