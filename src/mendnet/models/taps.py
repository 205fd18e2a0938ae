"""Feature taps: read the outputs of named modules during a forward pass, by forward hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType

import torch
from torch import nn

from mendnet.errors import MendnetError


def missing_modules_message(model: nn.Module, names: Sequence[str]) -> str | None:
    """None when every name is a module of `model`; else one line naming each missing one and
    what its nearest existing parent contains."""
    modules = dict(model.named_modules())
    parts = []
    for name in names:
        if name in modules:
            continue
        parent = name
        while parent and parent not in modules:
            parent = parent.rpartition(".")[0]
        children = ", ".join(child for child, _ in modules[parent].named_children())
        where = repr(parent) if parent else type(model).__name__
        parts.append(f"{name!r} is not a module ({where} contains: {children})")
    return "; ".join(parts) if parts else None


@contextmanager
def hooks_removed(handles: Sequence[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    """Context manager: remove the hooks `handles` on exit, also when the body raises."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class FeatureTap:
    """Context manager that records the outputs of the modules `names` (as in named_modules()).

    `with FeatureTap(model, ["block1", "block2"]) as features: model(x)` leaves each module's
    output in `features[name]`. Every forward overwrites the entries (a module called twice in one
    forward keeps its last output). Outputs keep their autograd graph unless `detach` is True. The
    hooks are removed on exit, also when the body raises. An unknown name is a MendnetError.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], detach: bool = False) -> None:
        message = missing_modules_message(model, names)
        if message:
            raise MendnetError(f"cannot tap {type(model).__name__}: {message}")
        self.model = model
        self.names = tuple(names)
        self.detach = detach
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.features[name] = output.detach() if self.detach else output

        return record

    def __enter__(self) -> dict[str, torch.Tensor]:
        self.features = {}
        for name in self.names:
            module = self.model.get_submodule(name)
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self.features

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
