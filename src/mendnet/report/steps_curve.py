"""Accuracy as the PGD-L∞ step count grows (Robust-KD's accuracy-vs-steps figure, docs/methods.md §6), and
its PNG. A curve that keeps falling with more steps means the model's robustness was not converged
against; a flat one with a low worst case elsewhere hints at gradient masking.

Differences from the paper and the authors' release: docs/deviations.md#robustness-report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import accuracy
from mendnet.report.figure import png_bytes, pyplot
from mendnet.threats.adversarial import make_attack, robust_accuracy


def parse_steps(text: str) -> tuple[int, ...]:
    """Step counts from "0,7,25,100": distinct integers ≥ 0, sorted; MendnetError otherwise."""
    try:
        steps = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise MendnetError(
            f"steps curve needs comma-separated integers such as 0,7,25,100, got {text!r}"
        ) from None
    if not steps or steps[0] < 0:
        raise MendnetError(f"steps curve needs step counts ≥ 0, got {text!r}")
    return tuple(steps)


def accuracy_vs_steps(
    model: nn.Module,
    test: ImageSet,
    steps: Sequence[int],
    *,
    settings: Mapping[str, Any],
    device: torch.device | str = "cpu",
    batch_size: int = 250,
    progress: bool = True,
) -> dict[int, float]:
    """Accuracy (fraction) under PGD-L∞ with each step count (0: clean accuracy); `settings` are the
    attack's other settings (eps default: 0.1 on 28×28 greyscale, else 8/255). `model` is on `device`."""
    curve: dict[int, float] = {}
    for n in steps:
        if n == 0:
            curve[n] = accuracy(model, test, device=device)
            continue
        attack = make_attack("pgd-linf", test.shape, **{**settings, "steps": n})
        result = robust_accuracy(
            model, test, attacks={"pgd": attack}, batch_size=batch_size, device=device, progress=progress
        )
        curve[n] = result.per_attack["pgd"]
    return curve


def steps_curve_png(curve: Mapping[int, float], title: str = "") -> bytes:
    """A line plot of accuracy (percent) against PGD steps (symlog axis, so 0 steps is shown)."""
    xs = sorted(curve)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    ax.plot(xs, [100 * curve[s] for s in xs], marker="o")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(xs, [str(s) for s in xs])
    ax.set_xlabel("PGD-L∞ steps")
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return png_bytes(fig, dpi=120)
