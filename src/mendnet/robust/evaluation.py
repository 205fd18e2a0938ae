"""The robustness report of every robustified model (issue 7): clean accuracy and robust accuracy under
FGSM, PGD-L∞ (7 and 20 steps), PGD-L2 (ε 0.25 and 0.5), CW-L∞ (20 steps), and the worst case over
them, from one `robust_accuracy` pass (per sample: correct under every attack). Fractions in [0, 1].

Differences from the paper and the authors' release: docs/deviations.md#robustness-report.
"""

from __future__ import annotations

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.robust.context import linf_budget
from mendnet.threats.adversarial import FGSM, PGDL2, Attack, CWLinf, PGDLinf, robust_accuracy


def report_attacks(eps: float, seed: int = 0) -> dict[str, Attack]:
    """The report's attacks, keyed by the metric names; L∞ ones at `eps`, steps ε/4
    (docs/methods.md §5, §6)."""
    return {
        "fgsm": FGSM(eps=eps, seed=seed),
        "pgd-linf-7": PGDLinf(eps=eps, steps=7, seed=seed),
        "pgd-linf-20": PGDLinf(eps=eps, steps=20, seed=seed),
        "pgd-l2-0.25": PGDL2(eps=0.25, seed=seed),
        "pgd-l2-0.5": PGDL2(eps=0.5, seed=seed),
        "cw-linf": CWLinf(eps=eps, steps=20, seed=seed),
    }


def robust_metrics(
    model: nn.Module,
    test: ImageSet,
    *,
    eps: float | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """{"acc", each attack's robust accuracy, "worst_case", "eps_linf", "eval_images"} of `model` (on
    `device`) over `test`. eps: the L∞ budget (default 0.1 on 28×28 greyscale, else 8/255)."""
    eps_linf = linf_budget(eps, test.shape)
    result = robust_accuracy(
        model,
        test,
        attacks=report_attacks(eps_linf, seed),
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    return {
        "acc": result.clean_acc,
        **result.per_attack,
        "worst_case": result.worst_case,
        "eps_linf": eps_linf,
        "eval_images": result.n,
    }
