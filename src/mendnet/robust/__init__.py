"""Robustness training and transfer (docs/methods.md §6–§8): PGD-AT, TRADES, FGSM-RS, the Shafahi
feature-distillation baseline, Robust-KD and AGKD-BML. Each module has a frozen `Config` with the
paper's defaults and `run(model, ctx, config)`; all train through `mendnet.train.fit`."""

from mendnet.robust.context import RobustContext, RobustResult

__all__ = ["RobustContext", "RobustResult"]
