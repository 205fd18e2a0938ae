"""The jobs the CLI and the demo run: train (optionally poisoned), evaluate, repair. Each takes and
writes artefact folders; the CLI only parses arguments into these calls."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mendnet.artefact import Artefact, provenance, write_artefact
from mendnet.data.catalog import load_dataset
from mendnet.data.defender import DefenderSplit, defender_sets, defender_split
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import BackdoorTest, backdoor_metrics, der
from mendnet.models import Classifier, ModelSpec, build_classifier
from mendnet.registry import REPAIRS
from mendnet.repair.context import RepairContext
from mendnet.threats.backdoor import ThreatRecord, make_trigger, poison
from mendnet.train import TrainConfig, fit


@dataclass(frozen=True)
class DataRef:
    """Where a data set comes from; saved in every artefact so later commands reload the same data."""

    name: str = "fashion-mnist"
    data_dir: str | None = None

    def load(self) -> tuple[ImageSet, ImageSet]:
        return load_dataset(self.name, "train", self.data_dir), load_dataset(self.name, "test", self.data_dir)


@dataclass(frozen=True)
class PoisonSpec:
    """A backdoor to plant while training: attack name and parameters, target, rate, mode."""

    attack: str = "badnets"
    target: int = 0
    rate: float = 0.1
    mode: str = "all-to-one"
    params: tuple[tuple[str, Any], ...] = ()
    clean_label: bool = False


@dataclass
class TrainOutcome:
    model: Classifier
    meta: dict[str, Any]
    metrics: dict[str, Any]


def backdoor_test_for(threat: ThreatRecord | None, test: ImageSet) -> BackdoorTest | None:
    """Rebuild the triggered test set recorded by a threat (None for a clean model)."""
    if threat is None:
        return None
    return BackdoorTest.build(test, make_trigger(threat.attack, threat.params), threat.target, threat.mode)


def threat_of(meta: dict[str, Any]) -> ThreatRecord | None:
    return ThreatRecord.from_json(meta["threat"]) if meta.get("threat") else None


def data_of(meta: dict[str, Any]) -> DataRef:
    d = meta.get("data") or {}
    if "name" not in d:
        raise MendnetError("the artefact records no data set; pass --data")
    return DataRef(d["name"], d.get("data_dir"))


def train_model(
    data: DataRef,
    arch: str,
    cfg: TrainConfig,
    *,
    poison_spec: PoisonSpec | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    sets: tuple[ImageSet, ImageSet] | None = None,
    train_subset: int | None = None,
) -> TrainOutcome:
    """Train `arch` on `data` (poisoned first when `poison_spec` is given) and evaluate it.

    sets: already loaded (train, test) sets, to avoid reading files again.
    train_subset: train on the first n images of a seeded permutation (a quick run).
    """
    train, test = sets if sets is not None else data.load()
    chosen = torch.arange(len(train))
    if train_subset is not None:
        if not 0 < train_subset <= len(train):
            raise MendnetError(f"train subset {train_subset} must lie in [1, {len(train)}]")
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        chosen = perm[:train_subset].sort().values
        train = train.subset(chosen)
    threat = None
    if poison_spec is not None:
        trigger = make_trigger(poison_spec.attack, dict(poison_spec.params))
        train, threat = poison(
            train,
            trigger,
            target=poison_spec.target,
            rate=poison_spec.rate,
            mode=poison_spec.mode,
            clean_label=poison_spec.clean_label,
            seed=seed,
        )
        # recorded as indices of the full training set, so defender data can avoid them
        threat = replace(threat, poisoned_indices=chosen[threat.poisoned_indices].tolist())
    spec = ModelSpec(
        arch=arch,
        num_classes=train.num_classes,
        input_shape=train.shape,
        mean=train.mean,
        std=train.std,
    )
    torch.manual_seed(seed)
    model = build_classifier(spec)
    history = fit(
        model,
        train,
        cfg,
        seed=seed,
        device=device,
        progress=progress,
        description=f"train {arch}" + (f" ({poison_spec.attack})" if poison_spec else ""),
    )
    metrics = backdoor_metrics(model, test, backdoor_test_for(threat, test), device=device)
    metrics["train_seconds"] = history.seconds
    meta = {
        "data": asdict(data),
        "train_subset": train_subset,
        "threat": threat.to_json() if threat else None,
        "training": {**asdict(cfg), "history": [asdict(e) for e in history.epochs]},
        "provenance": provenance(seed),
    }
    return TrainOutcome(model.cpu(), meta, metrics)


def evaluate_artefact(
    art: Artefact, device: torch.device | str = "cpu", data: DataRef | None = None
) -> dict[str, float]:
    """ACC (and ASR, RA for the recorded threat) of a loaded artefact on its data set's test split."""
    ref = data or data_of(art.meta)
    test = load_dataset(ref.name, "test", ref.data_dir)
    check_fits(art.model, test)
    return backdoor_metrics(
        art.model.to(device), test, backdoor_test_for(threat_of(art.meta), test), device=device
    )


def check_fits(model: Classifier, data: ImageSet) -> None:
    """The model's recorded input shape and classes must match the data set."""
    spec = model.spec
    if tuple(spec.input_shape) != data.shape:
        raise MendnetError(f"model expects inputs {tuple(spec.input_shape)} but {data.name} has {data.shape}")
    if spec.num_classes != data.num_classes:
        raise MendnetError(f"model outputs {spec.num_classes} classes but {data.name} has {data.num_classes}")


@dataclass
class RepairOutcome:
    model: Classifier
    meta: dict[str, Any]
    metrics: dict[str, Any]


def repair_model(
    art: Artefact,
    method: str,
    config: Any,
    *,
    clean_fraction: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    teacher: Classifier | None = None,
    sets: tuple[ImageSet, ImageSet] | None = None,
    before: dict[str, float] | None = None,
) -> RepairOutcome:
    """Run a registered repair on an artefact's model with seeded clean defender data, and measure
    ACC/ASR/RA before and after, DER and wall-clock seconds."""
    if method not in REPAIRS:
        raise MendnetError(f"unknown repair {method!r}; known: {', '.join(REPAIRS)}")
    ref = data_of(art.meta)
    train, test = sets if sets is not None else ref.load()
    check_fits(art.model, test)
    threat = threat_of(art.meta)
    poisoned = torch.tensor(threat.poisoned_indices, dtype=torch.long) if threat else None
    split = defender_split(len(train), clean_fraction, seed=seed, exclude=poisoned)
    d_train, d_val = defender_sets(train, split)
    backdoor = backdoor_test_for(threat, test)
    if before is None:
        before = backdoor_metrics(art.model.to(device), test, backdoor, device=device)
    ctx = RepairContext(d_train, d_val, device=device, seed=seed, progress=progress, teacher=teacher)
    start = time.perf_counter()
    result = REPAIRS[method].run(art.model.to(device), ctx, config)
    seconds = time.perf_counter() - start
    after = backdoor_metrics(result.model, test, backdoor, device=device)
    metrics: dict[str, Any] = {**after, "seconds": seconds, "before": before}
    if "asr" in after:
        metrics["der"] = der(before, after)
    meta = {
        "data": asdict(ref),
        "threat": art.meta.get("threat"),
        "repair": {
            "method": method,
            "config": asdict(config),
            "clean_fraction": clean_fraction,
            "parent": str(art.path) if art.path else None,
            "info": result.info,
        },
        "defender": split.to_json(),
        "provenance": provenance(seed),
    }
    return RepairOutcome(result.model.cpu(), meta, metrics)


def write_outcome(
    folder: Path, outcome: TrainOutcome | RepairOutcome, files: dict[str, bytes | str] | None = None
) -> None:
    write_artefact(folder, outcome.model, outcome.meta, outcome.metrics, files)


def defender_of(meta: dict[str, Any]) -> DefenderSplit | None:
    return DefenderSplit.from_json(meta["defender"]) if meta.get("defender") else None
