"""NAD's diagnostic figure: per-stage attention maps of the same (triggered) images under several models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mendnet.losses.attention import attention_map
from mendnet.models import Classifier, check_attention_stages
from mendnet.models.taps import FeatureTap
from mendnet.report.figure import png_bytes, pyplot


@torch.inference_mode()
def stage_attention(
    model: Classifier,
    x: torch.Tensor,
    stages: Sequence[str],
    operator: str = "pow-sum",
    p: float = 2.0,
) -> dict[str, torch.Tensor]:
    """N×H×W attention maps of each stage for a batch x in [0, 1] (model in eval mode)."""
    model.eval()
    with FeatureTap(model, stages) as feats:
        model(x)
    return {s: attention_map(feats[s].float(), operator, p).cpu() for s in stages}


def attention_grid_png(
    models: Mapping[str, Classifier], x: torch.Tensor, operator: str = "pow-sum", p: float = 2.0
) -> bytes:
    """PNG bytes: for each image a block of rows (one per model): the input, then each stage's map.

    Every model must have spatial (not 1×1) attention stages; each map is min-max scaled for display.
    """
    x = x.float().cpu()
    maps = {}
    for name, model in models.items():
        model = model.cpu()
        stages = model.stages
        check_attention_stages(model, stages, model.spec.input_shape)
        maps[name] = (stages, stage_attention(model, x, stages, operator, p))
    n_stage = max(len(s) for s, _ in maps.values())
    rows = len(x) * len(models)
    plt = pyplot()
    fig, axes = plt.subplots(rows, n_stage + 1, figsize=(1.6 * (n_stage + 1), 1.6 * rows), squeeze=False)
    for i in range(len(x)):
        for j, (name, (stages, amaps)) in enumerate(maps.items()):
            r = i * len(models) + j
            img = x[i].permute(1, 2, 0).squeeze(-1)
            axes[r][0].imshow(img.numpy(), cmap="gray" if img.dim() == 2 else None, vmin=0, vmax=1)
            axes[r][0].set_ylabel(name, fontsize=8)
            for k in range(n_stage):
                ax = axes[r][k + 1]
                if k < len(stages):
                    ax.imshow(amaps[stages[k]][i].numpy(), cmap="jet")
                    if r == 0:
                        ax.set_title(stages[k].split(".")[-1], fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[r][0].set_xticks([])
            axes[r][0].set_yticks([])
    fig.suptitle(f"attention A({operator}, p={p}) of triggered images", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (1.6 * rows)))  # leave the title its own band
    return png_bytes(fig)
