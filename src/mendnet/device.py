"""Device choice: `auto` picks cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from mendnet.errors import MendnetError


def resolve_device(name: str = "auto") -> torch.device:
    """The torch.device for `auto`, `cpu`, `cuda`, `cuda:N` or `mps`; an unavailable one is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise MendnetError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MendnetError("device cuda was asked for but no CUDA GPU is available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise MendnetError("device mps was asked for but MPS is not available")
    return dev
