"""Attack registry (name → class) and construction from loose settings, as the CLI and jobs need it.

Differences from the paper and the authors' release: docs/deviations.md#adversarial-attacks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mendnet.errors import MendnetError
from mendnet.threats.adversarial.autoattack import AutoAttack, AutoAttackL2
from mendnet.threats.adversarial.base import Attack
from mendnet.threats.adversarial.cw import CWL2, CWLinf
from mendnet.threats.adversarial.fgsm import FGSM
from mendnet.threats.adversarial.mifgsm import MIFGSM
from mendnet.threats.adversarial.pgd import PGDL2, PGDLinf

ATTACKS: dict[str, type[Attack]] = {
    cls.slug: cls for cls in (FGSM, PGDLinf, PGDL2, MIFGSM, CWL2, CWLinf, AutoAttack, AutoAttackL2)
}

GREYSCALE_28_LINF_EPS = 0.1  # docs/methods.md §5: 28×28 greyscale images use ε = 0.1 L∞ unless set


def attack_fields() -> dict[str, type]:
    """Every settable field over all attacks (name → annotation string), for generating CLI flags."""
    out: dict[str, Any] = {}
    for cls in ATTACKS.values():
        for f in dataclasses.fields(cls):
            if f.init:
                out.setdefault(f.name, f.type)
    return out


def make_attack(name: str, input_shape: tuple[int, ...] | None = None, **settings: Any) -> Attack:
    """Build attack `name` with the given settings; those an attack does not have are ignored.

    An L∞ attack on 1×28×28 inputs with no eps given gets ε = 0.1 (the 28×28 greyscale default).
    """
    if name not in ATTACKS:
        raise MendnetError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")
    cls = ATTACKS[name]
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {k: v for k, v in settings.items() if k in accepted and v is not None}
    if (
        "eps" in accepted
        and "eps" not in kwargs
        and cls.norm == "linf"
        and tuple(input_shape or ()) == (1, 28, 28)
    ):
        kwargs["eps"] = GREYSCALE_28_LINF_EPS
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise MendnetError(f"{name}: bad settings {kwargs}: {e}") from e
