"""Mend's scores and its one rule (docs/methods.md §10): pure functions of validation figures.

Every candidate and the untouched model are scored on mend's validation part only: clean accuracy, and
for each suspect label its reversed trigger's success (the share of validation images of other labels
that the trigger sends to the suspect: the defender's proxy for the attack success rate). With
`MendConfig.rescore_epochs`, the proxy is that of the trigger reversed again on each scored model, and
the scan's trigger's own success is kept beside it (`Score.scan_proxy`).

Differences from the paper and the authors' release: docs/deviations.md#mend.
"""

from __future__ import annotations

from dataclasses import dataclass

from mendnet.errors import MendnetError

ORIGINAL = "original"


@dataclass(frozen=True)
class Score:
    """A model's validation accuracy and proxy ASR per suspect label (fractions): the rule's basis.
    scan_proxy: the scan's triggers' success on this model, when `proxy` comes from triggers reversed
    again on it (None otherwise)."""

    name: str
    acc: float
    proxy: dict[int, float]
    scan_proxy: dict[int, float] | None = None

    @property
    def worst(self) -> float:
        """The highest proxy ASR over the suspects."""
        return max(self.proxy.values(), default=0.0)


@dataclass(frozen=True)
class Rule:
    """acc_tolerance: with a flagged label, a candidate qualifies within this much of the best validation
    accuracy (fraction; 3 points, chosen on the validation split over 1 point: docs/benchmarks.md
    `mend_rule_probe`, `mend_rescore_probe`). clean_tolerance: with nothing flagged, within this much of
    the untouched model's (0.5 point: a clean model must not be damaged). min_gain: a candidate replaces
    the model only if it lowers the worst proxy ASR by at least this much (10 points)."""

    acc_tolerance: float = 0.03
    clean_tolerance: float = 0.005
    min_gain: float = 0.10

    def __post_init__(self) -> None:
        for name in ("acc_tolerance", "clean_tolerance", "min_gain"):
            if not 0 <= getattr(self, name) <= 1:
                raise MendnetError(f"mend: {name} must lie in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class Decision:
    """The model kept (a candidate's name or `ORIGINAL`), why, and the candidates that qualified."""

    chosen: str
    reason: str
    qualified: list[str]


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def decide(original: Score, candidates: list[Score], flagged: bool, rule: Rule = Rule()) -> Decision:
    """Among the candidates whose validation accuracy qualifies (see `Rule`), the lowest worst proxy ASR
    (ties: the higher accuracy); it replaces the untouched model only if it lowers the worst proxy by at
    least `min_gain`."""
    if flagged:
        floor = max(s.acc for s in [original, *candidates]) - rule.acc_tolerance
        points = f"{100 * rule.acc_tolerance:g}"
        basis = f"within {points} point{'' if points == '1' else 's'} of the best validation accuracy"
    else:
        floor = original.acc - rule.clean_tolerance
        basis = (
            f"within {100 * rule.clean_tolerance:g} point of the untouched model's accuracy (nothing flagged)"
        )
    qualified = [s for s in candidates if s.acc >= floor]
    if not qualified:
        return Decision(ORIGINAL, f"kept the model: no candidate's accuracy is {basis}", [])
    best = min(qualified, key=lambda s: (s.worst, -s.acc))
    names = [s.name for s in qualified]
    gain = original.worst - best.worst
    if gain < rule.min_gain - 1e-9:  # exact boundary: floating-point error is not a shortfall
        return Decision(
            ORIGINAL,
            f"kept the model: the best qualifying candidate ({best.name}) lowers the worst proxy ASR from "
            f"{pct(original.worst)} to {pct(best.worst)}, less than {100 * rule.min_gain:g} points",
            names,
        )
    return Decision(
        best.name,
        f"{best.name}: the lowest worst proxy ASR ({pct(best.worst)}, untouched {pct(original.worst)}) among "
        f"the candidates {basis} ({', '.join(names)}); validation accuracy {pct(best.acc)}, untouched "
        f"{pct(original.acc)}",
        names,
    )
