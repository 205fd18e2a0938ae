"""Stages: named modules whose outputs are the feature maps that attention and distillation use.

Shapes are (C, H, W) in channels and pixels, taken from one forward pass of a dummy batch of two
zero images (eval mode, no gradients; the model's training mode is restored afterwards).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.models.taps import FeatureTap, hooks_removed


def dummy_forward(model: nn.Module, input_shape: tuple[int, int, int]) -> object:
    """Run `model` on a 2×C×H×W batch of zeros (on the model's device and float dtype) in eval
    mode under no_grad, restore its training mode, and return the output. A RuntimeError from the
    model becomes a one-line MendnetError."""
    reference = next(
        (t for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()),
        None,
    )
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    x = torch.zeros(2, *input_shape, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        shape = "×".join(map(str, x.shape))
        raise MendnetError(f"{type(model).__name__} fails on a {shape} input: {first_line}") from error
    finally:
        model.train(was_training)


def discover_stages(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[str, ...]:
    """Stage names for a model that does not declare them: the last module before each change of
    spatial resolution.

    Rule: hook every submodule (not the root) and run one dummy forward. Modules whose output is
    a 4-D tensor are grouped by its spatial size (H, W), groups in order of first appearance;
    groups whose map is 1×1 are skipped (no spatial extent, so useless for attention). In each
    group, of the outermost modules (fewest dots in the name) the one whose hook fired last is
    the stage. A pre-activation net whose next block starts with BN-ReLU at the old resolution
    still gets the group container, since those BN/ReLU modules are nested deeper.

    The last resolution often resolves to a top-level module after the last group: WRN-16-1 on
    28×28 gives ("block1", "block2", "relu") — "relu" being the final BN-ReLU's 7×7 output, a
    BN-ReLU of block3's output. Returns () when no module outputs a map larger than 1×1.
    """
    events: list[tuple[str, tuple[int, int]]] = []

    def hook(name: str) -> Callable[[nn.Module, tuple, object], None]:
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                events.append((name, (output.shape[2], output.shape[3])))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    with hooks_removed(handles):
        dummy_forward(model, input_shape)

    groups: dict[tuple[int, int], list[str]] = {}
    for name, size in events:
        groups.setdefault(size, []).append(name)
    stages = []
    for (height, width), names in groups.items():
        if height * width == 1:
            continue
        depth = min(name.count(".") for name in names)
        stages.append([name for name in names if name.count(".") == depth][-1])
    return tuple(stages)


def _output_shapes(
    model: nn.Module, names: Sequence[str], input_shape: tuple[int, int, int]
) -> dict[str, tuple[int, ...] | None]:
    """Each module's output shape without the batch axis (None if it gave no tensor)."""
    with FeatureTap(model, names, detach=True) as features:
        dummy_forward(model, input_shape)
    return {
        name: tuple(features[name].shape[1:]) if isinstance(features.get(name), torch.Tensor) else None
        for name in names
    }


def _describe(shape: tuple[int, ...] | None) -> str:
    return "no tensor" if shape is None else "×".join(map(str, shape))


def stage_shapes(
    model: nn.Module, names: Sequence[str], input_shape: tuple[int, int, int]
) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of each named module's output for an input of shape `input_shape` (C, H, W).

    MendnetError when a name is not a module or a module does not output a C×H×W map.
    """
    shapes = _output_shapes(model, names, input_shape)
    bad = [f"{name!r} gives {_describe(s)}" for name, s in shapes.items() if s is None or len(s) != 3]
    if bad:
        raise MendnetError(f"stages must output C×H×W maps: {'; '.join(bad)}")
    return {name: (s[0], s[1], s[2]) for name, s in shapes.items() if s is not None}


def check_attention_stages(
    model: nn.Module, names: Sequence[str], input_shape: tuple[int, int, int]
) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of each stage, after checking that every stage can carry an attention map.

    One MendnetError names every problem at once: names that are not modules of `model` (with the
    discovered stage-like names as a hint), stages that give no C×H×W map, and stages whose map
    is 1×1 (their normalised attention map is a constant, so distilling it does nothing).
    """
    modules = dict(model.named_modules())
    known = [name for name in names if name in modules]
    shapes = _output_shapes(model, known, input_shape)
    problems = []
    for name, shape in shapes.items():
        if shape is None or len(shape) != 3:
            problems.append(f"{name!r} gives {_describe(shape)}, not a C×H×W map")
        elif shape[1] * shape[2] == 1:
            problems.append(f"{name!r} is {_describe(shape)} with a 1×1 map")
    unknown = [repr(name) for name in names if name not in modules]
    if unknown:
        hint = ", ".join(discover_stages(model, input_shape)) or "none found"
        problems.append(f"not modules of the model: {', '.join(unknown)} (stage-like names: {hint})")
    if problems:
        raise MendnetError(f"unusable attention stages: {'; '.join(problems)}")
    return {name: (s[0], s[1], s[2]) for name, s in shapes.items() if s is not None}
