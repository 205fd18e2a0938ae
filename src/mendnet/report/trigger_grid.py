"""Neural Cleanse's figure: each label's reversed mask, pattern and trigger, and a true/reversed pair."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mendnet.detect.reversed_trigger import ReversedTriggers
from mendnet.report.figure import png_bytes, pyplot


def reversed_trigger_png(
    triggers: ReversedTriggers,
    classes: Sequence[str],
    threshold: float,
    comparison: Sequence[tuple[torch.Tensor, str]] = (),
) -> bytes:
    """PNG bytes: one column per label with its mask m, pattern Δ and trigger m⊙Δ (pixel space [0, 1]),
    titled with ‖m‖₁ (pixels) and the anomaly index; flagged labels in red. `comparison`: C×H×W images
    with titles for an extra row (e.g. a test image with the true trigger and with the reversed one).
    Drawn as one mosaic image on one axes (a grid of one axes per picture took 0.3-0.5 s a figure)."""
    k = triggers.num_classes
    index = triggers.anomaly_index()
    flagged = set(triggers.flagged(threshold))
    masks = triggers.masks[:, None]
    shown = [("mask m", masks), ("pattern Δ", triggers.patterns), ("m⊙Δ", masks * triggers.patterns)]
    rows: list[list[torch.Tensor]] = [list(images) for _, images in shown]
    if comparison:
        rows.append([image for image, _ in comparison])
    canvas, boxes = mosaic(rows)
    height = 1.45 * len(rows)
    top = 1 - 0.5 / height  # room for the first row's titles and the suptitle (inches → figure fraction)
    width = (height * top) * canvas.shape[1] / canvas.shape[0] / 0.94 + 0.3
    plt = pyplot()
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0.3 / width, 0.01, 1 - 0.35 / width, top))
    grey = canvas.shape[-1] == 1
    ax.imshow(canvas.squeeze(-1) if grey else canvas, cmap="gray" if grey else None, vmin=0, vmax=1)
    for r, (name, _) in enumerate(shown):
        top, left, h, _ = boxes[r][0]
        ax.text(left - 2, top + h / 2, name, ha="right", va="center", rotation=90, fontsize=7)
    for j in range(k):
        a = f"{float(index[j]):.2f}" if torch.isfinite(index[j]) else "inf"
        mark = " FLAGGED" if j in flagged else ""
        top, left, _, w = boxes[0][j]
        title = f"{j} {classes[j][:10]}\n‖m‖₁ {float(triggers.norms[j]):.1f}, a {a}{mark}"
        color = "red" if j in flagged else "black"
        ax.text(left + w / 2, top - 1, title, ha="center", va="bottom", fontsize=6, color=color)
    for j, (_, title) in enumerate(comparison):
        top, left, _, w = boxes[3][j]
        ax.text(left + w / 2, top - 1, title, ha="center", va="bottom", fontsize=6)
    ax.set_axis_off()
    fig.suptitle("Neural Cleanse: reversed trigger of each label", fontsize=8)
    return png_bytes(fig)


Box = tuple[int, int, int, int]
"""A picture's (top, left, height, width) on a mosaic, in canvas pixels."""


def mosaic(rows: Sequence[Sequence[torch.Tensor]]) -> tuple[np.ndarray, list[list[Box]]]:
    """The C×H×W images of `rows` (in [0, 1]; one or three channels, all of one size) on one white
    canvas H'×W'×C (C = 3 when any image has three channels), with a gap between pictures and room for a
    title above each row; and each picture's (top, left, height, width) in canvas pixels (pure)."""
    h, w = rows[0][0].shape[-2:]
    channels = 3 if any(image.shape[0] == 3 for row in rows for image in row) else 1
    gap, title = max(1, w // 6), max(2, h // 2)
    cols = max(len(row) for row in rows)
    canvas = np.ones((len(rows) * (h + title), cols * (w + gap) - gap, channels), dtype=np.float32)
    boxes: list[list[Box]] = []
    for r, row in enumerate(rows):
        top = r * (h + title) + title
        boxes.append([])
        for j, image in enumerate(row):
            left = j * (w + gap)
            pic = image.detach().float().cpu().clamp(0, 1).expand(channels, h, w).permute(1, 2, 0)
            canvas[top : top + h, left : left + w] = pic.numpy()
            boxes[r].append((top, left, h, w))
    return canvas, boxes
