"""Random projections of an input Jacobian (Robust-KD, Zhang & Yi 2021; docs/methods.md §6).

For a stage output F (N×…) of an input x (N×C×H×W) and one vector M per sample over F's entries,
    M ᵀ J  with  J = ∂F/∂x
is one vector-Jacobian product, ∇ₓ Σ (M ⊙ F), so J is never formed. With M uniform on the unit
sphere of d = F's entries per sample, E‖Mᵀ J‖² = ‖J‖²_F / d.

Differences from the paper and the authors' release: docs/deviations.md#robust-kd.
"""

from __future__ import annotations

import torch


def random_unit(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per sample, a vector uniform on the unit sphere, shaped like `like` (N×…): Gaussian, normalised."""
    v = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    return v / v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))


def projected_jacobian(
    output: torch.Tensor, inputs: torch.Tensor, v: torch.Tensor, create_graph: bool = False
) -> torch.Tensor:
    """vᵀJ per sample (shaped like `inputs`) for J = ∂output/∂inputs, by one autograd.grad call.

    `inputs` must require grad and `output` depend on it sample by sample (no mixing across the batch,
    so BatchNorm must be in eval mode). create_graph: keep the graph, so the result can be trained on
    (the student's side); the graph of `output` is kept for further projections either way.
    """
    (vjp,) = torch.autograd.grad((output * v).sum(), inputs, create_graph=create_graph, retain_graph=True)
    return vjp


def jacobian_matching(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """‖MᵀJ_S − MᵀJ_T‖² summed over the input's entries, averaged over the batch (Robust-KD's β term)."""
    return (student - teacher).flatten(1).pow(2).sum(dim=1).mean()
