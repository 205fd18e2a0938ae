"""Neural Cleanse's figure: each label's reversed mask, pattern and trigger, and a true/reversed pair."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from mendnet.detect.reversed_trigger import ReversedTriggers
from mendnet.report.figure import png_bytes, pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def reversed_trigger_png(
    triggers: ReversedTriggers,
    classes: Sequence[str],
    threshold: float,
    comparison: Sequence[tuple[torch.Tensor, str]] = (),
) -> bytes:
    """PNG bytes: one column per label with its mask m, pattern Δ and trigger m⊙Δ (pixel space [0, 1]),
    titled with ‖m‖₁ (pixels) and the anomaly index; flagged labels in red. `comparison`: C×H×W images
    with titles for an extra row (e.g. a test image with the true trigger and with the reversed one)."""
    k = triggers.num_classes
    index = triggers.anomaly_index()
    flagged = set(triggers.flagged(threshold))
    rows = 3 + (1 if comparison else 0)
    cols = max(k, len(comparison))
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    masks = triggers.masks[:, None]
    shown = (("mask m", masks), ("pattern Δ", triggers.patterns), ("m⊙Δ", masks * triggers.patterns))
    for r, (name, images) in enumerate(shown):
        axes[r][0].set_ylabel(name, fontsize=7)
        for j in range(k):
            draw(axes[r][j], images[j])
    for j in range(k):
        a = f"{float(index[j]):.2f}" if torch.isfinite(index[j]) else "inf"
        mark = " FLAGGED" if j in flagged else ""
        axes[0][j].set_title(
            f"{j} {classes[j][:10]}\n‖m‖₁ {float(triggers.norms[j]):.1f}, a {a}{mark}",
            fontsize=6,
            color="red" if j in flagged else "black",
        )
    for j, (image, title) in enumerate(comparison):
        draw(axes[3][j], image)
        axes[3][j].set_title(title, fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_axis_off()
    fig.suptitle("Neural Cleanse: reversed trigger of each label", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def draw(ax: Axes, image: torch.Tensor) -> None:
    """Show one C×H×W image in [0, 1] (grey for one channel)."""
    pic = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
    ax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=1)
