"""`mend`: repair a model whose attack is unknown from clean defender data alone (docs/methods.md §10).

1. The clean images are split (seeded) into a repair part and mend's validation part (`val_share`).
2. Scan: every label's trigger is reversed on the repair part (`scan.scan`).
3. Each candidate repair runs on the repair part only (its own 10% held out for the method's rules).
4. The untouched model and every candidate are scored on the validation part only (`decide.Score`),
   and `decide.decide` keeps one.

Nothing here reads a test set or a recorded trigger; the output records every score and the seconds of
each step. Differences from the paper and the authors' release: docs/deviations.md#mend.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from mendnet.data.imageset import ImageSet
from mendnet.detect.neural_cleanse import Config as NCConfig
from mendnet.detect.neural_cleanse import refine_triggers
from mendnet.detect.outliers import anomaly_index
from mendnet.detect.reversed_trigger import TRIGGER_FILE, ReversedTriggers
from mendnet.errors import MendnetError
from mendnet.evaluate import accuracy, predict
from mendnet.mend.decide import ORIGINAL, Decision, Rule, Score, decide
from mendnet.mend.scan import Scan, scan
from mendnet.models import Classifier
from mendnet.registry import REPAIRS
from mendnet.repair import fst, nad
from mendnet.repair.context import RepairContext

DEFAULT_CANDIDATES = ("fst", "nad", "lancet-finetune", "fineprune")

MIN_PART_IMAGES = 50


@dataclass(frozen=True)
class MendConfig:
    """candidates: registered repairs to try (default FST, NAD, AI-Lancet fine-tuning, fine-pruning).
    val_share: the fraction of the clean images kept for mend's validation part. scan_epochs,
    scan_batches, scan_batch_size: the scan's Neural Cleanse reversal (its epochs, mini-batches per
    epoch and label, images per mini-batch; `detect.neural_cleanse.Config`, whose defaults the other
    settings keep); focus, focus_after: after `focus_after` epochs only the labels flagged then, and at
    least the `focus` smallest-norm ones, go on (`scan`). rescore_epochs: 0 (default) scores every
    model with the scan's reversed triggers; n > 0 first reverses each suspect's trigger again on each
    scored model, from the scan's trigger at the scan's final λ, for n epochs on the repair part
    (`refine_triggers`), so that a candidate repaired against the scan's trigger is not scored with that
    same trigger (docs/methods.md §10). rule: the selection rule (`decide.Rule`).
    nad_lr, nad_teacher: NAD's candidate settings (the demo's, chosen on the validation split:
    docs/benchmarks.md `tune_nad`; the `nad` method keeps the paper's). fst_lr: FST's candidate lr
    (0.04, chosen on the validation split over the release's 0.01, 0.02 and smaller lrs:
    `mend_fst_probe`, `mend_fst_lr_probe`; the `fst` method keeps the release's)."""

    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    val_share: float = 0.2
    scan_epochs: int = 60
    scan_batches: int = NCConfig.batches_per_epoch
    scan_batch_size: int = NCConfig.batch_size
    focus: int = 1
    focus_after: int = 10
    rescore_epochs: int = 0
    rule: Rule = field(default_factory=Rule)
    nad_lr: float = 0.045
    nad_teacher: str = "finetune-student"
    fst_lr: float = 0.04

    def __post_init__(self) -> None:
        unknown = [c for c in self.candidates if c not in REPAIRS]
        if unknown:
            raise MendnetError(f"mend: unknown candidate {', '.join(unknown)}; known: {', '.join(REPAIRS)}")
        if not self.candidates:
            raise MendnetError("mend: give at least one candidate repair")
        if self.rescore_epochs < 0:
            raise MendnetError(f"mend: rescore_epochs must be 0 or more, got {self.rescore_epochs}")
        if not 0 < self.val_share < 1:
            raise MendnetError(f"mend: val_share must lie in (0, 1), got {self.val_share}")
        self.scan_config()

    def scan_config(self) -> NCConfig:
        return NCConfig(
            epochs=self.scan_epochs,
            batches_per_epoch=self.scan_batches,
            batch_size=self.scan_batch_size,
            focus=self.focus,
            focus_after=self.focus_after,
        )

    def candidate_config(self, name: str, trigger_file: Path, label: int) -> Any:
        """The config mend runs candidate `name` with: the method's defaults, NAD's and FST's
        validation-chosen settings, and, for a method that declares `uses_trigger`, the scan's reversed
        triggers (and the suspect `label` when its config takes one)."""
        if name == "nad":
            return nad.Config(lr=self.nad_lr, teacher_init=self.nad_teacher)
        if name == "fst":
            return fst.Config(lr=self.fst_lr)
        method = REPAIRS[name]
        if not method.uses_trigger:
            return method.config()
        given: dict[str, Any] = {"trigger": str(trigger_file)}
        if "label" in {f.name for f in fields(method.config)}:
            given["label"] = label
        return method.config(**given)


@dataclass
class MendResult:
    """The kept model, the decision, every score, the scan, the candidates' records and the seconds of
    each step (JSON-able except `model`, `scan` and `candidate_models`, every candidate's model)."""

    model: Classifier
    decision: Decision
    scores: list[Score]
    scan: Scan
    candidates: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    parts: dict[str, int]
    candidate_models: dict[str, Classifier] = field(default_factory=dict)

    def measured(
        self, original: Classifier, measure: Callable[[Classifier], dict[str, Any]]
    ) -> dict[str, Any]:
        """Every model of the run measured once by `measure` (only after the decision, e.g. on a test set
        for the report): "original" (`original`, the untouched model), "candidates" (each candidate's)
        and "kept" (one of those)."""
        before = measure(original)
        each = {name: measure(m) for name, m in self.candidate_models.items()}
        return {"original": before, "kept": each.get(self.decision.chosen, before), "candidates": each}

    def record(self) -> dict[str, Any]:
        """What model.json and the report keep of the run."""
        return {
            "chosen": self.decision.chosen,
            "reason": self.decision.reason,
            "qualified": self.decision.qualified,
            "flagged": self.scan.flagged,
            "suspects": self.scan.suspects,
            "scan": {
                "norms": [float(n) for n in self.scan.triggers.norms],
                "anomaly_index": finite_or_none(self.scan.triggers.anomaly_index()),
                "focus_anomaly_index": None
                if self.scan.log.focus_norms is None
                else finite_or_none(anomaly_index(torch.tensor(self.scan.log.focus_norms))),
                "epochs": self.scan.log.epochs,
                "stopped_by_focus": self.scan.log.stopped_by_focus,
                "focus_norms": self.scan.log.focus_norms,
            },
            "scores": [
                {
                    "name": s.name,
                    "acc": s.acc,
                    "proxy": {str(k): v for k, v in s.proxy.items()},
                    "worst": s.worst,
                    **(
                        {}
                        if s.scan_proxy is None
                        else {"scan_proxy": {str(k): v for k, v in s.scan_proxy.items()}}
                    ),
                }
                for s in self.scores
            ],
            "candidates": self.candidates,
            "seconds": self.seconds,
            "parts": self.parts,
        }


def finite_or_none(values: torch.Tensor) -> list[float | None]:
    """JSON-able floats, None for an infinite value."""
    return [float(v) if torch.isfinite(v) else None for v in values]


def split_parts(
    clean: ImageSet, val_share: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices into `clean` (seeded, each sorted): (repair train, repair val, mend val). A share
    `val_share` is mend's validation part; the rest is the repair part, split 90/10 for the candidates
    (their methods' own held-out rules)."""
    perm = torch.randperm(len(clean), generator=torch.Generator().manual_seed(seed))
    n_val = round(val_share * len(clean))
    rest = perm[n_val:]
    n_repair_val = max(1, round(0.1 * len(rest)))
    train, repair_val, mend_val = rest[n_repair_val:], rest[:n_repair_val], perm[:n_val]
    if min(len(train), len(mend_val)) < MIN_PART_IMAGES:
        raise MendnetError(
            f"mend needs at least {MIN_PART_IMAGES} images in its repair and validation parts; {len(clean)} "
            f"clean images at val_share {val_share} give {len(train)} and {len(mend_val)}: bring more"
        )
    return train.sort().values, repair_val.sort().values, mend_val.sort().values


def proxy_asr(
    model: Classifier,
    triggers: ReversedTriggers,
    labels: list[int],
    val: ImageSet,
    device: torch.device | str,
) -> dict[int, float]:
    """For each label s: the share of `val` images whose label is not s that s's reversed trigger sends
    to s (fractions)."""
    out = {}
    for s in labels:
        others = val.subset(torch.nonzero(val.labels != s).flatten())
        target = torch.full((1,), s, dtype=torch.long)

        def stamp(x: torch.Tensor, s_: torch.Tensor = target) -> torch.Tensor:
            return triggers.stamp(x, s_.to(x.device).expand(len(x)))

        preds = predict(model, others, transform=stamp, device=device)
        out[s] = float((preds == s).float().mean()) if len(preds) else 0.0
    return out


def score_model(
    name: str,
    model: Classifier,
    found: Scan,
    val: ImageSet,
    repair_part: ImageSet,
    config: MendConfig,
    *,
    seed: int,
    device: torch.device | str,
) -> Score:
    """`model`'s validation accuracy and proxy ASR per suspect on `val`: with the scan's triggers, or,
    with `config.rescore_epochs`, with the suspects' triggers reversed again on `model` (on the repair
    part, from the scan's triggers at the scan's final λ), the scan's triggers' success kept beside."""
    acc = accuracy(model, val, device=device)
    at_scan = proxy_asr(model, found.triggers, found.suspects, val, device)
    if not config.rescore_epochs:
        return Score(name, acc, at_scan)
    cost = [found.log.final_cost[s] for s in found.suspects]
    again = refine_triggers(
        model,
        repair_part,
        found.triggers,
        found.suspects,
        cost,
        config.rescore_epochs,
        config.scan_config(),
        seed=seed,
        device=device,
    )
    return Score(name, acc, proxy_asr(model, again, found.suspects, val, device), at_scan)


def mend(
    model: Classifier,
    clean: ImageSet,
    config: MendConfig = MendConfig(),
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> MendResult:
    """Scan, repair, score and decide (module docstring); `model` is not changed. `say` receives one
    line per step (progress for logs)."""
    if len(clean) and clean.num_classes != model.spec.num_classes:
        raise MendnetError(
            f"model outputs {model.spec.num_classes} classes, the clean data has {clean.num_classes}"
        )
    train_idx, val_idx, mend_idx = split_parts(clean, config.val_share, seed)
    r_train, r_val, m_val = clean.subset(train_idx), clean.subset(val_idx), clean.subset(mend_idx)
    repair_part = clean.subset(torch.cat([train_idx, val_idx]).sort().values)
    parts = {"repair_train": len(r_train), "repair_val": len(r_val), "mend_val": len(m_val)}
    net = copy.deepcopy(model).to(device).eval()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    say(f"mend: scanning {model.spec.num_classes} labels on {len(repair_part)} repair images")
    found = scan(net, repair_part, config.scan_config(), seed=seed, device=device, progress=progress)
    seconds["scan"] = time.perf_counter() - start
    say(
        f"mend: scan done in {seconds['scan']:.0f} s; flagged {found.flagged or 'none'}, "
        f"suspects {found.suspects}"
    )
    ctx = RepairContext(r_train, r_val, device=device, seed=seed, progress=progress)
    models: dict[str, Classifier] = {}
    records: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trigger_file = Path(tmp) / TRIGGER_FILE
        trigger_file.write_bytes(found.triggers.to_bytes())
        for name in config.candidates:
            cfg = config.candidate_config(name, trigger_file, found.suspects[0])
            settings = {k: v for k, v in asdict(cfg).items() if k != "trigger"}  # a temporary file
            say(f"mend: candidate {name}")
            t = time.perf_counter()
            try:
                result = REPAIRS[name].run(net, ctx, cfg)
            except MendnetError as e:
                seconds[name] = time.perf_counter() - t
                records[name] = {"error": str(e), "settings": settings}
                say(f"mend: candidate {name} could not run: {e}")
                continue
            seconds[name] = time.perf_counter() - t
            models[name] = result.model.to(device).eval()
            records[name] = {
                "info": {k: v for k, v in result.info.items() if k != "changed_indices"},
                "settings": settings,
            }
            say(f"mend: candidate {name} done in {seconds[name]:.0f} s")
    t = time.perf_counter()
    if config.rescore_epochs:
        say(f"mend: re-reversing the suspects' triggers on every model ({config.rescore_epochs} epochs)")
    scores = [
        score_model(n, m, found, m_val, repair_part, config, seed=seed, device=device)
        for n, m in [(ORIGINAL, net), *models.items()]
    ]
    seconds["scoring"] = time.perf_counter() - t
    decision = decide(scores[0], scores[1:], bool(found.flagged), config.rule)
    seconds["total"] = time.perf_counter() - start
    say(f"mend: {decision.reason}")
    kept = net if decision.chosen == ORIGINAL else models[decision.chosen]
    candidates = {name: m.cpu() for name, m in models.items()}
    return MendResult(kept.cpu(), decision, scores, found, records, seconds, parts, candidates)
