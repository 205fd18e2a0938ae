"""A recipe's selection rules (`[select.NAME]`): which of several repair columns becomes a default, chosen
by a rule written down before the run from the columns' figures on the validation split
(`run.evaluate_on = "validation"`; the test set chooses nothing): recipes/tune_nad.toml and
recipes/tune_nc_mcr.toml choose the defaults that are not their papers'. `mendnet.bench.selection_table`
shows every candidate's figures and the choice.

    [select.nad-lr]
    candidates = ["nad", "nad-lr0.045"]  # repair columns of the grid (at least two)
    default = "nad"          # the candidate kept unless another beats it by more than `margin`
    metric = "acc"           # the figure compared, as its mean over the grid's seeds: acc, asr, ra or der
    prefer = "higher"        # "higher" or "lower"
    margin = 0.005           # a fraction (0.005: half a point; default 0)
    asr_bound = 0.05         # optional: a candidate qualifies only with its ASR (a fraction) at most this
    bound_at = "every-seed"  # ... at every seed (the default), or "mean": its mean over the seeds

On each backdoored row (data, model, attack) the rule picks, among the qualifying candidates, the best
mean `metric`; the default instead when it qualifies and the best beats it by `margin` or less; none when
no candidate qualifies; nothing until every candidate has a record at every seed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mendnet.bench.grid import CLEAN, Grid
from mendnet.bench.run_settings import VALIDATION, RunSettings
from mendnet.bench.settings import config_from_table
from mendnet.errors import MendnetError

METRICS = {"acc": "ACC", "asr": "ASR", "ra": "RA", "der": "DER"}
"""The figures a rule may compare (fractions), with their names in the rule's text."""
HIGHER, LOWER = "higher", "lower"
EVERY_SEED, MEAN = "every-seed", "mean"
REQUIRED = ("candidates", "default", "metric", "prefer")

Figures = Mapping[int, Mapping[str, float]]
"""A candidate's figures on one row: seed → metric → value (fractions), one entry per finished record."""


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}"


def _points(fraction: float) -> str:
    """A difference of fractions in percentage points, as words ("1 point", "0.5 points")."""
    text = _percent(fraction)
    return f"{text} point" + ("" if text == "1" else "s")


@dataclass(frozen=True)
class Rule:
    """A selection rule (module docstring); margin and asr_bound are fractions."""

    candidates: tuple[str, ...]
    default: str
    metric: str
    prefer: str
    margin: float = 0.0
    asr_bound: float | None = None
    bound_at: str = EVERY_SEED

    def __post_init__(self) -> None:
        if len(self.candidates) < 2 or len(set(self.candidates)) != len(self.candidates):
            raise MendnetError(
                f"candidates must name two or more distinct columns, got {list(self.candidates)}"
            )
        if self.default not in self.candidates:
            raise MendnetError(f"default {self.default!r} is not among the candidates")
        if self.metric not in METRICS:
            raise MendnetError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.prefer not in (HIGHER, LOWER):
            raise MendnetError(f'prefer must be "{HIGHER}" or "{LOWER}", got {self.prefer!r}')
        if not 0 <= self.margin < 1:
            raise MendnetError(f"margin must lie in [0, 1) (a fraction), got {self.margin}")
        if self.asr_bound is not None and not 0 < self.asr_bound <= 1:
            raise MendnetError(f"asr_bound must lie in (0, 1] (a fraction), got {self.asr_bound}")
        if self.bound_at not in (EVERY_SEED, MEAN):
            raise MendnetError(f'bound_at must be "{EVERY_SEED}" or "{MEAN}", got {self.bound_at!r}')

    def text(self, seeds: Sequence[int]) -> str:
        """The rule in words, as the results state it, for the grid's `seeds`."""
        listed = ", ".join(map(str, seeds))
        over = f"seed {listed}" if len(seeds) == 1 else f"mean over seeds {listed}"
        best = "highest" if self.prefer == HIGHER else "lowest"
        text = f"the {best} {VALIDATION} {METRICS[self.metric]} ({over})"
        kept = f"`{self.default}` is kept"
        if self.asr_bound is not None:
            at = (
                f"at every seed ({listed})"
                if self.bound_at == EVERY_SEED
                else f"on average over seeds {listed}"
            )
            text = (
                f"among the candidates whose {VALIDATION} ASR is at most {_percent(self.asr_bound)}% {at}, "
                + text
            )
            kept += " when it qualifies"
        return (
            f"{text}; {kept} unless another candidate's is {self.prefer} by more than {_points(self.margin)}"
        )

    def shortfall(self, figures: Figures, seeds: Sequence[int]) -> str | None:
        """Why a candidate with `figures` does not qualify, in words; None when it does."""
        lacking = [s for s in seeds if self.metric not in figures[s]]
        if lacking:
            return f"no {METRICS[self.metric]} at seed {', '.join(map(str, lacking))}"
        if self.asr_bound is None:
            return None
        if any("asr" not in figures[s] for s in seeds):
            return "no ASR"
        bound = f"ASR above {_percent(self.asr_bound)}%"
        if self.bound_at == MEAN:
            return f"mean {bound}" if mean_of(figures, "asr", seeds) > self.asr_bound else None
        over = [s for s in seeds if figures[s]["asr"] > self.asr_bound]
        return f"{bound} at seed {', '.join(map(str, over))}" if over else None


def mean_of(figures: Figures, metric: str, seeds: Sequence[int]) -> float:
    """The mean of `metric` over `seeds` (a fraction)."""
    return statistics.mean(figures[s][metric] for s in seeds)


@dataclass(frozen=True)
class Choice:
    """What a rule picked on one row: `chosen` (None: nothing) and, when nothing, why."""

    chosen: str | None
    why: str = ""

    def text(self) -> str:
        return f"**{self.chosen}**" if self.chosen is not None else self.why


def choose(rule: Rule, figures: Mapping[str, Figures], seeds: Sequence[int]) -> Choice:
    """The rule's pick from each candidate's `figures` on one row (module docstring). Ties go to the
    candidate named first."""
    unfinished = [c for c in rule.candidates if any(s not in figures.get(c, {}) for s in seeds)]
    if unfinished:
        return Choice(None, f"none yet ({', '.join(unfinished)} not finished at every seed)")
    qualified = [c for c in rule.candidates if rule.shortfall(figures[c], seeds) is None]
    if not qualified:
        return Choice(None, "none (no candidate qualifies)")
    sign = 1 if rule.prefer == HIGHER else -1
    score = {c: sign * mean_of(figures[c], rule.metric, seeds) for c in qualified}
    best = max(qualified, key=score.__getitem__)
    if rule.default in score and score[best] - score[rule.default] <= rule.margin:
        return Choice(rule.default)
    return Choice(best)


def parse_rules(tables: dict[str, Any], grid: Grid, run: RunSettings) -> dict[str, Rule]:
    """The Rule of each `[select.NAME]` table, checked against the grid and the run settings."""
    rules = {}
    for name, settings in tables.items():
        where = f"select.{name}"
        if not isinstance(settings, dict):
            raise MendnetError(f"[{where}] must be a table of a selection rule's settings")
        if run.evaluate_on != VALIDATION:
            raise MendnetError(
                f"[{where}]: a selection chooses on the validation split; set run.evaluate_on = "
                f'"{VALIDATION}"'
            )
        missing = [key for key in REQUIRED if key not in settings]
        if missing:
            raise MendnetError(f"[{where}]: give {', '.join(REQUIRED)} (missing: {', '.join(missing)})")
        if "bound_at" in settings and "asr_bound" not in settings:
            raise MendnetError(f"[{where}]: bound_at needs asr_bound")
        rule = config_from_table(Rule, settings, where)
        strangers = [c for c in rule.candidates if c not in grid.repairs]
        if strangers:
            raise MendnetError(f"[{where}]: {', '.join(strangers)} not in grid.repairs")
        if all(a == CLEAN for a in grid.attacks):
            raise MendnetError(f"[{where}]: a selection needs a backdoor attack in grid.attacks")
        rules[name] = rule
    return rules
