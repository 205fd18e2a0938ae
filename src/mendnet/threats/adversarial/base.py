"""The one small base every adversarial attack shares: the threat model's bounds and bookkeeping.

Conventions (docs/methods.md §0, §5): images are float N×C×H×W in pixel space [0, 1]; the model maps them
to logits (normalisation lives inside the model); every budget is in pixel units. The base owns

- validation of settings (one-line `MendnetError`) and of the input range,
- eval mode during the attack, restoring every submodule's own train/eval flag afterwards,
- `Attack.project`: the ε-ball projection (L∞ clamp or per-sample L2 rescale) and the [0, 1] clip,
  the only place those bounds are enforced,
- gradients w.r.t. the input only (`torch.autograd.grad`), so no parameter ever accumulates `.grad`,
- target selection for targeted attacks ("given", "random", "least-likely"),
- per-sample bookkeeping: a sample counts as broken if any step or restart broke it; the attack
  returns, per sample, the first point that broke it, else the final iterate.

Differences from the paper and the authors' release: docs/deviations.md#adversarial-attacks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mendnet.errors import MendnetError

TARGET_MODES = ("given", "random", "least-likely")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode; give each submodule its own training flag back (even on error)."""
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in saved:
            m.training = training


def check_pixel_range(x: torch.Tensor) -> None:
    """Raise `MendnetError` unless `x` is a floating tensor with every value in [0, 1]."""
    if not x.is_floating_point():
        raise MendnetError(
            f"images must be a float tensor in pixel space [0, 1], got dtype {x.dtype} "
            "(divide uint8 images by 255)"
        )
    if x.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (lo >= 0.0 and hi <= 1.0):  # also false for NaN
        raise MendnetError(
            f"images must lie in pixel space [0, 1], found values in [{lo:.4g}, {hi:.4g}] "
            "(attacks take unnormalised pixels; normalisation belongs inside the model)"
        )


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a length-N vector so it broadcasts against the N×… batch `x`."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise MendnetError(message)


def check_positive(name: str, value: float) -> None:
    """Raise `MendnetError` unless `value` is a finite number > 0."""
    _check(
        isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
        f"{name} must be a finite number > 0, got {value!r}",
    )


def check_nonnegative(name: str, value: float) -> None:
    """Raise `MendnetError` unless `value` is a finite number ≥ 0."""
    _check(
        isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
        f"{name} must be a finite number ≥ 0, got {value!r}",
    )


def check_count(name: str, value: int) -> None:
    """Raise `MendnetError` unless `value` is an integer ≥ 1."""
    _check(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"{name} must be an integer ≥ 1, got {value!r}",
    )


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True, kw_only=True)
class Attack:
    """Base of every attack: subclasses set `slug`, `norm` and field defaults, and write `_perturb`.

    eps: the budget in pixel units (‖x' − x‖ ≤ eps in `norm`); None only for unbounded attacks.
    targeted: push toward a target label instead of away from the true label.
    target_mode: how targets are chosen when `targeted` and no `target` is passed to the call:
        "given" (the caller must pass `target`), "random" (uniform over labels ≠ y, from a generator
        seeded with `seed`, drawn per call) or "least-likely" (argmin of the clean logits).
    seed: seeds the attack's random start and random targets (same seed → same result per batch).
    """

    slug: ClassVar[str] = "attack"
    norm: ClassVar[str] = "linf"
    bounded: ClassVar[bool] = True

    eps: float | None = None
    targeted: bool = False
    target_mode: str = "given"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bounded or self.eps is not None:
            check_positive("eps", self.eps)  # type: ignore[arg-type]
        _check(
            self.target_mode in TARGET_MODES,
            f"target_mode must be one of {', '.join(TARGET_MODES)}, got {self.target_mode!r}",
        )

    @property
    def name(self) -> str:
        """A readable key such as "pgd-linf(eps=0.0314,steps=20)": eps, steps, then non-defaults."""
        values = {f.name: (getattr(self, f.name), f.default) for f in fields(self)}
        shown = [k for k in ("eps", "steps") if k in values and values[k][0] is not None]
        shown += [k for k, (v, default) in values.items() if k not in shown and v != default]
        parts = [f"{k}={_fmt(values[k][0])}" for k in shown]
        return f"{self.slug}({','.join(parts)})"

    # ---- the threat model -------------------------------------------------------------------

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Project `x_adv` onto the `norm` ball of radius eps around `x`, then clip to [0, 1].

        L∞: clamp each pixel into [x − eps, x + eps]. L2: rescale δ = x_adv − x per sample by
        min(1, eps/‖δ‖₂). Clipping to [0, 1] afterwards moves every pixel toward x, so the result
        stays in the ball. Unbounded attacks (eps None) are only clipped.
        """
        if self.eps is not None:
            if self.norm == "linf":
                x_adv = torch.maximum(torch.minimum(x_adv, x + self.eps), x - self.eps)
            else:
                delta = x_adv - x
                scale = (self.eps / delta.flatten(1).norm(dim=1)).clamp(max=1.0)
                x_adv = x + delta * per_sample(scale, x)
        return x_adv.clamp(0.0, 1.0)

    # ---- the call -----------------------------------------------------------------------------

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Adversarial images for `x` (float N×C×H×W in [0, 1]) with labels `y` (int N).

        `target` (int N) gives the labels of a targeted attack. `x`, `y` and the model's parameters
        are never modified; the model runs in eval mode and gets its own modes back afterwards.
        """
        if torch.is_inference_mode_enabled():
            raise MendnetError("attacks need autograd: call them outside torch.inference_mode()")
        check_pixel_range(x)
        _check(
            x.dim() >= 2 and y.shape == x.shape[:1] and not y.is_floating_point(),
            f"need images N×C×H×W and integer labels of shape (N,), got {tuple(x.shape)} and "
            f"{tuple(y.shape)} {y.dtype}",
        )
        if target is not None and not self.targeted:
            raise MendnetError("target labels were passed to an untargeted attack (set targeted=True)")
        x = x.detach()
        if len(x) == 0:
            return x.clone()
        with eval_mode(model):
            with torch.no_grad():
                clean = model(x)
            self._check_logits(clean, y)
            goal = self._goal(clean, y, target)
            tracker = Tracker(self, x, goal)
            tracker.update(x, clean, torch.arange(len(x), device=x.device))
            self._perturb(model, x, goal, tracker)
        return tracker.best

    def _perturb(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, tracker: Tracker) -> None:
        """Attack the samples `tracker.active()`, reporting every iterate to `tracker.update`."""
        raise NotImplementedError

    # ---- helpers for subclasses ---------------------------------------------------------------

    @property
    def sign(self) -> float:
        """+1 to ascend the loss of the true label, −1 to descend the loss of the target label."""
        return -1.0 if self.targeted else 1.0

    def loss(self, logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Per-sample loss the attack ascends (untargeted) or descends (targeted): cross-entropy."""
        return F.cross_entropy(logits, goal, reduction="none")

    def grad(
        self, model: nn.Module, x_adv: torch.Tensor, goal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """∇ of sign·Σᵢ loss(model(x_adv)ᵢ, goalᵢ) w.r.t. x_adv only, and the (detached) logits.

        The loss is summed, not averaged, so each sample's gradient is independent of batch size.
        """
        with torch.enable_grad():
            x_adv = x_adv.detach().requires_grad_(True)
            logits = model(x_adv)
            total = self.loss(logits, goal).sum() * self.sign
            (g,) = torch.autograd.grad(total, x_adv)
        return g, logits.detach()

    def broken(self, logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Per sample: misclassified (untargeted) or classified as the target (targeted)."""
        pred = logits.argmax(dim=1)
        return pred == goal if self.targeted else pred != goal

    def generator(self, device: torch.device) -> torch.Generator:
        """A fresh generator on `device` seeded with `seed`."""
        return torch.Generator(device=device).manual_seed(self.seed)

    # ---- internals ----------------------------------------------------------------------------

    def _check_logits(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        _check(
            logits.dim() == 2 and logits.shape[0] == len(y) and logits.shape[1] >= 2,
            f"the model must return N×K logits with K ≥ 2 classes, got shape {tuple(logits.shape)}",
        )
        k = logits.shape[1]
        _check(bool(((y >= 0) & (y < k)).all()), f"labels must lie in [0, {k})")
        probs = (logits >= 0).all() & ((logits.sum(dim=1) - 1).abs() <= 1e-4).all()
        if probs:
            warnings.warn(
                "model outputs look like probabilities (non-negative rows summing to 1); attacks "
                "expect logits, so remove the final softmax",
                UserWarning,
                stacklevel=3,
            )

    def _goal(self, clean: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if not self.targeted:
            return y
        k = clean.shape[1]
        if target is not None:
            _check(
                target.shape == y.shape and not target.is_floating_point(),
                f"target must be integer labels of shape {tuple(y.shape)}, "
                f"got {tuple(target.shape)} {target.dtype}",
            )
            target = target.to(y.device)
            _check(bool(((target >= 0) & (target < k)).all()), f"target labels must lie in [0, {k})")
            clash = int((target == y).sum())
            _check(clash == 0, f"{clash} target label(s) equal the true label; drop those samples")
            return target
        if self.target_mode == "given":
            raise MendnetError("a targeted attack with target_mode='given' needs target labels")
        if self.target_mode == "least-likely":
            return clean.argmin(dim=1)
        offset = torch.randint(0, k - 1, y.shape, generator=self.generator(torch.device("cpu")))
        offset = offset.to(y.device)
        return offset + (offset >= y).long()  # uniform over the k − 1 labels ≠ y


class Tracker:
    """Per sample, `best` is the first point that broke it, else its latest iterate."""

    def __init__(self, attack: Attack, x: torch.Tensor, goal: torch.Tensor) -> None:
        self.attack = attack
        self.goal = goal
        self.best = x.clone()
        self.is_broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def active(self) -> torch.Tensor:
        """Indices of the samples no step has broken yet (the only ones worth attacking)."""
        return (~self.is_broken).nonzero().squeeze(1)

    def update(self, x_adv: torch.Tensor, logits: torch.Tensor, idx: torch.Tensor) -> None:
        """Report iterate `x_adv` (with its logits) of the samples at `idx`."""
        self.record(x_adv, self.attack.broken(logits, self.goal[idx]), idx)

    def record(self, x_adv: torch.Tensor, hit: torch.Tensor, idx: torch.Tensor) -> None:
        """Report iterate `x_adv` of the samples at `idx`, `hit` marking those it breaks."""
        done = self.is_broken[idx]
        self.best[idx] = torch.where(per_sample(done, x_adv), self.best[idx], x_adv.detach())
        self.is_broken[idx] = done | hit
