"""AutoAttack (Croce & Hein, ICML 2020) through the authors' own package, `pyautoattack` (docs/methods.md §5).

mendnet writes no attack here: every component (APGD-CE, APGD-DLR, APGD-T, FAB, FAB-T, Square) is the
package's, with the package's settings for the chosen version ("standard", "plus", "rand"), run by the
package's own `run_standard_evaluation`. What this module adds is the bookkeeping mendnet reports:

- the components run one after another, each on the points every earlier one left robust, in chunks of
  `batch_size` in index order: exactly the batches the package's own loop forms, so robust accuracy
  equals one call of `run_standard_evaluation` on the same images, seed and batch size, and each broken
  point is credited to the component that broke it;
- the package's checks (randomised or dynamic defence, probability outputs, zero gradients, Square
  beating the white-box components) caught from its logger as one-line warnings, plus two of ours
  that point to gradient masking (see `AutoAttack`);
- eval mode and frozen parameters during the run (the package's FAB backpropagates into the weights'
  `.grad` otherwise), progress bars, seconds.

Differences from the paper and the authors' release: docs/deviations.md#adversarial-attacks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from mendnet.errors import MendnetError
from mendnet.progress import progress_bar
from mendnet.threats.adversarial.base import (
    Attack,
    Tracker,
    check_count,
    check_pixel_range,
    eval_mode,
)

COMPONENTS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
"""The package's component names."""
VERSIONS = ("standard", "plus", "rand")
PACKAGE_NORM = {"linf": "Linf", "l2": "L2"}
MASKING_GAP = 0.05
MASKING_MIN_IMAGES = 5
"""(ours) Warn of gradient masking when the components after APGD-CE (cross-entropy) break more than
`MASKING_GAP` of the attacked images, and at least `MASKING_MIN_IMAGES` of them."""
PGD_GAP_FLAG = 0.02
"""(issue 27) PGD's robust accuracy more than this above AutoAttack's on the same images is flagged."""


def exceeds(difference: float, bar: float) -> bool:
    """Whether `difference` (of two accuracies, fractions) is above `bar`, rounded to 6 decimals first:
    accuracies are means of float32 tensors (149 of 200 is 0.7450000047683716, less 0.725 gives
    0.020000004768371604; in float64 0.77 − 0.75 is 0.020000000000000018), and 4 of 200 images is
    exactly 2 points, not more. Accuracies over up to 100,000 images differ by at least 1e-5 when they
    differ, so the rounding moves no real difference across a bar."""
    return round(difference, 6) > bar


def gap_flagged(gap: float) -> bool:
    """Whether PGD's robust accuracy minus AutoAttack's (`gap`, a fraction) exceeds `PGD_GAP_FLAG`."""
    return exceeds(gap, PGD_GAP_FLAG)


PACKAGE_DIFF_FLAG = 0.005
"""(issue 27) mendnet's AutoAttack robust accuracy and the package's called directly (`package_run`) on the
same images and settings differing by more than this (a fraction: 0.5 points) is flagged."""
BALL_TOLERANCE = 1e-5
"""Float slack allowed when checking the package's points against the ε-ball and [0, 1]."""
LOGGER = "auto-attack"
"""The package's logger (`logging.getLogger('auto-attack')`)."""


def _package() -> Any:
    try:  # imported on first use: the package is heavy and only AutoAttack needs it
        import pyautoattack
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise MendnetError(
            "autoattack needs the authors' package: .venv/bin/pip install 'pyautoattack==0.2.0'"
        ) from e
    return pyautoattack


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters with requires_grad off (so no attack can fill their `.grad`); flags restored after."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def package_warnings() -> Iterator[list[str]]:
    """The warnings the package logs while the block runs (kept from the user's own log handlers)."""
    logger = logging.getLogger(LOGGER)
    handler = _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _label(message: str) -> str:
    """One line for a package warning, saying what it points to."""
    text = " ".join(message.split())
    lower = text.lower()
    if "square attack" in lower or "zero gradient" in lower:
        return f"possible gradient masking: {text}"
    if "randomized defense" in lower:
        return f"randomised model: {text}"
    if "dynamic defense" in lower:
        return f"dynamic model: {text}"
    return text


@dataclass(frozen=True)
class AutoAttackRun:
    """One AutoAttack run over a set of images (all fields cover those N images).

    x_adv: float N×C×H×W, the breaking point of each broken image, else the image itself.
    clean: bool N, classified correctly before the attack. robust: bool N, correct clean and after every
    component. broken_by: int N, the index in `components` of the component that broke the image
    (-1: not broken, or already wrong clean). seconds: wall time of the whole run; component_seconds per
    component (absent: not run, no robust point left). warnings: one line each, the package's checks and ours.
    settings: version, norm, eps, seed, target classes, Square queries, batch size.
    """

    x_adv: torch.Tensor
    clean: torch.Tensor
    robust: torch.Tensor
    broken_by: torch.Tensor
    components: tuple[str, ...]
    seconds: float
    component_seconds: dict[str, float]
    warnings: tuple[str, ...]
    settings: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        """Images broken by each component (in run order)."""
        return {c: int((self.broken_by == i).sum()) for i, c in enumerate(self.components)}

    def summary(self) -> dict[str, Any]:
        """A JSON-able record: settings; the run's images, those correct clean, those still robust, and
        those each component broke (counts); seconds; warnings."""
        return {
            **self.settings,
            "components": list(self.components),
            "images": len(self.robust),
            "clean": int(self.clean.sum()),
            "robust": int(self.robust.sum()),
            "broken_by": self.counts,
            "seconds": self.seconds,
            "component_seconds": dict(self.component_seconds),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, kw_only=True)
class AutoAttack(Attack):
    """AutoAttack L∞ (Croce & Hein 2020): the package's components in its order, each on what is still robust.

    standard: APGD-CE (100 iterations, 1 restart), APGD-T (9 targets, 100 iterations), FAB-T (9 targets),
    Square (5000 queries); plus: APGD-CE and APGD-DLR (5 restarts), FAB (5 restarts), Square, APGD-T,
    FAB-T; rand: APGD-CE and APGD-DLR with 20 EOT draws (randomised models). All are the package's
    settings. Units: pixel space [0, 1]; default ε = 8/255 (L∞), 0.5 (L2).

    aa_version: "standard", "plus" or "rand". aa_attacks: comma-separated components to run, in that
    order, with the version's settings (default: the version's own list); names: apgd-ce, apgd-dlr, fab,
    square, apgd-t, fab-t. aa_targets: target classes of APGD-T and FAB-T (default: the version's 9;
    never more than K − 1). aa_square_queries: Square's query budget (default: the version's 5000).
    seed: the package's seed. Untargeted only (APGD-T and FAB-T choose their own targets).

    Warnings of ours besides the package's checks: points with a zero cross-entropy gradient at the clean
    image (the package's zero-gradient check, applied to the CE loss of APGD-CE as well), and the
    components after APGD-CE breaking more than 5% of the images, at least 5 of them (a saturated
    softmax or scaled logits hide the CE gradient that PGD follows; DLR and Square do not need it).

    Called on a batch it returns adversarial images like every attack; `run` gives the whole record
    (`AutoAttackRun`), and `robust_accuracy` runs it once over all its clean-correct images (`whole_set`),
    so its batches are the package's own.

    Example:
        attack = AutoAttack(eps=8 / 255, seed=0)
        run = attack.run(model, images, labels)
        print(run.robust.float().mean(), run.counts, run.warnings)
    """

    slug: ClassVar[str] = "autoattack"
    norm: ClassVar[str] = "linf"
    whole_set: ClassVar[bool] = True

    eps: float = 8 / 255
    aa_version: str = "standard"
    aa_attacks: str | None = None
    aa_targets: int | None = None
    aa_square_queries: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.targeted:
            raise MendnetError(
                "autoattack is untargeted: its apgd-t and fab-t components choose their own targets"
            )
        if self.aa_version not in VERSIONS:
            raise MendnetError(
                f"unknown AutoAttack version {self.aa_version!r}; known: {', '.join(VERSIONS)}"
            )
        _ = self.components  # validates aa_attacks
        if self.aa_targets is not None:
            check_count("aa_targets", self.aa_targets)
        if self.aa_square_queries is not None:
            check_count("aa_square_queries", self.aa_square_queries)

    @property
    def components(self) -> tuple[str, ...]:
        """The components to run, in order."""
        if self.aa_attacks is None:
            return tuple(self._version_components())
        names = [s.strip().lower() for s in str(self.aa_attacks).split(",") if s.strip()]
        if not names:
            raise MendnetError(f"aa_attacks names no component; known: {', '.join(COMPONENTS)}")
        unknown = [s for s in names if s not in COMPONENTS]
        if unknown:
            raise MendnetError(f"unknown AutoAttack component {unknown[0]!r}; known: {', '.join(COMPONENTS)}")
        if len(set(names)) != len(names):
            raise MendnetError(f"aa_attacks names a component twice: {self.aa_attacks!r}")
        return tuple(names)

    def _version_components(self) -> list[str]:
        # the lists of pyautoattack 0.2.0's AutoAttack._set_version, read without building a model
        return {
            "standard": ["apgd-ce", "apgd-t", "fab-t", "square"],
            "plus": ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"],
            "rand": ["apgd-ce", "apgd-dlr"],
        }[self.aa_version]

    # ---- the package ----------------------------------------------------------------------------

    def package_attack(self, model: nn.Module, num_classes: int, device: torch.device) -> Any:
        """The package's `AutoAttack` object with this attack's version, ε, norm, seed and budgets."""
        aa = _package().AutoAttack(
            model,
            eps=float(self.eps),
            norm=PACKAGE_NORM[self.norm],
            version=self.aa_version,
            seed=self.seed,
            device=device,
        )
        aa.verbose = False
        targets = self.aa_targets or aa.apgd_targeted.n_target_classes
        targets = max(1, min(targets, num_classes - 1))
        aa.apgd_targeted.n_target_classes = targets
        aa.fab.n_target_classes = targets
        if self.aa_square_queries is not None:
            aa.square.n_queries = self.aa_square_queries
        aa.attacks_to_run = list(self.components)
        return aa

    def _check_classes(self, k: int) -> None:
        comps = set(self.components)
        if k < 4 and "apgd-t" in comps:
            raise MendnetError(f"autoattack's apgd-t needs ≥ 4 classes, the model has {k}; leave it out")
        if k < 3 and "apgd-dlr" in comps:
            raise MendnetError(f"autoattack's apgd-dlr needs ≥ 3 classes, the model has {k}; leave it out")

    # ---- the run --------------------------------------------------------------------------------

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int = 250,
        progress: bool = False,
        bar: Progress | None = None,
    ) -> AutoAttackRun:
        """AutoAttack on images `x` (float N×C×H×W in [0, 1], on the model's device) with labels `y`.

        batch_size: the package's batch size (its default 250). progress: show a bar per component
        (or add them to the running `bar`). `x`, `y` and the model are not modified; the model runs in
        eval mode with frozen parameters and gets its modes and flags back.
        """
        if torch.is_inference_mode_enabled():
            raise MendnetError("attacks need autograd: call them outside torch.inference_mode()")
        check_pixel_range(x)
        if x.dim() != 4 or y.shape != x.shape[:1] or y.is_floating_point():
            raise MendnetError(
                f"need images N×C×H×W and integer labels of shape (N,), got {tuple(x.shape)} and "
                f"{tuple(y.shape)} {y.dtype}"
            )
        check_count("batch_size", batch_size)
        start = time.perf_counter()
        x = x.detach()
        n, comps = len(x), self.components
        settings = {
            "attack": self.slug,
            "version": self.aa_version,
            "norm": self.norm,
            "eps": float(self.eps),
            "seed": self.seed,
            "batch_size": batch_size,
            "targets": self.aa_targets or 9,  # the package's, capped at K − 1 below
            "square_queries": self.aa_square_queries or 5000,
        }
        broken_by = torch.full((n,), -1, dtype=torch.long, device=x.device)
        if n == 0:
            empty = torch.zeros(0, dtype=torch.bool, device=x.device)
            return AutoAttackRun(x.clone(), empty, empty, broken_by, comps, 0.0, {}, (), settings)
        with eval_mode(model), frozen_parameters(model), package_warnings() as logged:
            chunks = torch.arange(n, device=x.device).split(batch_size)
            with torch.no_grad():
                logits = torch.cat([model(x[c]) for c in chunks])
            self._check_logits(logits, y)
            k = logits.shape[1]
            self._check_classes(k)
            clean = logits.argmax(1) == y
            robust = clean.clone()
            aa = self.package_attack(model, k, x.device)
            settings["targets"] = aa.apgd_targeted.n_target_classes
            settings["square_queries"] = aa.square.n_queries
            own = self._zero_ce_gradients(model, x, y, clean, batch_size) if "apgd-ce" in comps else []
            x_adv = x.clone()
            fractions = {"clean": float(clean.float().mean())}
            seconds: dict[str, float] = {}
            with nullcontext(bar) if bar is not None else progress_bar(progress) as bar:
                for i, comp in enumerate(comps):
                    idx = robust.nonzero().squeeze(1)
                    if len(idx) == 0:
                        break
                    t0 = time.perf_counter()
                    task = bar.add_task(f"autoattack {comp}", total=len(idx), info=self.name)
                    aa.attacks_to_run = [comp]
                    for chunk in idx.split(batch_size):
                        adv, y_adv = aa.run_standard_evaluation(x[chunk], y[chunk], batch_size=batch_size)
                        hit = (y_adv.to(y.device) != y[chunk]).nonzero().squeeze(1)
                        x_adv[chunk[hit]] = adv[hit].to(x_adv.device, x_adv.dtype)
                        robust[chunk[hit]] = False
                        broken_by[chunk[hit]] = i
                        bar.advance(task, len(chunk))
                    seconds[comp] = time.perf_counter() - t0
                    fractions[comp] = float(robust.float().mean())
            aa.attacks_to_run = list(comps)
            _package().checks.check_square_sr(fractions, logger=aa.logger)
        own += self._masking_gap(comps, broken_by, n)
        own += self._outside_ball(x_adv, x)
        lines = [_label(m) for m in logged] + own
        warnings = tuple(f"autoattack: {m}" for m in dict.fromkeys(lines))
        return AutoAttackRun(
            x_adv=x_adv,
            clean=clean,
            robust=robust,
            broken_by=broken_by,
            components=comps,
            seconds=time.perf_counter() - start,
            component_seconds=seconds,
            warnings=warnings,
            settings=settings,
        )

    def _zero_ce_gradients(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, batch_size: int
    ) -> list[str]:
        """The package's zero-gradient criterion (Σ|∇| = 0, `checks.check_zero_gradients`, which it applies to
        the DLR losses only) on the cross-entropy gradient at the clean images."""
        idx = clean.nonzero().squeeze(1)
        zero = 0
        for chunk in idx.split(batch_size):
            with torch.enable_grad():
                xs = x[chunk].clone().requires_grad_(True)
                loss = F.cross_entropy(model(xs), y[chunk], reduction="sum")
                (g,) = torch.autograd.grad(loss, xs)
            zero += int((g.flatten(1).abs().sum(1) == 0).sum())
        if zero == 0:
            return []
        return [
            f"possible gradient masking: {zero} of {len(idx)} correctly classified images have a zero "
            "cross-entropy gradient (saturated softmax?); gradient attacks on CE, such as PGD and "
            "APGD-CE, cannot move them"
        ]

    @staticmethod
    def _masking_gap(comps: tuple[str, ...], broken_by: torch.Tensor, n: int) -> list[str]:
        if "apgd-ce" not in comps:
            return []
        first = comps.index("apgd-ce")
        later = int((broken_by > first).sum())
        if later / n <= MASKING_GAP or later < MASKING_MIN_IMAGES:
            return []
        names = ", ".join(
            f"{c} ({k})" for i, c in enumerate(comps) if i > first and (k := int((broken_by == i).sum()))
        )
        return [
            f"possible gradient masking: {later} of {n} images ({100 * later / n:.1f}%) survived APGD-CE "
            f"but fell to {names}: the cross-entropy gradient that PGD-style attacks follow is unreliable "
            "on this model; trust AutoAttack's number, not PGD's"
        ]

    def _outside_ball(self, x_adv: torch.Tensor, x: torch.Tensor) -> list[str]:
        d = (x_adv - x).flatten(1)
        dist = d.abs().amax(1) if self.norm == "linf" else d.norm(dim=1)
        out = int((dist > self.eps + BALL_TOLERANCE).sum())
        out += int(((x_adv < -BALL_TOLERANCE) | (x_adv > 1 + BALL_TOLERANCE)).flatten(1).any(1).sum())
        if out == 0:
            return []
        largest = float(dist.max())
        return [f"{out} adversarial images lie outside the ε-ball or [0, 1] (largest distance {largest:.4g})"]

    # ---- the Attack interface -------------------------------------------------------------------

    def _perturb(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, tracker: Tracker) -> None:
        idx = tracker.active()
        if len(idx) == 0:
            return
        result = self.run(model, x[idx], goal[idx])
        tracker.record(result.x_adv, ~result.robust & result.clean, idx)


@dataclass(frozen=True, kw_only=True)
class AutoAttackL2(AutoAttack):
    """AutoAttack under an L2 budget (the package's L2 components); default ε = 0.5. See `AutoAttack`."""

    slug: ClassVar[str] = "autoattack-l2"
    norm: ClassVar[str] = "l2"

    eps: float = 0.5


@dataclass(frozen=True)
class PackageRun:
    """The authors' package called directly on N images (`package_run`).

    x_adv: float N×C×H×W, the package's adversarial images (the image itself where it found none).
    robust: bool N, correct clean and after the attack. seconds: wall time of the package's call.
    """

    x_adv: torch.Tensor
    robust: torch.Tensor
    seconds: float

    @property
    def accuracy(self) -> float:
        """Robust accuracy over the N images (a fraction in [0, 1], an exact count ÷ N)."""
        return int(self.robust.sum()) / len(self.robust)


def package_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    version: str = "standard",
    seed: int = 0,
    attacks: Sequence[str] | None = None,
    batch_size: int = 250,
) -> PackageRun:
    """The authors' package called directly, none of `AutoAttack.run`'s bookkeeping: the reference that
    run is checked against (issue 27). `pyautoattack.AutoAttack(model, eps=, norm=, version=, seed=,
    device=).run_standard_evaluation(x, y, batch_size=)` on images `x` (float N×C×H×W in [0, 1], on the
    model's device) with integer labels `y`.

    eps: the budget in pixel space; norm: "linf" or "l2"; version: "standard", "plus" or "rand";
    attacks: components to run instead of the version's own, as the package's `attacks_to_run` (its
    way to run a subset). The model runs in eval mode with frozen parameters (neither changes the
    package's points; FAB would fill the weights' `.grad` otherwise) and gets its modes and flags back.
    """
    if norm not in PACKAGE_NORM:
        raise MendnetError(f"unknown AutoAttack norm {norm!r}; known: {', '.join(PACKAGE_NORM)}")
    if version not in VERSIONS:
        raise MendnetError(f"unknown AutoAttack version {version!r}; known: {', '.join(VERSIONS)}")
    unknown = [a for a in attacks or () if a not in COMPONENTS]
    if unknown:
        raise MendnetError(f"unknown AutoAttack component {unknown[0]!r}; known: {', '.join(COMPONENTS)}")
    check_count("batch_size", batch_size)
    aa = _package().AutoAttack(
        model, eps=float(eps), norm=PACKAGE_NORM[norm], version=version, seed=seed, device=x.device
    )
    if attacks is not None:
        aa.attacks_to_run = list(attacks)
    start = time.perf_counter()
    with eval_mode(model), frozen_parameters(model):
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return PackageRun(x_adv, y_adv == y, time.perf_counter() - start)


def summary_lines(name: str, summary: dict[str, Any]) -> list[str]:
    """Lines for people: what ran on how many images in how long, who broke what, then each warning."""
    counts = ", ".join(f"{c} {k}" for c, k in summary["broken_by"].items())
    head = (
        f"{name}: {summary['version']} ({', '.join(summary['components'])}; {summary['targets']} targets, "
        f"Square {summary['square_queries']} queries), {summary['clean']} correctly classified images "
        f"attacked in {summary['seconds']:.1f} s; broken by: {counts}"
    )
    return [head, *(f"warning: {w}" for w in summary["warnings"])]


def pgd_autoattack_gaps(attacks: dict[str, Attack], per_attack: dict[str, float]) -> list[dict[str, Any]]:
    """PGD's robust accuracy minus AutoAttack's, for each PGD and AutoAttack run at the same norm and ε
    (`attacks`: name → attack, `per_attack`: name → robust accuracy); flagged above `PGD_GAP_FLAG`
    (2 points)."""
    out = []
    for aa_name, aa in attacks.items():
        if not isinstance(aa, AutoAttack):
            continue
        for name, attack in attacks.items():
            pgd = attack.slug in ("pgd-linf", "pgd-l2")
            if pgd and attack.norm == aa.norm and attack.eps == aa.eps:
                gap = per_attack[name] - per_attack[aa_name]
                out.append({"pgd": name, "autoattack": aa_name, "gap": gap, "flag": gap_flagged(gap)})
    return out


__all__ = [
    "COMPONENTS",
    "VERSIONS",
    "AutoAttack",
    "AutoAttackL2",
    "AutoAttackRun",
    "PackageRun",
    "package_run",
    "pgd_autoattack_gaps",
    "summary_lines",
]
