"""AI-Lancet's figure: erroneous inputs, their companions and masks, and the per-layer ablation
successes (docs/methods.md §4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mendnet.report.figure import draw, png_bytes, pyplot


def lancet_png(
    x_err: torch.Tensor,
    x_comp: torch.Tensor,
    masks: torch.Tensor,
    titles: Sequence[str],
    layer_successes: Sequence[tuple[str, int]],
    chosen: str,
    samples: int,
) -> bytes:
    """PNG bytes: one column per pair with the erroneous input x, its companion x' and the mask (N×C×H×W,
    N×C×H×W and N×1×H×W in pixel space [0, 1]), titled by `titles`; below, the number of the `samples`
    pairs that ablation corrected at each layer, the chosen layer in red."""
    n = len(x_err)
    plt = pyplot()
    fig = plt.figure(figsize=(max(1.4 * n, 6), 6.2))
    grid = fig.add_gridspec(4, max(n, 1), height_ratios=(1, 1, 1, 1.6))
    for j in range(n):
        for r, (name, images) in enumerate(
            (("erroneous x", x_err), ("companion x'", x_comp), ("mask", masks))
        ):
            ax = fig.add_subplot(grid[r, j])
            draw(ax, images[j].cpu())
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=7)
            if r == 0:
                ax.set_title(titles[j], fontsize=6)
    ax = fig.add_subplot(grid[3, :])
    names = [name for name, _ in layer_successes]
    ax.bar(
        range(len(names)),
        [count for _, count in layer_successes],
        color=["tab:red" if name == chosen else "tab:blue" for name in names],
    )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([name.removeprefix("net.") for name in names], rotation=60, ha="right", fontsize=6)
    ax.set_ylabel(f"corrected of {samples}", fontsize=7)
    ax.tick_params(axis="y", labelsize=6)
    fig.suptitle(f"AI-Lancet: erroneous pairs and ablation per layer (chosen: {chosen})", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)
