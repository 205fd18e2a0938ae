"""Adversarial attacks in pixel space [0, 1] and robust accuracy (docs/methods.md §5).

`ATTACKS` maps each attack's registry name to its class; the CLI is generated from it.
"""

from mendnet.threats.adversarial.autoattack import AutoAttack, AutoAttackL2, AutoAttackRun
from mendnet.threats.adversarial.base import Attack
from mendnet.threats.adversarial.cw import CWL2, CWLinf, margin_loss
from mendnet.threats.adversarial.fgsm import FGSM
from mendnet.threats.adversarial.mifgsm import MIFGSM
from mendnet.threats.adversarial.pgd import PGD, PGDL2, PGDLinf
from mendnet.threats.adversarial.registry import ATTACKS, make_attack
from mendnet.threats.adversarial.robust_accuracy import RobustResult, robust_accuracy

__all__ = [
    "ATTACKS",
    "CWL2",
    "FGSM",
    "MIFGSM",
    "PGD",
    "PGDL2",
    "Attack",
    "AutoAttack",
    "AutoAttackL2",
    "AutoAttackRun",
    "CWLinf",
    "PGDLinf",
    "RobustResult",
    "make_attack",
    "margin_loss",
    "robust_accuracy",
]
