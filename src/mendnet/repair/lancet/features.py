"""Differential and EI features at one layer, and weight importance (Zhao et al., CCS 2021, §4.2–4.3;
methods.md §4 steps 2–4).

For an erroneous input x, its companion x' and the true label y, at layer L with output f_L:

    df = f_L(x) − f_L(x')                                        (differential feature)
    g  = |∂CE(f(x), y)/∂δ|  with L's output replaced by f_L(x') + δ, δ = df   (so the forward is f(x))
    G  = g / max(g)   (per sample; G = 0 where g is 0 everywhere)
    EI = df ⊙ (G + α),  α = 0.5                                  (error-inducing feature)
    s(w) = |∂‖EI‖₂ / ∂w|  for each weight w of L (not multiplied by w; biases ignored)

Our choice where the paper is silent: in s(w), G is held constant (a first-order importance; G's own
dependence on w through f_L(x') is a second derivative the paper does not mention). Because conv and
linear layers are linear in their input, the bias cancels in df, and ‖EI‖ depends on w only through
L's two inputs, so every sample's importance is one small gradient, vectorised over samples with
`torch.func.vmap`. Units: features in the layer's own units; s(w) in those units per unit of weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from mendnet.repair.lancet.layers import evaluating, layer_io, replace_output

EI_ALPHA = 0.5


@dataclass(frozen=True)
class EIFeatures:
    """Per-sample features at one layer (leading dimension N): df and EI in the layer's output shape,
    G in [0, 1] of the same shape, and the layer's inputs for x (`inputs_err`) and x' (`inputs_comp`)."""

    df: torch.Tensor
    gain: torch.Tensor
    ei: torch.Tensor
    inputs_err: torch.Tensor
    inputs_comp: torch.Tensor
    alpha: float


def normalised_gain(g: torch.Tensor) -> torch.Tensor:
    """G = g / max(g), the maximum taken per sample over all of its positions (pure); a sample whose g
    is all zero gets G = 0."""
    peak = g.flatten(1).amax(1).clamp_min(torch.finfo(g.dtype).tiny)
    return g / peak.view(-1, *([1] * (g.dim() - 1)))


def ei_from(df: torch.Tensor, gain: torch.Tensor, alpha: float = EI_ALPHA) -> torch.Tensor:
    """EI = df ⊙ (G + α) (pure)."""
    return df * (gain + alpha)


def ei_features(
    model: nn.Module,
    layer: nn.Module,
    x_err: torch.Tensor,
    x_comp: torch.Tensor,
    y_true: torch.Tensor,
    alpha: float = EI_ALPHA,
) -> EIFeatures:
    """EI features of the pairs (x_err[i], x_comp[i]) at `layer` of `model` (run in eval mode, weights
    not changed). x in pixel space [0, 1], y_true int64 N."""
    with evaluating(model):
        in_comp, f_comp = layer_io(model, layer, x_comp)
        in_err, f_err = layer_io(model, layer, x_err)
        delta = (f_err - f_comp).requires_grad_()
        handle = replace_output(layer, lambda _inp, _out: f_comp + delta)
        try:
            with torch.enable_grad():
                loss = F.cross_entropy(model(x_err), y_true, reduction="sum")
                (g,) = torch.autograd.grad(loss, delta)
        finally:
            handle.remove()
    df = delta.detach()
    gain = normalised_gain(g.abs())
    return EIFeatures(df, gain, ei_from(df, gain, alpha), in_err, in_comp, alpha)


def weight_importance(layer: nn.Module, features: EIFeatures, chunk_size: int | None = 64) -> torch.Tensor:
    """s(w) = |∂‖EI‖₂/∂w| per sample: N × layer.weight.shape, with G held constant (module docstring).

    chunk_size: samples per vectorised chunk (bounds memory: chunk_size × the weight's size)."""
    weight = layer.weight.detach()
    scale = features.gain + features.alpha

    def ei_norm(w: torch.Tensor, a_err: torch.Tensor, a_comp: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out_err = functional_call(layer, {"weight": w}, (a_err[None],))
        out_comp = functional_call(layer, {"weight": w}, (a_comp[None],))
        return torch.linalg.vector_norm((out_err - out_comp)[0] * c)

    per_sample = vmap(grad(ei_norm), in_dims=(None, 0, 0, 0), chunk_size=chunk_size)
    return per_sample(weight, features.inputs_err, features.inputs_comp, scale).abs()
