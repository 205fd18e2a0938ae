"""matplotlib for the report's figures, imported on first use: importing it takes about half a second,
and most commands and library calls draw no figure (loading the CLI, the jobs or the API does not
import it)."""

from __future__ import annotations

import io
from types import ModuleType
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """`matplotlib.pyplot` on the non-interactive Agg backend (figures are only saved as PNG)."""
    import matplotlib  # on first use: see the module docstring

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # on first use: see the module docstring

    return plt


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """`fig` as PNG bytes at `dpi` dots per inch; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def draw(ax: Axes, image: torch.Tensor) -> None:
    """Show one C×H×W image in [0, 1] (grey for one channel)."""
    pic = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
    ax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=1)
