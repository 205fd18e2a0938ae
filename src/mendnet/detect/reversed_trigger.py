"""Reversed triggers: Neural Cleanse's trigger blend (NC eq. 1) and the per-label result, with its file.

File format (`reversed_trigger.safetensors`, metadata `format` = `mendnet-reversed-trigger/1`):
`masks` float32 K×H×W and `patterns` float32 K×C×H×W in pixel space [0, 1], `norms` float32 K (‖m‖₁ of
each label's mask, in pixels), `reached` bool K (the mask reached the attack-success threshold). The
anomaly index and the flagged labels are recomputed from `norms`.

Differences from the paper and the authors' release: docs/deviations.md#neural-cleanse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from mendnet.detect.outliers import ANOMALY_THRESHOLD, anomaly_index, flag_outliers
from mendnet.errors import MendnetError

FORMAT = "mendnet-reversed-trigger/1"
TRIGGER_FILE = "reversed_trigger.safetensors"
TRIGGER_PNG = "reversed_trigger.png"


def blend(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """A(x, m, Δ) = (1 − m)⊙x + m⊙Δ (NC eq. 1), all in pixel space [0, 1], broadcast over leading dims.

    x: …×C×H×W images; mask: …×1×H×W (one map shared by the channels); pattern: …×C×H×W. For x, m, Δ
    in [0, 1] the result is a convex combination, so it stays in [0, 1].
    """
    return (1.0 - mask) * x + mask * pattern


@dataclass(frozen=True)
class ReversedTriggers:
    """One reversed trigger per label: masks K×H×W and patterns K×C×H×W in [0, 1], norms K (‖m‖₁ in
    pixels), reached K (bool: the trigger sent ≥ the success threshold of images to its label)."""

    masks: torch.Tensor
    patterns: torch.Tensor
    norms: torch.Tensor
    reached: torch.Tensor

    def __post_init__(self) -> None:
        k = len(self.masks)
        if self.masks.dim() != 3 or self.patterns.dim() != 4:
            raise MendnetError("reversed trigger: masks must be K×H×W and patterns K×C×H×W")
        if len(self.patterns) != k or self.patterns.shape[-2:] != self.masks.shape[-2:]:
            raise MendnetError(
                f"reversed trigger: masks {tuple(self.masks.shape)} and patterns "
                f"{tuple(self.patterns.shape)} do not match"
            )
        if self.norms.shape != (k,) or self.reached.shape != (k,):
            raise MendnetError(f"reversed trigger: norms and reached must hold {k} values")
        for name, t in (("masks", self.masks), ("patterns", self.patterns)):
            if not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 1:
                raise MendnetError(f"reversed trigger: {name} must be finite and lie in [0, 1]")

    @property
    def num_classes(self) -> int:
        return len(self.masks)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the triggers apply to."""
        c, h, w = self.patterns.shape[1:]
        return (c, h, w)

    def anomaly_index(self) -> torch.Tensor:
        return anomaly_index(self.norms)

    def flagged(self, threshold: float = ANOMALY_THRESHOLD) -> list[int]:
        """Labels flagged as backdoor targets, smallest norm first: outliers (`flag_outliers`) whose trigger
        reached the success threshold (our choice: a trigger that does not work is no backdoor's, however
        small; the authors' release keeps no trigger for such a label)."""
        return [k for k in flag_outliers(self.norms, threshold) if self.reached[k]]

    def stamp(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Image i of the N×C×H×W batch x with the reversed trigger of label `labels[i]` (NC eq. 1)."""
        masks = self.masks.to(x.device, x.dtype)[labels, None]
        return blend(x, masks, self.patterns.to(x.device, x.dtype)[labels])

    def table(self, threshold: float = ANOMALY_THRESHOLD) -> list[dict[str, Any]]:
        """One JSON-able row per label: norm, anomaly index (None when infinite), reached, flagged."""
        index = self.anomaly_index()
        flagged = set(self.flagged(threshold))
        return [
            {
                "label": k,
                "norm": float(self.norms[k]),
                "anomaly_index": float(index[k]) if torch.isfinite(index[k]) else None,
                "reached": bool(self.reached[k]),
                "flagged": k in flagged,
            }
            for k in range(self.num_classes)
        ]

    def to_bytes(self) -> bytes:
        tensors = {
            "masks": self.masks.float().contiguous(),
            "patterns": self.patterns.float().contiguous(),
            "norms": self.norms.float().contiguous(),
            "reached": self.reached.bool().contiguous(),
        }
        return save(tensors, metadata={"format": FORMAT})

    @classmethod
    def load(cls, path: str | Path) -> ReversedTriggers:
        """Read `reversed_trigger.safetensors`, or that file inside a folder (a `mendnet detect` output or
        a neural-cleanse repair artefact)."""
        path = Path(path)
        if path.is_dir():
            path = path / TRIGGER_FILE
        if not path.is_file():
            raise MendnetError(f"reversed trigger file {path} is missing")
        try:
            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("format") != FORMAT:
                    raise MendnetError(f"{path} is not a reversed trigger file ({FORMAT})")
                t = {name: f.get_tensor(name) for name in ("masks", "patterns", "norms", "reached")}
        except (SafetensorError, OSError) as e:
            raise MendnetError(f"{path} is not a readable safetensors file: {e}") from e
        return cls(t["masks"].float(), t["patterns"].float(), t["norms"].float(), t["reached"].bool())
