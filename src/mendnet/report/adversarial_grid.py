"""A PNG grid of adversarial examples: clean image, adversarial image, amplified perturbation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mendnet.report.figure import png_bytes, pyplot


def perturbation_grid_png(
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    clean_pred: torch.Tensor,
    adv_pred: torch.Tensor,
    classes: Sequence[str],
    title: str = "",
) -> bytes:
    """One row per image: clean (with its prediction), adversarial (with its prediction), and the
    perturbation δ shown as 0.5 + δ / (2·max|δ|) so that grey means unchanged."""
    clean, adversarial = clean.detach().float().cpu(), adversarial.detach().float().cpu()
    delta = adversarial - clean
    scale = delta.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    shown = 0.5 + delta / (2 * scale)
    n = len(clean)
    plt = pyplot()
    fig, axes = plt.subplots(n, 3, figsize=(5.4, 1.9 * n), squeeze=False)
    for i in range(n):
        for j, (img, label) in enumerate(
            (
                (clean[i], f"clean: {classes[int(clean_pred[i])]}"),
                (adversarial[i], f"adv: {classes[int(adv_pred[i])]}"),
                (shown[i], f"δ ×{1 / (2 * float(scale[i])):.0f}, L∞ {float(delta[i].abs().max()):.3f}"),
            )
        ):
            pic = img.permute(1, 2, 0).squeeze(-1).numpy()
            axes[i][j].imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=1)
            axes[i][j].set_title(label, fontsize=7)
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)
