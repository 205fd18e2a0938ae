"""The one registry of methods: name → Method (Config dataclass with the paper's defaults, run function,
and what the method can use: a teacher, a reversed trigger, the recorded trigger as an oracle).

The CLI's `repair` and `robustify` sub-commands (their flags, which take `--teacher`), the audit's
advice, mend's candidates and the benchmark grids (which cells get a teacher) are generated from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from mendnet.repair import fineprune, finetune, fst, mcr, nad, neural_cleanse
from mendnet.repair.lancet import repair as lancet
from mendnet.robust import agkd_bml, fgsm_rs, pgd_at, robust_kd, shafahi_kd, trades

Teacher = Literal["optional", "natural", "robust"]


@dataclass(frozen=True)
class Method:
    """A registered method and its declared capabilities.

    teacher: None (the method takes no teacher), "optional" (a repair that builds its own when none is
    given: NAD's attention teacher, MCR's endpoint), "natural" or "robust" (a robustifier that distils
    a required teacher of that kind). uses_trigger: the method repairs with a reversed trigger (its
    config's `trigger` field takes a reversed-trigger file; `mendnet mend` hands it the scan's).
    """

    name: str
    summary: str
    config: type
    run: Callable[..., Any]
    teacher: Teacher | None = None
    uses_trigger: bool = False

    @property
    def oracle(self) -> bool:
        """Whether the method can be run with the recorded (true) trigger: its config has an
        `oracle_trigger` field (off by default; the output then records `"oracle": true`)."""
        return "oracle_trigger" in {f.name for f in fields(self.config)}


REPAIRS: dict[str, Method] = {
    "finetune": Method(
        "finetune",
        "fine-tune all layers on defender data (baseline)",
        finetune.Config,
        finetune.run,
    ),
    "fst": Method(
        "fst",
        "Feature Shift Tuning: re-initialise the head, fine-tune away from it (Min et al., NeurIPS 2023)",
        fst.Config,
        fst.run,
    ),
    "nad": Method(
        "nad", "Neural Attention Distillation (Li et al., ICLR 2021)", nad.Config, nad.run, teacher="optional"
    ),
    "fineprune": Method(
        "fineprune",
        "Fine-pruning: prune dormant last-layer channels, then fine-tune (Liu et al., RAID 2018)",
        fineprune.Config,
        fineprune.run,
    ),
    "mcr": Method(
        "mcr",
        "Mode Connectivity Repair: a point on a curve to a fine-tuned copy (Zhao et al., ICLR 2020)",
        mcr.Config,
        mcr.run,
        teacher="optional",
    ),
    "neural-cleanse": Method(
        "neural-cleanse",
        "Neural Cleanse: reverse the trigger, then unlearn it (Wang et al., S&P 2019)",
        neural_cleanse.Config,
        neural_cleanse.run,
        uses_trigger=True,
    ),
    "lancet-flip": Method(
        "lancet-flip",
        "AI-Lancet neuron-flip: flip the signs of the error-inducing weights (Zhao et al., CCS 2021)",
        lancet.FlipConfig,
        lancet.run_flip,
        uses_trigger=True,
    ),
    "lancet-finetune": Method(
        "lancet-finetune",
        "AI-Lancet neuron fine-tuning: train only the error-inducing weights (Zhao et al., CCS 2021)",
        lancet.FinetuneConfig,
        lancet.run_finetune,
        uses_trigger=True,
    ),
}

ROBUSTIFIERS: dict[str, Method] = {
    "pgd-at": Method(
        "pgd-at", "PGD adversarial training (Madry et al., ICLR 2018)", pgd_at.Config, pgd_at.run
    ),
    "trades": Method(
        "trades", "TRADES: CE + β·KL to PGD examples (Zhang et al., ICML 2019)", trades.Config, trades.run
    ),
    "fgsm-rs": Method(
        "fgsm-rs",
        "fast adversarial training, FGSM from a random start (Wong et al., ICLR 2020)",
        fgsm_rs.Config,
        fgsm_rs.run,
    ),
    "shafahi": Method(
        "shafahi",
        "distil a robust teacher's penultimate features (Shafahi et al., ICLR 2020)",
        shafahi_kd.Config,
        shafahi_kd.run,
        teacher="robust",
    ),
    "robust-kd": Method(
        "robust-kd",
        "distil a robust teacher's stage features and input Jacobians (Zhang & Yi, 2021)",
        robust_kd.Config,
        robust_kd.run,
        teacher="robust",
    ),
    "agkd-bml": Method(
        "agkd-bml",
        "attention-guided distillation + bidirectional metric learning (Wang et al., ICCV 2021)",
        agkd_bml.Config,
        agkd_bml.run,
        teacher="natural",
    ),
}
