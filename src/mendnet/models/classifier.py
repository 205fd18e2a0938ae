"""The normalising classifier wrapper, its JSON-able spec, and building one from a spec."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.models.registry import get_architecture
from mendnet.models.stages import discover_stages, dummy_forward
from mendnet.models.taps import missing_modules_message
from mendnet.models.user_model import load_factory


def _plain(value: Any) -> Any:
    """`value` with tuples turned into lists, recursively (JSON's shape)."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a classifier (weights aside).

    arch: a registry name such as "wrn-16-1", or "pkg.module:factory" / "path/file.py:factory".
    num_classes: number of logits. input_shape: (C, H, W) in channels and pixels.
    mean, std: per-channel normalisation of pixel-space [0, 1] images, one value per channel.
    arch_args: extra JSON-able keyword arguments for the factory; for a user factory the key
    "stages" (a list of module names relative to the net) is taken out and names the stages.
    Lists given for input_shape, mean and std are stored as tuples.
    """

    arch: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    arch_args: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise MendnetError(f"input_shape must be three positive sizes (C, H, W), got {self.input_shape}")
        channels = self.input_shape[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise MendnetError(
                f"mean and std need {channels} values (one per channel), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if min(self.std) <= 0:
            raise MendnetError(f"std must be positive, got {self.std}")
        if self.num_classes < 1:
            raise MendnetError(f"num_classes must be at least 1, got {self.num_classes}")
        try:
            json.dumps(self.arch_args)
        except (TypeError, ValueError) as error:
            raise MendnetError(f"arch_args must be JSON-able: {error}") from None

    def to_json(self) -> dict:
        """A plain JSON-able dict (tuples become lists)."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "arch_args": _plain(self.arch_args),
        }

    @classmethod
    def from_json(cls, d: dict) -> ModelSpec:
        """The spec from `to_json`'s dict; keys other than the spec's own are ignored."""
        required = ("arch", "num_classes", "input_shape", "mean", "std")
        missing = [key for key in required if key not in d]
        if missing:
            raise MendnetError(f"model spec is missing {', '.join(missing)}")
        return cls(
            arch=d["arch"],
            num_classes=int(d["num_classes"]),
            input_shape=tuple(d["input_shape"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            arch_args=dict(d.get("arch_args", {})),
        )


class Classifier(nn.Module):
    """Takes images in pixel space [0, 1] (N×C×H×W), normalises them with the spec's mean and std
    ((x − mean) / std, buffers of shape 1×C×1×1), and returns the raw net's N×num_classes logits.

    `net` is the raw architecture (so its weights are the state dict's "net.*" entries; mean and
    std are non-persistent buffers rebuilt from the spec). `stages` are module names relative to
    the classifier, e.g. ("net.block1", "net.block2", "net.block3").
    """

    def __init__(self, net: nn.Module, spec: ModelSpec, stages: Sequence[str]) -> None:
        super().__init__()
        message = missing_modules_message(net, stages)
        if message:
            raise MendnetError(f"stages of {spec.arch}: {message}")
        self.spec = spec
        self.net = net
        self.stages = tuple(f"net.{name}" for name in stages)
        shape = (1, spec.input_shape[0], 1, 1)
        self.register_buffer("mean", torch.tensor(spec.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _call_factory(factory: Callable[..., nn.Module], kwargs: dict, arch: str) -> nn.Module:
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as error:
        raise MendnetError(f"{arch}: {error}") from None
    try:
        net = factory(**kwargs)
    except Exception as error:  # the user's code: one line naming it, for the CLI and the API alike
        if ":" not in arch:
            raise
        text = str(error).strip()
        first = text.splitlines()[0] if text else ""
        raise MendnetError(f"model factory {arch} raised {type(error).__name__}: {first}") from error
    if not isinstance(net, nn.Module):
        raise MendnetError(f"{arch} returned {type(net).__name__}, not a torch.nn.Module")
    return net


def _build_user(spec: ModelSpec) -> tuple[nn.Module, tuple[str, ...] | None]:
    """The user's net and its declared stages (None: discover them)."""
    factory = load_factory(spec.arch)
    kwargs = {key: value for key, value in spec.arch_args.items() if key != "stages"}
    channels, height, width = spec.input_shape
    offered = {
        "num_classes": spec.num_classes,
        "in_channels": channels,
        "input_size": (height, width),
    }
    parameters = inspect.signature(factory).parameters
    kwargs = {**{k: v for k, v in offered.items() if k in parameters}, **kwargs}
    stages = spec.arch_args.get("stages")
    return _call_factory(factory, kwargs, spec.arch), None if stages is None else tuple(stages)


def build_classifier(spec: ModelSpec) -> Classifier:
    """Build the net named by `spec.arch`, wrap it in a Classifier, and check its output.

    Registry architectures get num_classes, in_channels, input_size and `arch_args`, and their
    registered stages. A user factory ("module:factory") gets `arch_args` (minus "stages") plus
    num_classes, in_channels and input_size for those of these parameter names its signature
    declares; its stages are arch_args["stages"] if given, else `discover_stages`. One dummy
    forward checks that the output is N×num_classes logits.
    """
    if ":" in spec.arch:
        net, stages = _build_user(spec)
        if stages is None:
            stages = discover_stages(net, spec.input_shape)
    else:
        arch = get_architecture(spec.arch)
        channels, height, width = spec.input_shape
        kwargs = {
            "num_classes": spec.num_classes,
            "in_channels": channels,
            "input_size": (height, width),
            **spec.arch_args,
        }
        net, stages = _call_factory(arch.factory, kwargs, spec.arch), arch.stages
    model = Classifier(net, spec, stages)
    output = dummy_forward(model, spec.input_shape)
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise MendnetError(f"model must output N×K logits, got {shape}")
    if output.shape[1] != spec.num_classes:
        raise MendnetError(
            f"model outputs {output.shape[1]} logits but the data set has {spec.num_classes} classes"
        )
    return model


def check_fits(model: Classifier, data: ImageSet) -> None:
    """The model's recorded input shape and classes must match the data set."""
    spec = model.spec
    if tuple(spec.input_shape) != data.shape:
        raise MendnetError(f"model expects inputs {tuple(spec.input_shape)} but {data.name} has {data.shape}")
    if spec.num_classes != data.num_classes:
        raise MendnetError(f"model outputs {spec.num_classes} classes but {data.name} has {data.num_classes}")
