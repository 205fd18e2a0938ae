"""Clean and robust accuracy of an artefact's model under adversarial attacks (`mendnet attack`), with
an optional figure of perturbed images and accuracy as the PGD-L∞ step count grows."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mendnet.artefact import Artefact
from mendnet.data.ref import data_of
from mendnet.evaluate import classify
from mendnet.models import check_fits
from mendnet.report.adversarial_grid import perturbation_grid_png
from mendnet.report.steps_curve import accuracy_vs_steps, steps_curve_png
from mendnet.threats.adversarial import RobustResult, make_attack, robust_accuracy
from mendnet.threats.adversarial.autoattack import pgd_autoattack_gaps

DEFAULT_ATTACKS = ("fgsm", "pgd-linf")
GRID_IMAGES = 6


@dataclass
class AttackOutcome:
    """report: the JSON-able results (robustness.json); result: the measurement; gaps: PGD minus
    AutoAttack at the same norm and ε (flagged above 2 points; none with `cascade`); png: the
    perturbation figure (with `grid`); curve_png: the steps curve's figure (with `steps_curve`)."""

    report: dict[str, Any]
    result: RobustResult
    gaps: list[dict[str, Any]]
    png: bytes | None = None
    curve_png: bytes | None = None


def attack_artefact(
    art: Artefact,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    settings: Mapping[str, Any] | None = None,
    *,
    images: int = 1000,
    batch_size: int = 250,
    cascade: bool = False,
    grid: bool = False,
    steps_curve: Sequence[int] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> AttackOutcome:
    """Robust accuracy of `art`'s model on the first `images` test images of its data set under each
    registered attack named in `attacks`, built with `settings` (None values: the attack's default)
    and `seed`; with `cascade`, later attacks only on the points still robust.

    grid: also a figure of clean, adversarial and perturbation of the first 6 images under the last
    attack. steps_curve: also accuracy under PGD-L∞ with each step count (0: clean), same settings.
    """
    test = data_of(art.meta).split("test")
    check_fits(art.model, test)
    test = test.subset(torch.arange(min(images, len(test))))
    settings = {**(settings or {}), "seed": seed}
    built = [make_attack(name, test.shape, **settings) for name in attacks]
    model = art.model.to(device)
    start = time.perf_counter()
    result = robust_accuracy(
        model,
        test,
        attacks=built,
        batch_size=batch_size,
        device=device,
        progress=progress,
        cascade=cascade,
    )
    seconds = time.perf_counter() - start
    png = None
    if grid:
        x = test.float_images(torch.arange(min(GRID_IMAGES, len(test)))).to(device)
        x_adv = built[-1](model, x, test.labels[: len(x)].to(device))
        png = perturbation_grid_png(
            x, x_adv, classify(model, x), classify(model, x_adv), test.classes, title=built[-1].name
        )
    gaps = [] if cascade else pgd_autoattack_gaps({a.name: a for a in built}, result.per_attack)
    report = {
        "model": str(art.path) if art.path else None,
        "n": result.n,
        "cascade": cascade,
        "clean_acc": result.clean_acc,
        "robust_acc": result.per_attack,
        "worst_case": result.worst_case,
        "seconds": seconds,
    }
    if result.details:
        report["autoattack"] = result.details
    if gaps:
        report["pgd_autoattack_gap"] = gaps
    curve_png = None
    if steps_curve:
        curve = accuracy_vs_steps(
            model,
            test,
            steps_curve,
            settings=settings,
            device=device,
            batch_size=batch_size,
            progress=progress,
        )
        name = make_attack("pgd-linf", test.shape, **settings).name
        report["steps_curve"] = {"attack": name, "accuracy": {str(k): v for k, v in curve.items()}}
        where = art.path.name if art.path else "model"
        curve_png = steps_curve_png(curve, f"{where}: {name}, {result.n} images")
    return AttackOutcome(report, result, gaps, png, curve_png)
