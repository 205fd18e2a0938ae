"""KL terms of adversarial training: TRADES (Zhang et al., ICML 2019) and MART (Wang et al., ICLR 2020).

Inputs are logits N×K; results are per-sample (N) or batch means, in nats.

Differences from the paper and the authors' release: docs/deviations.md#agkd-bml.
"""

from __future__ import annotations

import torch


def kl_per_sample(reference: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(reference) ‖ softmax(logits)) per sample (N)."""
    log_p = reference.log_softmax(dim=1)
    return (log_p.exp() * (log_p - logits.log_softmax(dim=1))).sum(dim=1)


def trades_kl(clean: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    """TRADES's robust term KL(f(x) ‖ f(x′)) averaged over the batch (Eq. 5's regulariser, without β)."""
    return kl_per_sample(clean, adversarial).mean()


def mart_loss(clean: torch.Tensor, adversarial: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """MART (Wang et al. 2020, Eq. 9) beyond the CE: boosted margin −log(1 − max_{k≠y} p_k(x′)) plus
    β · KL(p(x) ‖ p(x′)) · (1 − p_y(x)), averaged over the batch."""
    p_adv = adversarial.softmax(dim=1)
    other = p_adv.scatter(1, y.unsqueeze(1), 0.0).amax(dim=1)
    margin = -torch.log((1.0 - other).clamp_min(1e-12))
    p_true = clean.softmax(dim=1).gather(1, y.unsqueeze(1)).squeeze(1)
    return (margin + beta * kl_per_sample(clean, adversarial) * (1.0 - p_true)).mean()
