"""Attention maps of feature tensors and their distances (NAD, Li et al. ICLR 2021, §3 of docs/methods.md).

For a stage output F with C channels (N×C×H×W), the attention operators of NAD's §3.2 are
    A_sum(F)    = Σ_c |F_c|
    A^p_sum(F)  = Σ_c |F_c|^p
    A^p_mean(F) = (1/C) Σ_c |F_c|^p
each giving an N×H×W map. Maps are flattened and divided by their L2 norm before comparison.

Differences from the paper and the authors' release: docs/deviations.md#nad.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mendnet.errors import MendnetError

OPERATORS = ("sum", "pow-sum", "pow-mean")
DISTANCES = ("mean-squared", "l2")
NORM_EPS = 1e-12


def attention_map(features: torch.Tensor, operator: str = "pow-sum", p: float = 2.0) -> torch.Tensor:
    """N×H×W attention map of N×C×H×W features by one of NAD's operators (p ignored for `sum`)."""
    if features.dim() != 4:
        raise MendnetError(f"attention needs N×C×H×W features, got shape {tuple(features.shape)}")
    mag = features.abs()
    if operator == "sum":
        return mag.sum(1)
    if operator not in OPERATORS:
        raise MendnetError(f"unknown attention operator {operator!r}; choose {', '.join(OPERATORS)}")
    if p <= 1:
        raise MendnetError(f"attention power p must be > 1 for {operator}, got {p}")
    powered = mag.pow(p)
    return powered.sum(1) if operator == "pow-sum" else powered.mean(1)


def normalized_attention(
    features: torch.Tensor,
    operator: str = "pow-sum",
    p: float = 2.0,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """N×(H·W) attention vectors of unit L2 norm; `size` resizes the map first (bilinear), for a teacher
    of another architecture whose stage resolution differs from the student's."""
    amap = attention_map(features, operator, p)
    if size is not None and tuple(amap.shape[-2:]) != tuple(size):
        amap = F.interpolate(amap[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = amap.flatten(1)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)


def attention_distance(
    a_student: torch.Tensor, a_teacher: torch.Tensor, form: str = "mean-squared"
) -> torch.Tensor:
    """Distance of normalised attention vectors (N×P), averaged over the batch.

    mean-squared: (1/P)·‖a_S − a_T‖² — the authors' released form, for which NAD's β were tuned.
    l2: ‖a_S − a_T‖₂ — the paper's equation (2).
    """
    diff = a_student - a_teacher
    if form == "mean-squared":
        return diff.pow(2).mean(1).mean()
    if form == "l2":
        return diff.norm(dim=1).mean()
    raise MendnetError(f"unknown attention distance {form!r}; choose {', '.join(DISTANCES)}")
