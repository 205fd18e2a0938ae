"""The device a bench cell records: a CPU is named with its model and torch's kernel capability, since
two CPUs of other capabilities can train other weights from the same seed."""

from pathlib import Path

import pytest
import torch

from mendnet.device import cpu_name, device_label, resolve_device
from mendnet.errors import MendnetError


def test_cpu_label_names_the_model_and_the_capability(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core\n")
    capability = torch.backends.cpu.get_cpu_capability()
    assert cpu_name(info) == f"AMD EPYC 9R14 96-Core, {capability}"
    label = device_label(torch.device("cpu"))
    assert label.startswith("cpu (") and label.endswith(f"{capability})")


def test_cpu_label_without_cpuinfo_keeps_the_capability(tmp_path: Path) -> None:
    assert cpu_name(tmp_path / "missing").endswith(torch.backends.cpu.get_cpu_capability())


def test_unavailable_device_is_an_error() -> None:
    with pytest.raises(MendnetError, match="unknown device"):
        resolve_device("tpu")
