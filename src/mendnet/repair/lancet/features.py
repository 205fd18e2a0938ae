"""Differential and EI features at one layer, and weight importance (Zhao et al., CCS 2021, §4.2–4.3;
docs/methods.md §4 steps 2–4).

For an erroneous input x, its companion x' and the true label y, with f_L the features at the chosen
layer L's feature point (below) and W the weights of L:

    df = f_L(x) − f_L(x')                                          (differential feature)
    g  = |∂CE(f(x), y)/∂δ|  with f_L replaced by f_L(x') + δ, δ = df  (so the forward is f(x))
    G  = g / max(g)   (per sample, the maximum over all of f_L's positions; G = 0 where g is 0)
    EI = df ⊙ (G + α),  α = 0.5                                    (error-inducing feature)
    s(w) = |∂‖EI(W)‖₂ / ∂w|  for each weight w of L, with EI(W) = (f_L(x; W) − f_L(x')) ⊙ (G + α)
           and f_L(x'), G held constant; s is not multiplied by w; biases are ignored.

What the authors' release does (github.com/mooncaptain/AI-Lancet: `Locate_EIneurons.py` and
`Youtube_net2_delta.py` for BadNets/YouTube-Face, `debug_all_layer_delta_trigger.py` and `VGG_net.py`
for the Trojan/VGG-Face models):
- f_L(x') is computed once and passed in detached (`feature_norm.data`), so the importance differentiates
  only the erroneous pass: for a linear layer read at its output (input a), ∂‖EI‖/∂W =
  ((EI ⊙ (G+α))/‖EI‖) ⊗ a(x), not ⊗ (a(x) − a(x')).
- G is `|delta.grad| / max|delta.grad|` from a backward of the cross-entropy on the true label, then
  used as a constant factor in ‖EI‖ (it comes from a leaf tensor's `.grad`).
- f_L is the output of the small `nn.Sequential` holding the layer: conv → ReLU [→ max-pool],
  linear → ReLU [→ dropout], the logits layer alone. `layers.feature_site` finds the same point in our
  models (a conv-BN-ReLU[-pool] unit of a VGG or small-CNN stage, a linear-ReLU of a head), and the
  output of the residual block for a layer inside one (our choice: the release has no residual net).
- α = 0.5 in the YouTube-Face scripts; the VGG-Face script has `+0.5` commented out (α = 0). We keep 0.5.
- s(w) is the absolute gradient of ‖EI‖₂ with respect to the layer's weight (`parameters()[2·layer]`).

Options (ours): `feature_point="layer"` reads f_L at the layer's raw output (conv or linear before any
BN/activation); `companion="differentiated"` in `weight_importance` differentiates ‖EI‖ through both
passes, EI(W) = (f_L(x; W) − f_L(x'; W)) ⊙ (G + α): both are this module's earlier behaviour, kept to
measure the difference. Which pass is differentiated is settled here by the release, not by the paper's
formulas (the paper itself was not at hand when this was written).

Computation: the feature point's input does not depend on W, so every sample's importance is one gradient
through the site alone (the block or unit, via `torch.func.functional_call`), vectorised over samples with
`torch.func.vmap` in chunks; BatchNorm uses its running statistics (eval mode). Units: features in the
feature point's units; s(w) in those units per unit of weight.

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from mendnet.errors import MendnetError
from mendnet.repair.lancet.layers import (
    FeaturePoint,
    FeatureSite,
    evaluating,
    feature_site,
    layer_io,
    replace_output,
)

EI_ALPHA = 0.5

Companion = Literal["constant", "differentiated"]
COMPANIONS = ("constant", "differentiated")


@dataclass(frozen=True)
class EIFeatures:
    """Per-sample features at one feature point (leading dimension N): df and EI in f_L's shape, G in
    [0, 1] of the same shape, f_L(x') (`comp_out`), and the feature point's inputs for x (`inputs_err`)
    and x' (`inputs_comp`); `site` says where f_L is read."""

    df: torch.Tensor
    gain: torch.Tensor
    ei: torch.Tensor
    inputs_err: torch.Tensor
    inputs_comp: torch.Tensor
    alpha: float
    comp_out: torch.Tensor
    site: FeatureSite


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
    feature_point: FeaturePoint = "block",
) -> EIFeatures:
    """EI features of the pairs (x_err[i], x_comp[i]) at the feature point of `layer` in `model` (run in
    eval mode, weights not changed). x in pixel space [0, 1], y_true int64 N. feature_point: "block"
    (the release's, default) or "layer" (the layer's raw output); see `layers.feature_site`."""
    with evaluating(model):
        site = feature_site(model, layer, x_comp[:1], feature_point)
        in_comp, f_comp = layer_io(model, site.entry, x_comp, site.exit)
        in_err, f_err = layer_io(model, site.entry, x_err, site.exit)
        delta = (f_err - f_comp).requires_grad_()
        handle = replace_output(site.exit, lambda _inp, _out: f_comp + delta)
        try:
            with torch.enable_grad():
                loss = F.cross_entropy(model(x_err), y_true, reduction="sum")
                (g,) = torch.autograd.grad(loss, delta)
        finally:
            handle.remove()
    df = delta.detach()
    gain = normalised_gain(g.abs())
    return EIFeatures(df, gain, ei_from(df, gain, alpha), in_err, in_comp, alpha, f_comp, site)


def weight_importance(
    layer: nn.Module,
    features: EIFeatures,
    chunk_size: int | None = 64,
    companion: Companion = "constant",
) -> torch.Tensor:
    """s(w) = |∂‖EI‖₂/∂w| per sample: N × layer.weight.shape, with G held constant (module docstring).

    companion: "constant" (the release's, default): f_L(x') is a constant; "differentiated": ‖EI‖ is
    differentiated through the companion's pass too. chunk_size: samples per vectorised chunk (bounds
    memory: chunk_size × (the weight's size + the site's activations))."""
    if companion not in COMPANIONS:
        raise MendnetError(f"companion must be one of {', '.join(COMPANIONS)}, got {companion!r}")
    site = features.site
    if site.layer is not layer:
        raise MendnetError("these features were computed for another layer")
    weight = layer.weight.detach()
    scale = features.gain + features.alpha

    def through(w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return functional_call(site.module, {site.weight_key: w}, (a[None],))[0]

    def ei_norm_constant(w: torch.Tensor, a_err: torch.Tensor, f_comp: torch.Tensor, c: torch.Tensor):
        return torch.linalg.vector_norm((through(w, a_err) - f_comp) * c)

    def ei_norm_both(w: torch.Tensor, a_err: torch.Tensor, a_comp: torch.Tensor, c: torch.Tensor):
        return torch.linalg.vector_norm((through(w, a_err) - through(w, a_comp)) * c)

    if companion == "constant":
        fn, reference = ei_norm_constant, features.comp_out
    else:
        fn, reference = ei_norm_both, features.inputs_comp
    per_sample = vmap(grad(fn), in_dims=(None, 0, 0, 0), chunk_size=chunk_size)
    # no_grad: the site's other parameters (BN, bias) build no graph; torch.func.grad ignores it for w
    with evaluating(site.module), torch.no_grad():
        return per_sample(weight, features.inputs_err, reference, scale).abs()
