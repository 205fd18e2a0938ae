"""The layers AI-Lancet works on: convolutions and linear layers, named as in `named_modules()`, and the
feature point where a layer's features are read.

A "neuron" is one entry of such a layer's `weight` (Zhao et al., CCS 2021, §3); biases are never touched.

Feature point (`feature_site`, docs/methods.md §4 step 2). The authors' release reads f_L at the output of
the small module that holds the layer: every weighted layer there is an `nn.Sequential` of the layer, its
ReLU and, where the network pools, its max-pool (conv → ReLU [→ pool], linear → ReLU [→ dropout]; the
logits layer alone). Our rule reproduces that on any model, in this order:

1. block: the innermost ancestor of the layer that is a module with its own `forward` (not a container:
   `nn.Sequential`, `nn.ModuleList`, `nn.ModuleDict`) when it holds no smaller such module with weights
   inside (no nested block) and not the model's output layer (the last weighted layer called). This is a
   residual block (ResNet `BasicBlock`, WRN/PreAct `PreActBlock`): f_L is the block's output, after the
   skip connection (and the block's final ReLU where it has one). Our choice: the release has no residual
   network, and a block's forward cannot be split.
2. unit: otherwise, where the layer's parent is an `nn.Sequential`, the run of its children from the layer
   up to (not including) the next child that has weights: conv-BN-ReLU[-pool] in a VGG or small-CNN stage,
   linear-ReLU in a head. This is the release's per-layer Sequential.
3. layer: otherwise (a flat model, a stem conv called from the model's own forward, the logits layer) the
   layer's own output.

`feature_point="layer"` skips 1 and 2.

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.models.taps import hooks_removed, missing_modules_message

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def candidate_layers(model: nn.Module) -> list[str]:
    """Names of every convolution and linear layer of `model`, in definition order."""
    return [name for name, module in model.named_modules() if isinstance(module, WEIGHTED)]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The conv or linear module `name` of `model`; MendnetError (one line) for an unknown name or a
    module that has no weight matrix (e.g. a ReLU, a pooling layer or a container)."""
    message = missing_modules_message(model, [name])
    if message:
        raise MendnetError(f"unknown layer: {message}")
    module = model.get_submodule(name)
    if not isinstance(module, WEIGHTED):
        raise MendnetError(
            f"layer {name!r} ({type(module).__name__}) has no weights AI-Lancet can work on; "
            f"choose a convolution or linear layer: {', '.join(candidate_layers(model)) or 'none'}"
        )
    return module


def replace_output(
    layer: nn.Module, make: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.utils.hooks.RemovableHandle:
    """Forward hook on `layer` whose output becomes `make(layer_input, layer_output)`; remove the returned
    handle when done. Calls of the layer made by `make` itself (e.g. a `functional_call`) are left alone."""
    busy: list[bool] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if busy:
            return output
        busy.append(True)
        try:
            return make(inputs[0], output)
        finally:
            busy.pop()

    return layer.register_forward_hook(hook)


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

FeaturePoint = Literal["block", "layer"]
FEATURE_POINTS = ("block", "layer")


@dataclass(frozen=True)
class FeatureSite:
    """Where a layer's features f_L are read.

    name: the site as named modules (e.g. "net.block3.1", "net.stage1[0:3]" for children 0–2 of a
    Sequential, or the layer's own name); kind: "block", "unit" or "layer"; module: maps the site's input
    to f_L (the block, a Sequential of the unit's children, or the layer); weight_key: the chosen layer's
    weight inside `module` (for `functional_call`); entry: the module whose input is the site's input;
    exit: the module whose output is f_L (the one to hook); layer: the chosen layer."""

    name: str
    kind: str
    module: nn.Module
    weight_key: str
    entry: nn.Module
    exit: nn.Module
    layer: nn.Module


def module_name(model: nn.Module, module: nn.Module) -> str:
    """`module`'s name in `model` (MendnetError when it is not a submodule)."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise MendnetError(f"{type(module).__name__} is not a module of {type(model).__name__}")


def _has_weights(module: nn.Module) -> bool:
    return any(isinstance(m, WEIGHTED) for m in module.modules())


def _is_block(module: nn.Module) -> bool:
    """A module with its own forward, not a weighted layer, with no smaller such module that has weights."""
    if isinstance(module, (*CONTAINERS, *WEIGHTED)):
        return False
    return all(
        isinstance(m, (*CONTAINERS, *WEIGHTED)) or not _has_weights(m)
        for _, m in module.named_modules()
        if m is not module
    )


def last_weighted_called(model: nn.Module, x: torch.Tensor) -> nn.Module | None:
    """The weighted layer called last in one forward of x (no gradient): the model's output layer."""
    calls: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda mod, _i, _o: calls.append(mod))
        for m in model.modules()
        if isinstance(m, WEIGHTED)
    ]
    with hooks_removed(handles), torch.no_grad():
        model(x)
    return calls[-1] if calls else None


def feature_site(
    model: nn.Module, layer: nn.Module, probe: torch.Tensor, point: FeaturePoint = "block"
) -> FeatureSite:
    """The feature point of `layer` in `model` (module docstring). probe: a small input batch (one
    sample is enough) for one forward that finds the model's output layer."""
    if point not in FEATURE_POINTS:
        raise MendnetError(f"feature_point must be one of {', '.join(FEATURE_POINTS)}, got {point!r}")
    name = module_name(model, layer)
    itself = FeatureSite(name, "layer", layer, "weight", layer, layer, layer)
    if point == "layer" or not name:
        return itself
    output_layer = last_weighted_called(model, probe)
    modules = dict(model.named_modules())
    parts = name.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        ancestor_name = ".".join(parts[:depth])
        ancestor = modules[ancestor_name]
        if isinstance(ancestor, CONTAINERS):
            continue
        contains_output = any(m is output_layer for m in ancestor.modules())
        if _is_block(ancestor) and not contains_output:
            key = ".".join(parts[depth:]) + ".weight"
            return FeatureSite(ancestor_name, "block", ancestor, key, ancestor, ancestor, layer)
        break
    parent_name = ".".join(parts[:-1])
    parent = modules[parent_name]
    if not isinstance(parent, nn.Sequential):
        return itself
    children = list(parent.children())
    start = next(i for i, child in enumerate(children) if child is layer)
    stop = start + 1
    while stop < len(children) and not _has_weights(children[stop]):
        stop += 1
    if stop == start + 1:
        return itself
    unit = nn.Sequential(*children[start:stop])
    site_name = f"{parent_name}[{start}:{stop}]" if parent_name else f"[{start}:{stop}]"
    return FeatureSite(site_name, "unit", unit, "0.weight", layer, children[stop - 1], layer)


def layer_io(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, exit: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input of `layer`, output of `exit`, default `layer`) for the batch x, from one forward without
    gradient; copies, so later in-place operations of the model cannot change them."""
    seen: dict[str, torch.Tensor] = {}

    def record_in(module: nn.Module, inputs: tuple) -> None:
        seen["in"] = inputs[0].detach().clone()

    def record_out(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        seen["out"] = output.detach().clone()

    handles = [layer.register_forward_pre_hook(record_in), (exit or layer).register_forward_hook(record_out)]
    with hooks_removed(handles), torch.no_grad():
        model(x)
    if "in" not in seen or "out" not in seen:
        raise MendnetError("the layer was not called in the model's forward pass")
    return seen["in"], seen["out"]


class evaluating:
    """Context manager: `model` in eval mode inside (BatchNorm uses its running statistics, so every
    sample's computation is independent of the others in its batch); every submodule's previous mode
    restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes = [(m, m.training) for m in model.modules()]

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for module, training in self.modes:
            module.training = training
