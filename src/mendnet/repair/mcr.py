"""Mode Connectivity Repair (MCR): Zhao, Chen, Das, Natesan Ramamurthy & Lin, "Bridging Mode Connectivity in
Loss Landscapes and Adversarial Robustness", ICLR 2020; docs/methods.md §2.

Endpoints: w₁ = the backdoored model and w₂ = its fine-tuned copy (FT, docs/methods.md §2, `finetune_epochs`
epochs), or the teacher the user gives (`ctx.teacher`, which must have w₁'s architecture) as w₂. The path is
the quadratic Bézier curve of Zhao et al. (after Garipov et al., "Loss Surfaces, Mode Connectivity, and Fast
Ensembling of DNNs", NeurIPS 2018)

    φ_θ(t) = (1 − t)²·w₁ + 2t(1 − t)·θ + t²·w₂,    t ∈ [0, 1],

over every parameter (BatchNorm scales and shifts included). The endpoints stay fixed; the bend θ starts
at the midpoint (w₁ + w₂)/2, where the curve is the straight line, and minimises the path loss
E_{t ~ U(0,1)} CE(f(x; φ_θ(t)), y) on the defender's training split, one t drawn per batch. This runs in
the one training loop: `BezierCurve` is a module whose trainable parameters are θ and whose forward draws
t and calls the network with the weights φ_θ(t) (torch.func.functional_call), so `fit` sees an ordinary
model.

BatchNorm running statistics are not points of the curve: at each t they are recomputed on the defender's
training split (one pass without augmentation, cumulative average). t is chosen on the defender validation
split (our choice; the paper picks t by looking at the backdoor's success, which a defender cannot
measure): among the t of `t_grid` = {0.1, …, 0.9} whose accuracy is within `tolerance` = 1 point of the
better endpoint's (the endpoints evaluated as they are), `t_rule = "middle"` takes the one nearest the
middle of the curve, t = 0.5 (ties to the larger t, the fine-tuned side), and `t_rule = "smallest"` the
smallest. When no t qualifies, the most accurate t of the grid. "smallest" is the rule docs/methods.md first
wrote down; "middle" is the default because it won the selection run on the validation split
(docs/benchmarks.md `tune_nc_mcr`, tuning seed 100, demo setting; rule fixed before the run: "smallest"
unless "middle" lowers the validation ASR by more than 1 point): "smallest" kept the backdoor (91.66% ACC,
100% ASR on the validation images), "middle" 91.00% and 7.04% (the former `tune_defaults` script, on
older code: t = 0.1 at 91.44% / 100%, t = 0.5 at 90.84% / 5.83%), the paper's finding that the
backdoor lives at the ends of the path, not its middle. It is no cure: with t chosen on clean data alone
MCR kept much of the backdoor on other models (docs/benchmarks.md, `defense_table_bench`).

Defaults of the curve training are the authors' release (IBM/model-sanitization, curve training of the
backdoor experiments): 100 epochs, batch 128, SGD lr 0.01, momentum 0.9, weight decay 1e-4, random crop
(pad 4) and horizontal flip. Our choices: the cosine schedule (theirs holds the lr for half the run, then
decays it linearly to 1%) and weight decay on θ (theirs is an L2 penalty on φ_θ(t)).

Differences from the paper and the authors' release: docs/deviations.md#mcr.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.optim.swa_utils import update_bn

from mendnet.data.batches import iterate_batches
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import accuracy
from mendnet.models import Classifier
from mendnet.repair import finetune
from mendnet.repair.context import RepairContext, RepairResult
from mendnet.train import TrainConfig, fit_in, train_config_from

T_RULES = ("middle", "smallest")


@dataclass(frozen=True)
class Config:
    """Curve training (authors' release): 100 epochs, batch 128, SGD lr 0.01, momentum 0.9, weight decay
    1e-4, cosine schedule (our choice), crop (pad 4, in pixels) and flip, no Cutout.

    finetune_epochs: FT epochs for w₂ when no teacher is given (docs/methods.md §2: 10).
    t_grid: the curve points tried, each t in [0, 1]. tolerance: how far below the better endpoint's
    validation accuracy a chosen t may be (a fraction: 0.01 = 1 point). t_rule: "middle" (the qualifying
    t nearest 0.5) or "smallest" (the smallest qualifying t); see the module docstring.
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0
    finetune_epochs: int = 10
    t_grid: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    tolerance: float = 0.01
    t_rule: str = "middle"

    def __post_init__(self) -> None:
        if not self.t_grid or not all(0.0 <= t <= 1.0 for t in self.t_grid):
            raise MendnetError(f"t grid must be one or more values in [0, 1], got {self.t_grid}")
        if not self.tolerance >= 0.0:
            raise MendnetError(f"tolerance must be ≥ 0, got {self.tolerance}")
        if self.t_rule not in T_RULES:
            raise MendnetError(f"unknown t rule {self.t_rule!r}; choose {', '.join(T_RULES)}")

    def train_config(self) -> TrainConfig:
        return train_config_from(self, schedule="cosine")


def bezier(t: float, start: torch.Tensor, bend: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """φ(t) = (1 − t)²·w₁ + 2t(1 − t)·θ + t²·w₂: exactly w₁ at t = 0 and w₂ at t = 1, the straight line
    (1 − t)·w₁ + t·w₂ when θ is the midpoint."""
    return (1.0 - t) ** 2 * start + 2.0 * t * (1.0 - t) * bend + t**2 * end


def check_same_parameters(start: nn.Module, end: nn.Module) -> None:
    """MendnetError unless both models have the same (non-empty) parameter names and shapes."""
    a = {name: tuple(p.shape) for name, p in start.named_parameters()}
    b = {name: tuple(p.shape) for name, p in end.named_parameters()}
    if not a:
        raise MendnetError("mode connectivity needs a model with parameters")
    if a != b:
        differ = sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
        raise MendnetError(
            "mode connectivity needs two models of one architecture; their parameters differ at "
            + ", ".join(differ[:5])
            + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        )


class BezierCurve(nn.Module):
    """The curve φ_θ(t) between two models of one architecture.

    `bend` is a copy of the network whose parameters are θ (the only trainable ones, initialised at the
    midpoint); `start` (w₁) and `end` (w₂) are frozen copies. forward(x) draws t ~ U(0, 1) from the curve's
    own seeded generator and returns the logits of the network at φ_θ(t); `point(t)` builds that network.
    """

    def __init__(self, start: Classifier, end: Classifier, seed: int = 0) -> None:
        super().__init__()
        check_same_parameters(start, end)
        device = next(start.parameters()).device
        self.start = copy.deepcopy(start).requires_grad_(False)
        self.end = copy.deepcopy(end).to(device).requires_grad_(False)  # a given teacher may be elsewhere
        self.bend = copy.deepcopy(start).requires_grad_(True)
        ends = dict(self.end.named_parameters())
        with torch.no_grad():
            for name, theta in self.bend.named_parameters():
                theta.copy_((theta + ends[name]) / 2.0)
        self.generator = torch.Generator().manual_seed(seed)

    def weights(self, t: float) -> dict[str, torch.Tensor]:
        """φ_θ(t) for every parameter, by name."""
        starts, ends = dict(self.start.named_parameters()), dict(self.end.named_parameters())
        return {
            name: bezier(t, starts[name], theta, ends[name]) for name, theta in self.bend.named_parameters()
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = float(torch.rand((), generator=self.generator))
        return functional_call(self.bend, self.weights(t), (x,))

    @torch.no_grad()
    def point(self, t: float) -> Classifier:
        """The network at φ_θ(t), in eval mode; its BatchNorm statistics are the bend's, to be recomputed."""
        model = copy.deepcopy(self.bend)
        weights = self.weights(t)
        for name, param in model.named_parameters():
            param.copy_(weights[name])
        return model.eval()


def recompute_batchnorm(
    model: nn.Module, data: ImageSet, *, batch_size: int, device: torch.device | str = "cpu"
) -> None:
    """Reset every BatchNorm's running statistics and estimate them again as the cumulative average over one
    pass of `data` (train mode, no augmentation, no gradients; the model's mode is restored)."""
    update_bn(iterate_batches(data, batch_size, device=device), model)


def choose_t(
    accuracies: dict[float, float], best_endpoint: float, tolerance: float, rule: str = "middle"
) -> tuple[float, str]:
    """(t, why): among the t whose accuracy is ≥ best_endpoint − tolerance, the one nearest 0.5 (ties to the
    larger t) for rule "middle", the smallest for rule "smallest" (why = "within tolerance"); when none
    qualifies, the most accurate t, the smallest of equals ("most accurate"). Accuracies and tolerance are
    fractions."""
    ts = sorted(accuracies)
    within = [t for t in ts if accuracies[t] >= best_endpoint - tolerance - 1e-9]
    if within:
        pick = min(within, key=lambda t: (abs(t - 0.5), -t)) if rule == "middle" else within[0]
        return pick, "within tolerance"
    return max(ts, key=lambda t: accuracies[t]), "most accurate"


def run(model: Classifier, ctx: RepairContext, config: Config = Config()) -> RepairResult:
    """Return the network at the chosen point of the trained curve (the input model is not changed)."""
    ctx.require_val("mode connectivity repair")
    start = time.perf_counter()
    info: dict = {}
    if ctx.teacher is not None:
        end, info["endpoint"] = ctx.teacher, "given"
    else:
        ft = finetune.run(model, ctx, finetune.Config(epochs=config.finetune_epochs))
        end, info["endpoint"], info["endpoint_seconds"] = ft.model, "finetune", ft.info["train_seconds"]
    curve = BezierCurve(model, end, seed=ctx.seed)
    history = fit_in(
        ctx,
        curve,
        ctx.defender_train,
        config.train_config(),
        params=list(curve.bend.parameters()),
        description="MCR curve",
    )

    def point(t: float) -> Classifier:
        network = curve.point(t)
        recompute_batchnorm(network, ctx.defender_train, batch_size=config.batch_size, device=ctx.device)
        return network

    endpoints = [accuracy(net, ctx.defender_val, device=ctx.device) for net in (curve.start, curve.end)]
    val_acc = {t: accuracy(point(t), ctx.defender_val, device=ctx.device) for t in config.t_grid}
    chosen, rule = choose_t(val_acc, max(endpoints), config.tolerance, config.t_rule)
    repaired = point(chosen)
    info.update(
        t=chosen,
        rule=rule,
        val_acc_endpoints=endpoints,
        val_acc={f"{t:g}": acc for t, acc in sorted(val_acc.items())},
        train_seconds=history.seconds,
        seconds=time.perf_counter() - start,
    )
    return RepairResult(repaired, info)
