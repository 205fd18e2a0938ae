"""The README's Python blocks run as written, on a small artefact and small arrays that this test makes.

Method settings are shortened (one epoch) by patching the config classes the blocks import, and the
artefact block's test set to 2,000 images: the test checks that the documented calls work and return
what the README says, not how well they repair."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mendnet.artefact import save_artefact
from mendnet.registry import REPAIRS
from mendnet.repair import nad

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


class TwoStageNet(nn.Module):
    """A user's own model: two conv stages at 14 and 7 px, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(x)))


@pytest.fixture
def short_nad(monkeypatch):
    """nad.Config with one teacher and one student epoch, as the blocks' `nad.Config(...)` builds it."""
    short = dataclasses.make_dataclass(
        "Config",
        [("epochs", int, 1), ("teacher_epochs", int, 1)],
        bases=(nad.Config,),
        frozen=True,
    )
    monkeypatch.setattr(nad, "Config", short)
    monkeypatch.setitem(REPAIRS, "nad", dataclasses.replace(REPAIRS["nad"], config=short))


def test_readme_has_the_blocks_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) == 2
    assert "repair_model(load_artefact(" in blocks[0] and "mendnet.wrap(" in blocks[1]


@pytest.fixture
def short_test_set(fmnist, monkeypatch):
    """Fashion-MNIST as the session loaded it, with the first 2,000 test images: the block measures the
    model before and after the repair, and the full test set would be most of this test's time."""
    from mendnet.data.ref import DataRef

    train, test = fmnist
    monkeypatch.setattr(DataRef, "load", lambda self: (train, test.subset(torch.arange(2000))))


def test_artefact_block_runs(backdoored, tmp_path, short_nad, short_test_set, capsys):
    folder = save_artefact(tmp_path / "backdoored", backdoored.model, backdoored.meta, backdoored.metrics)
    code = python_blocks()[0].replace('"runs/demo/backdoored"', repr(str(folder)))
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    for key in ("'acc'", "'asr'", "'der'", "'before'", "'seconds'"):
        assert key in printed


def test_own_model_block_runs(short_nad, tmp_path, capsys):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(600, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=600)
    scope = {
        "net": TwoStageNet(),
        "x_clean": x[:400],
        "y_clean": y[:400],
        "x_test": x[400:],
        "y_test": y[400:],
    }
    exec(compile(python_blocks()[1], "README.md", "exec"), scope)
    metrics, report = scope["metrics"], scope["report"]
    assert 0.0 <= metrics["acc"] <= 1.0
    assert isinstance(report, dict) and report
    assert "worst_case" in capsys.readouterr().out
