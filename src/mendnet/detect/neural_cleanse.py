"""Neural Cleanse trigger reverse engineering (Wang et al., IEEE S&P 2019, §IV), docs/methods.md §2.

For every label y, find the smallest trigger that sends clean images to y:

    min over m̂, p̂ of  CE(f(A(x, m, Δ)), y) + λ·‖m‖₁,   m = tanh(m̂)/2 + 0.5,  Δ = tanh(p̂)/2 + 0.5   (NC eq. 2)

with A(x, m, Δ) = (1 − m)⊙x + m⊙Δ (NC eq. 1) in pixel space [0, 1], m one H×W map shared by the channels,
Δ a C×H×W pattern, ‖m‖₁ in pixels. Adam (lr 0.1, betas (0.5, 0.9)); λ per label starts at 1e-3, is
multiplied by 2 after `patience` epochs in a row with attack success ≥ 99%, divided by 2^1.5 after
`patience` epochs in a row below; the smallest-norm mask of an epoch that reached 99% is kept.

All labels are reversed at once: one optimiser over K masks and patterns, each step one forward pass of a
K·B batch (every label's trigger on the same B defender images); a label's loss touches only its own mask
and pattern, and Adam is element-wise, so this equals K separate runs sharing their image batches.

Differences from the paper and the authors' release: docs/deviations.md#neural-cleanse.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mendnet.data.batches import iterate_batches
from mendnet.data.imageset import ImageSet
from mendnet.detect.outliers import ANOMALY_THRESHOLD, flag_outliers
from mendnet.detect.reversed_trigger import ReversedTriggers, blend
from mendnet.errors import MendnetError
from mendnet.models import Classifier
from mendnet.progress import progress_bar

ADAM_BETAS = (0.5, 0.9)


@dataclass(frozen=True)
class Config:
    """Neural Cleanse reverse engineering (docs/methods.md §2 and the authors' release).

    An epoch is `batches_per_epoch` mini-batches of `batch_size` defender images per label (authors:
    1000 images / 32 ≈ 31 batches), the unit of the λ schedule, not a pass over the defender set.
    epochs: at most this many (authors: 1000 with early stopping; our choice 60, a time budget: up to
    about 7 minutes on 2 CPU cores). With the authors' early stopping most labels stop by themselves
    before it (seven of ten labels at 40 to 57 on the clean seed-0 Fashion-MNIST WRN-16-1, the others at
    60: docs/benchmarks.md `defense_table_bench`'s detect cell), and 200 epochs gave the same flags and
    the target's norm on a Trojan model (`nc_epochs200_bench`); both read defender data only, no test
    image. A label stops earlier once λ has
    gone both up and down and its best norm has not improved for `early_stop_patience` epochs (authors:
    5 · patience). λ starts at `init_cost` (docs/methods.md; the authors' release starts at 0 and sets it
    after `patience` successful epochs). cost_multiplier: λ's factor up; down is its power 1.5.
    threshold: anomaly index above which a label below the median norm is flagged.
    focus: 0 (default, the paper): every label runs until it stops. n > 0 (`mendnet mend`'s scan, ours
    after K-Arm's idea of spending the budget on likely targets, Shen et al., ICML 2021): after
    `focus_after` epochs the labels flagged on the norms then (every label having run the same epochs;
    `ReversalLog.focus_flagged`) go on, and with them as many of the smallest-norm labels (those that
    reached the success threshold first) as make at least n; the others stop there, so their norms are
    upper bounds of what a full run would reach.
    """

    epochs: int = 60
    batches_per_epoch: int = 31
    batch_size: int = 32
    lr: float = 0.1
    init_cost: float = 1e-3
    success_threshold: float = 0.99
    patience: int = 5
    cost_multiplier: float = 2.0
    early_stop_patience: int = 25
    threshold: float = ANOMALY_THRESHOLD
    focus: int = 0
    focus_after: int = 10

    def __post_init__(self) -> None:
        for name in ("epochs", "batches_per_epoch", "batch_size", "patience", "early_stop_patience"):
            if getattr(self, name) < 1:
                raise MendnetError(f"neural cleanse: {name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("lr", "init_cost", "threshold"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise MendnetError(f"neural cleanse: {name} must be a positive number, got {value}")
        if not 0 < self.success_threshold <= 1:
            raise MendnetError(
                f"neural cleanse: success threshold must lie in (0, 1], got {self.success_threshold}"
            )
        if not (self.cost_multiplier > 1 and math.isfinite(self.cost_multiplier)):
            raise MendnetError(f"neural cleanse: cost multiplier must be > 1, got {self.cost_multiplier}")
        if self.focus < 0 or self.focus_after < 1:
            raise MendnetError(
                f"neural cleanse: focus must be ≥ 0 and focus_after ≥ 1, got {self.focus}, {self.focus_after}"
            )


def unit_from_param(param: torch.Tensor) -> torch.Tensor:
    """tanh(θ)/2 + 0.5: the unconstrained parameter m̂ or p̂ mapped into (0, 1) (NC §IV-C)."""
    return torch.tanh(param) / 2 + 0.5


def param_from_unit(value: torch.Tensor) -> torch.Tensor:
    """The inverse of `unit_from_param`, for values in [0, 1] (clipped 1e-6 inside to stay finite)."""
    return torch.atanh((2 * value - 1).clamp(-1 + 1e-6, 1 - 1e-6))


@dataclass
class CostSchedule:
    """Per-label λ and the bookkeeping of the authors' release, as length-K tensors.

    After `patience` consecutive epochs at or above the success threshold λ ← λ · multiplier, after
    `patience` below λ ← λ / multiplier^1.5 (each count restarts after a change). `stale` counts epochs
    since the best norm last improved (from the first success on); a label is done once λ has moved both
    ways and `stale` reaches the early-stop patience.
    """

    cost: torch.Tensor
    above: torch.Tensor
    below: torch.Tensor
    went_up: torch.Tensor
    went_down: torch.Tensor
    stale: torch.Tensor
    done: torch.Tensor

    @classmethod
    def start(cls, num_labels: int, init_cost: float) -> CostSchedule:
        zeros = torch.zeros(num_labels, dtype=torch.long)
        no = torch.zeros(num_labels, dtype=torch.bool)
        cost = torch.full((num_labels,), init_cost, dtype=torch.float64)
        return cls(cost, zeros, zeros.clone(), no, no.clone(), zeros.clone(), no.clone())

    def step(
        self,
        labels: torch.Tensor,
        succeeded: torch.Tensor,
        improved: torch.Tensor,
        found: torch.Tensor,
        cfg: Config,
    ) -> None:
        """Update `labels` after an epoch: whether each succeeded, improved its best norm, has any best."""
        above = torch.where(succeeded, self.above[labels] + 1, 0)
        below = torch.where(succeeded, 0, self.below[labels] + 1)
        up, down = above >= cfg.patience, below >= cfg.patience
        self.cost[labels] = torch.where(
            up,
            self.cost[labels] * cfg.cost_multiplier,
            torch.where(down, self.cost[labels] / cfg.cost_multiplier**1.5, self.cost[labels]),
        )
        self.above[labels] = torch.where(up, 0, above)
        self.below[labels] = torch.where(down, 0, below)
        self.went_up[labels] |= up
        self.went_down[labels] |= down
        self.stale[labels] = torch.where(improved | ~found, 0, self.stale[labels] + 1)
        self.done[labels] = (
            self.went_up[labels] & self.went_down[labels] & (self.stale[labels] >= cfg.early_stop_patience)
        )


@dataclass(frozen=True)
class ReversalLog:
    """How the reverse engineering ran: epochs per label, final λ per label, wall-clock seconds, the
    labels stopped by `Config.focus` (their norms are upper bounds) and, under focus, every label's norm
    at the focus point (its best norm, or its current mask's where none succeeded yet; the ranking
    `focus_stop` used), where all labels had run the same epochs, and the labels flagged there
    (`focus_flags`); both None without focus."""

    epochs: list[int]
    final_cost: list[float]
    seconds: float
    stopped_by_focus: list[int]
    focus_norms: list[float] | None = None
    focus_flagged: list[int] | None = None


def focus_flags(norms: torch.Tensor, reached: torch.Tensor, threshold: float) -> list[int]:
    """NC's rule (anomaly index above `threshold`, below the median norm) on the focus-point `norms`,
    among the labels that had `reached` the success threshold by then; smallest norm first (pure). A
    label with a smaller norm than a flagged one that had reached is flagged too, so these are the first
    labels of `focus_stop`'s ranking."""
    return [k for k in flag_outliers(norms, threshold) if reached[k]]


def focus_stop(schedule: CostSchedule, best: torch.Tensor, current: torch.Tensor, keep: int) -> list[int]:
    """Mark every running label done except the `keep` with the smallest norms (a label that reached the
    success threshold ranks by its best norm, before every label that has not, which ranks by its
    current mask's norm); returns the labels stopped here."""
    running = torch.nonzero(~schedule.done).flatten()
    reached = torch.isfinite(best[running])
    rank_key = torch.where(reached, best[running], current[running] + current.abs().max() + 1)
    order = running[torch.argsort(rank_key, stable=True)]
    stop = order[keep:]
    schedule.done[stop] = True
    return sorted(stop.tolist())


def endless_batches(
    data: ImageSet, batch_size: int, generator: torch.Generator, device: torch.device | str
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled full batches of `data`, reshuffled after each pass, without end."""
    while True:
        yield from iterate_batches(
            data, batch_size, shuffle=True, generator=generator, device=device, drop_last=True
        )


def optimise_epoch(
    net: torch.nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    labels: torch.Tensor,
    mask_param: torch.Tensor,
    pattern_param: torch.Tensor,
    cost: torch.Tensor,
    opt: torch.optim.Optimizer,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`steps` Adam steps of NC eq. 2 for `labels` (class ids; rows of the K-row parameters) at λ `cost`
    (one per label). Returns their masks (L×H×W) and patterns (L×C×H×W) after the last step, on the CPU,
    and each label's attack success over the epoch (the share of the images of other labels that its
    trigger sent to it, as the optimisation went)."""
    device = mask_param.device
    active = labels.to(device)
    hits = torch.zeros(len(labels), device=device)
    seen = torch.zeros(len(labels), device=device)
    for _ in range(steps):
        x, y = next(batches)
        mask = unit_from_param(mask_param[active])
        pattern = unit_from_param(pattern_param[active])
        stamped = blend(x[None], mask[:, None], pattern[:, None]).flatten(0, 1)
        logits = net(stamped.contiguous(memory_format=torch.channels_last))
        wanted = active.repeat_interleave(len(x))
        ce = F.cross_entropy(logits, wanted, reduction="none").view(len(labels), len(x)).mean(1)
        loss = (ce + cost * mask.abs().sum((1, 2, 3))).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        others = y[None] != active[:, None]
        sent = logits.detach().argmax(1).view(len(labels), len(x)) == active[:, None]
        hits += (sent & others).sum(1)
        seen += others.sum(1)
    with torch.no_grad():
        mask = unit_from_param(mask_param[active]).squeeze(1).cpu()
        pattern = unit_from_param(pattern_param[active]).cpu()
    return mask, pattern, (hits / seen.clamp_min(1)).cpu()


def reverse_engineer(
    model: Classifier,
    data: ImageSet,
    config: Config = Config(),
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[ReversedTriggers, ReversalLog]:
    """Reverse the trigger of every label of `model` on clean `data` (the defender's; the model is not
    changed). Attack success is §0's ASR on the batch: the share of images whose true label is not y
    that the triggered input sends to y. Mask and pattern start uniform at random in [0, 1] (authors).
    A label that never reaches the success threshold keeps its last mask, with reached = False."""
    if len(data) == 0:
        raise MendnetError("neural cleanse needs defender images; the set is empty")
    k = model.spec.num_classes
    c, h, w = data.shape
    net = copy.deepcopy(model).to(device=device, memory_format=torch.channels_last).eval()
    net.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    mask_param = param_from_unit(torch.rand(k, 1, h, w, generator=gen)).to(device).requires_grad_()
    pattern_param = param_from_unit(torch.rand(k, c, h, w, generator=gen)).to(device).requires_grad_()
    opt = torch.optim.Adam([mask_param, pattern_param], lr=config.lr, betas=ADAM_BETAS)
    schedule = CostSchedule.start(k, config.init_cost)
    best_masks = torch.zeros(k, h, w)
    best_patterns = torch.zeros(k, c, h, w)
    best_norms = torch.full((k,), math.inf)
    epochs_run = torch.zeros(k, dtype=torch.long)
    batches = endless_batches(data, config.batch_size, gen, device)
    stopped: list[int] = []
    focus_norms = focus_flagged = None
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("neural cleanse", total=config.epochs, info="")
        for epoch in range(config.epochs):
            if config.focus and epoch == config.focus_after:
                current = best_masks.sum((1, 2))
                at_focus = torch.where(torch.isfinite(best_norms), best_norms, current)
                focus_norms = at_focus.tolist()
                focus_flagged = focus_flags(at_focus, torch.isfinite(best_norms), config.threshold)
                stopped = focus_stop(schedule, best_norms, current, max(config.focus, len(focus_flagged)))
            labels = torch.nonzero(~schedule.done).flatten()
            if len(labels) == 0:
                break
            cost = schedule.cost[labels].to(device, torch.float32)
            mask, pattern, success = optimise_epoch(
                net, batches, labels, mask_param, pattern_param, cost, opt, config.batches_per_epoch
            )
            norms = mask.sum((1, 2))
            succeeded = success >= config.success_threshold
            improved = succeeded & (norms < best_norms[labels])
            keep = labels[improved]
            best_masks[keep], best_patterns[keep], best_norms[keep] = (
                mask[improved],
                pattern[improved],
                norms[improved],
            )
            never = ~torch.isfinite(best_norms[labels])  # no success yet: keep the latest trigger
            best_masks[labels[never]], best_patterns[labels[never]] = mask[never], pattern[never]
            epochs_run[labels] += 1
            schedule.step(labels, succeeded, improved, torch.isfinite(best_norms[labels]), config)
            bar.update(task, advance=1, info=f"{int((~schedule.done).sum())}/{k} labels running")
    reached = torch.isfinite(best_norms)
    norms = torch.where(reached, best_norms, best_masks.sum((1, 2)))
    triggers = ReversedTriggers(best_masks, best_patterns, norms, reached)
    seconds = time.perf_counter() - start
    log = ReversalLog(
        epochs_run.tolist(), schedule.cost.tolist(), seconds, stopped, focus_norms, focus_flagged
    )
    return triggers, log


def refine_triggers(
    model: Classifier,
    data: ImageSet,
    triggers: ReversedTriggers,
    labels: list[int],
    cost: list[float],
    epochs: int,
    config: Config = Config(),
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ReversedTriggers:
    """Re-reverse `labels`' triggers on `model` (another model than the one they were reversed on, such
    as a repaired one): NC eq. 2 from `triggers`' masks and patterns, at the fixed λ `cost` (one per
    label, e.g. the reversal's final λ), for `epochs` epochs of `config`'s mini-batches. The labels'
    masks and patterns are the last ones, `reached` whether the last epoch's success reached the
    threshold; the other labels keep theirs. After BTI-DBF's unlearning variant, which inverts the
    trigger again on the model being purified (Xu et al., ICLR 2024); ours: docs/methods.md §10."""
    if len(labels) != len(cost):
        raise MendnetError(f"refine_triggers: {len(labels)} labels but {len(cost)} costs")
    if epochs < 1:
        raise MendnetError(f"refine_triggers: epochs must be at least 1, got {epochs}")
    net = copy.deepcopy(model).to(device=device, memory_format=torch.channels_last).eval()
    net.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    rows = torch.tensor(labels, dtype=torch.long)
    mask_param = param_from_unit(triggers.masks[:, None].clone()).to(device).requires_grad_()
    pattern_param = param_from_unit(triggers.patterns.clone()).to(device).requires_grad_()
    opt = torch.optim.Adam([mask_param, pattern_param], lr=config.lr, betas=ADAM_BETAS)
    batches = endless_batches(data, config.batch_size, gen, device)
    lam = torch.tensor(cost, dtype=torch.float32, device=device)
    for _ in range(epochs):
        mask, pattern, success = optimise_epoch(
            net, batches, rows, mask_param, pattern_param, lam, opt, config.batches_per_epoch
        )
    masks, patterns = triggers.masks.clone(), triggers.patterns.clone()
    norms, reached = triggers.norms.clone(), triggers.reached.clone()
    masks[rows], patterns[rows] = mask, pattern
    norms[rows], reached[rows] = mask.sum((1, 2)), success >= config.success_threshold
    return ReversedTriggers(masks, patterns, norms, reached)
