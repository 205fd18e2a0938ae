"""Device choice (`auto` picks cuda, then mps, then cpu) and the name a device is recorded under."""

from __future__ import annotations

import platform
from pathlib import Path

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


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model and the instruction set torch's CPU kernels use ("AMD EPYC 9R14, AVX512"):
    the same seed on two CPUs of other capabilities can train other weights (float summation order)."""
    model = platform.processor()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
                break
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model}, {capability}" if model else capability


def device_label(device: torch.device) -> str:
    """The device a computation ran on, as records and the docs name it ("cpu (AMD EPYC 9R14, AVX512)",
    "cuda:0 (NVIDIA H200)")."""
    if device.type == "cuda":
        return f"{device.type}:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({cpu_name()})"
    return device.type
