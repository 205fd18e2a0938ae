"""A planted backdoor's preview (`trigger.png` of `mendnet train --attack` and `mendnet poison`): a
training image before and after poisoning, a test image before and after the trigger."""

from __future__ import annotations

from typing import Any

import torch

from mendnet.data.imageset import ImageSet
from mendnet.evaluate import BackdoorTest
from mendnet.report.figure import draw, png_bytes, pyplot
from mendnet.threats.backdoor import Planted


def trigger_png(clean: ImageSet, planted: Planted, backdoor: BackdoorTest | None) -> bytes:
    """One row of four images: the first poisoned training image before and after poisoning (as trained
    on: CL's includes its PGD perturbation), then the first backdoor test image before and after the
    test-time trigger. Panels without an image (nothing poisoned) are left out."""
    panels: list[tuple[torch.Tensor, str]] = []
    if len(planted.positions):
        p = planted.positions[:1]
        label = planted.record.original_labels[0]
        now = int(planted.data.labels[p])
        panels += [
            (clean.float_images(p)[0], f"train, clean (y={label})"),
            (planted.data.float_images(p)[0], f"train, poisoned (y={now})"),
        ]
    if backdoor is not None and len(backdoor.data):
        x = backdoor.data.float_images(torch.arange(1))
        panels += [(x[0], "test, clean"), (backdoor.trigger.apply(x)[0], "test, triggered")]
    plt = pyplot()
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(1.7 * max(1, len(panels)), 2.0), squeeze=False)
    for ax, (img, title) in zip(axes[0], panels, strict=False):
        draw(ax, img)
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{planted.record.attack}: {caption(planted.record.params)}", fontsize=6)
    fig.tight_layout()
    return png_bytes(fig)


def caption(params: dict[str, Any]) -> str:
    """Parameters as "k=v, …": floats to 4 significant digits, lists (patterns, pools, patches) by length."""

    def show(v: Any) -> str:
        if isinstance(v, list):
            return f"(list of {len(v)})"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={show(v)}" for k, v in params.items())
