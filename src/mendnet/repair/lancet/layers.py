"""The layers AI-Lancet works on: convolutions and linear layers, named as in `named_modules()`.

A "neuron" is one entry of such a layer's `weight` (Zhao et al., CCS 2021, §3); biases are never touched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.models.taps import missing_modules_message

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


def layer_io(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of `layer` for the batch x (no gradient), and nothing else changed."""
    seen: dict[str, torch.Tensor] = {}

    def record(inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        seen["in"], seen["out"] = inp.detach(), out.detach()
        return out

    handle = replace_output(layer, record)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    if "in" not in seen:
        raise MendnetError("the layer was not called in the model's forward pass")
    return seen["in"], seen["out"]


class evaluating:
    """Context manager: `model` in eval mode inside (BatchNorm uses its running statistics, so every
    sample's computation is independent of the others in its batch); the previous mode restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)
