"""The jobs the CLI and the demo run: train (optionally poisoned), evaluate, repair. Each takes and
writes artefact folders; the CLI only parses arguments into these calls.

Differences from the paper and the authors' release: docs/deviations.md#general.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mendnet.artefact import Artefact, load_artefact, provenance, write_artefact
from mendnet.data.catalog import load_dataset
from mendnet.data.defender import DefenderSplit, defender_sets, defender_split
from mendnet.data.imageset import ImageSet
from mendnet.detect.neural_cleanse import Config as NCConfig
from mendnet.detect.neural_cleanse import reverse_engineer
from mendnet.detect.reversed_trigger import TRIGGER_FILE, TRIGGER_PNG
from mendnet.errors import MendnetError
from mendnet.evaluate import BackdoorTest, backdoor_metrics, der
from mendnet.models import Classifier, ModelSpec, build_classifier
from mendnet.registry import REPAIRS
from mendnet.repair.context import KnownTrigger, RepairContext, asks_for_oracle
from mendnet.threats.backdoor import Planted, ThreatRecord, attack_entry, make_trigger, plant
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
    """A backdoor to plant while training: attack name and parameters, target, rate, mode.

    params: the trigger's parameters (`--attack-param KEY=VALUE`), plus two options of the planting
    itself: `clean_label` (0 or 1, like the field) and `clean_model` (an artefact folder of a clean model
    of the same task, for Trojan and CL; without it `train_model` trains a clean surrogate first).
    clean_label: None for the attack's default (SIG, CL and Refool clean-label, the others dirty).
    """

    attack: str = "badnets"
    target: int = 0
    rate: float = 0.1
    mode: str = "all-to-one"
    params: tuple[tuple[str, Any], ...] = ()
    clean_label: bool | None = None

    def trigger_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params if k not in ("clean_label", "clean_model")}

    def labelling(self) -> bool | None:
        """The asked labelling (None: the attack's default); the field and the parameter must agree."""
        given = dict(self.params).get("clean_label")
        if given is None:
            return self.clean_label
        if given not in (0, 1):
            raise MendnetError(f"clean_label must be 0 or 1, got {given!r}")
        if self.clean_label is not None and bool(given) != self.clean_label:
            raise MendnetError("clean_label is given twice with different values")
        return bool(given)

    def clean_model_path(self) -> str | None:
        path = dict(self.params).get("clean_model")
        return None if path is None else str(path)

    def plant(
        self,
        train: ImageSet,
        *,
        seed: int,
        clean_model: Callable[[], Classifier] | None,
        index_map: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> Planted:
        """Poison `train` as this spec says (`threats.backdoor.plant`)."""
        return plant(
            train,
            self.attack,
            self.trigger_params(),
            target=self.target,
            rate=self.rate,
            mode=self.mode,
            clean_label=self.labelling(),
            seed=seed,
            clean_model=clean_model,
            index_map=index_map,
            device=device,
        )


@dataclass
class TrainOutcome:
    model: Classifier
    meta: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, bytes | str] = field(default_factory=dict)


def backdoor_test_for(
    threat: ThreatRecord | None, test: ImageSet, train: ImageSet | None = None
) -> BackdoorTest | None:
    """Rebuild the triggered test set recorded by a threat (None for a clean model).

    train: the full training set, for triggers whose rebuild needs it (Refool's reflection pool); when
    not given it is loaded from the record's data reference (set by `threat_of`).
    """
    if threat is None:
        return None
    if train is None and attack_entry(threat.attack).needs_data:
        if not threat.data or "name" not in threat.data:
            raise MendnetError(f"rebuilding the {threat.attack} trigger needs the training set; pass --data")
        train = load_dataset(threat.data["name"], "train", threat.data.get("data_dir"))
    trigger = make_trigger(threat.attack, threat.params, train)
    return BackdoorTest.build(test, trigger, threat.target, threat.mode)


def threat_of(meta: dict[str, Any]) -> ThreatRecord | None:
    """The artefact's threat record, with the artefact's data reference attached (for rebuilding)."""
    if not meta.get("threat"):
        return None
    return replace(ThreatRecord.from_json(meta["threat"]), data=meta.get("data"))


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
    clean_model: Classifier | None = None,
) -> TrainOutcome:
    """Train `arch` on `data` (poisoned first when `poison_spec` is given) and evaluate it.

    sets: already loaded (train, test) sets, to avoid reading files again.
    train_subset: train on the first n images of a seeded permutation (a quick run).
    clean_model: a clean model of the task for attacks that need one (Trojan's patch, CL's PGD). Else
    the spec's `clean_model` artefact is loaded, or a clean surrogate of the same architecture and
    training settings is trained on the same (unpoisoned) images with seed + 1 first, which doubles the
    training time. The outcome's `files` hold `trigger.png` (a clean/poisoned training pair and a
    clean/triggered test pair).
    """
    full_train, test = sets if sets is not None else data.load()
    train = full_train
    chosen = torch.arange(len(train))
    if train_subset is not None:
        if not 0 < train_subset <= len(train):
            raise MendnetError(f"train subset {train_subset} must lie in [1, {len(train)}]")
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        chosen = perm[:train_subset].sort().values
        train = train.subset(chosen)
    threat = None
    files: dict[str, bytes | str] = {}
    if poison_spec is not None:
        info: dict[str, Any] = {}
        clean = train

        def provide_clean_model() -> Classifier:
            if clean_model is not None:
                info["clean_model"] = "given by the caller"
                model = clean_model
            elif poison_spec.clean_model_path():
                path = poison_spec.clean_model_path()
                model = load_artefact(path).model
                info["clean_model"] = str(path)
            else:
                surrogate = train_model(
                    data, arch, cfg, seed=seed + 1, device=device, progress=progress, sets=(clean, test)
                )
                model = surrogate.model
                info["clean_model"] = {
                    "surrogate": arch,
                    "seed": seed + 1,
                    "acc": surrogate.metrics["acc"],
                    "train_seconds": surrogate.metrics["train_seconds"],
                }
            check_fits(model, clean)
            return model

        planted = poison_spec.plant(
            train, seed=seed, clean_model=provide_clean_model, index_map=chosen, device=device
        )
        threat = replace(planted.record, info=info, data=asdict(data))
        backdoor = backdoor_test_for(threat, test, full_train)
        from mendnet.poison_export import trigger_png  # imports this module

        files["trigger.png"] = trigger_png(clean, planted, backdoor)
        train = planted.data
    else:
        backdoor = None
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
    metrics = backdoor_metrics(model, test, backdoor, device=device)
    metrics["train_seconds"] = history.seconds
    meta = {
        "data": asdict(data),
        "train_subset": train_subset,
        "threat": threat.to_json() if threat else None,
        "training": {**asdict(cfg), "history": [asdict(e) for e in history.epochs]},
        "provenance": provenance(seed),
    }
    return TrainOutcome(model.cpu(), meta, metrics, files)


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


def defender_of(threat: ThreatRecord | None, n_train: int, clean_fraction: float, seed: int) -> DefenderSplit:
    """The seeded clean defender split of the training set (the threat's poisoned images excluded)."""
    poisoned = torch.tensor(threat.poisoned_indices, dtype=torch.long) if threat else None
    return defender_split(n_train, clean_fraction, seed=seed, exclude=poisoned)


@dataclass(frozen=True)
class DefenderData:
    """An artefact's data set (checked against its model), its recorded threat and the seeded clean
    defender split of the training set."""

    ref: DataRef
    train: ImageSet
    test: ImageSet
    threat: ThreatRecord | None
    split: DefenderSplit
    d_train: ImageSet
    d_val: ImageSet


def defender_data(
    art: Artefact, clean_fraction: float, seed: int, sets: tuple[ImageSet, ImageSet] | None = None
) -> DefenderData:
    """Load (or take `sets`) the artefact's data, check the model fits it, and split off the defender's
    clean training and validation images."""
    ref = data_of(art.meta)
    train, test = sets if sets is not None else ref.load()
    check_fits(art.model, test)
    threat = threat_of(art.meta)
    split = defender_of(threat, len(train), clean_fraction, seed)
    d_train, d_val = defender_sets(train, split)
    return DefenderData(ref, train, test, threat, split, d_train, d_val)


def oracle_trigger(threat: ThreatRecord | None, backdoor: BackdoorTest | None) -> KnownTrigger:
    """The recorded backdoor handed to a method that asks for the oracle; MendnetError if there is none."""
    if backdoor is None or threat is None:
        raise MendnetError("--oracle-trigger needs an artefact with a recorded backdoor")
    return KnownTrigger(backdoor.trigger, threat.target, threat.mode)


@dataclass
class RepairOutcome:
    model: Classifier
    meta: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, bytes | str] = field(default_factory=dict)


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
    expected = REPAIRS[method].config
    if type(config) is not expected:  # exact: fineprune.Config subclasses finetune.Config
        raise MendnetError(
            f"repair {method!r} takes a {expected.__module__}.{expected.__qualname__}, "
            f"got {type(config).__module__}.{type(config).__qualname__}"
        )
    data = defender_data(art, clean_fraction, seed, sets)
    test, threat = data.test, data.threat
    backdoor = backdoor_test_for(threat, test)
    if before is None:
        before = backdoor_metrics(art.model.to(device), test, backdoor, device=device)
    oracle = asks_for_oracle(config)
    known = oracle_trigger(threat, backdoor) if oracle else None
    ctx = RepairContext(
        data.d_train,
        data.d_val,
        device=device,
        seed=seed,
        progress=progress,
        teacher=teacher,
        known_trigger=known,
    )
    start = time.perf_counter()
    result = REPAIRS[method].run(art.model.to(device), ctx, config)
    seconds = time.perf_counter() - start
    after = backdoor_metrics(result.model, test, backdoor, device=device)
    metrics: dict[str, Any] = {**after, "seconds": seconds, "before": before}
    if "asr" in after:
        metrics["der"] = der(before, after)
    meta = {
        "data": asdict(data.ref),
        "threat": art.meta.get("threat"),
        "oracle": oracle,
        "repair": {
            "method": method,
            "config": asdict(config),
            "clean_fraction": clean_fraction,
            "parent": str(art.path) if art.path else None,
            "info": result.info,
        },
        "defender": data.split.to_json(),
        "provenance": provenance(seed),
    }
    return RepairOutcome(result.model.cpu(), meta, metrics, result.files)


def write_outcome(
    folder: Path, outcome: TrainOutcome | RepairOutcome, files: dict[str, bytes | str] | None = None
) -> None:
    """Write a train or repair outcome as an artefact in `folder`, with its own files unless `files`."""
    write_artefact(folder, outcome.model, outcome.meta, outcome.metrics, files or outcome.files)


@dataclass
class DetectOutcome:
    """A detection's report (JSON-able, also in `files` as detect.json) and the files of its folder."""

    report: dict[str, Any]
    files: dict[str, bytes | str]


def detect_artefact(
    art: Artefact,
    config: NCConfig,
    *,
    clean_fraction: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    sets: tuple[ImageSet, ImageSet] | None = None,
) -> DetectOutcome:
    """Neural Cleanse on an artefact's model: reverse every label's trigger on seeded clean defender data,
    flag the outlier labels. The test set is used only for the figure's true/reversed trigger pair
    (when the artefact records a threat). Files: detect.json, the reversed trigger and its PNG."""
    from mendnet.report.trigger_grid import reversed_trigger_png

    data = defender_data(art, clean_fraction, seed, sets)
    test, threat = data.test, data.threat
    triggers, log = reverse_engineer(
        art.model, data.d_train, config, seed=seed, device=device, progress=progress
    )
    flagged = triggers.flagged(config.threshold)
    report = {
        "model": str(art.path) if art.path else None,
        "method": "neural-cleanse",
        "config": asdict(config),
        "clean_fraction": clean_fraction,
        "labels": [{**row, "class": test.classes[row["label"]]} for row in triggers.table(config.threshold)],
        "flagged": flagged,
        "threat_target": threat.target if threat else None,
        "epochs": log.epochs,
        "seconds": log.seconds,
        "defender": data.split.to_json(),
        "provenance": provenance(seed),
    }
    comparison = []
    backdoor = backdoor_test_for(threat, test, data.train)
    if backdoor is not None and len(backdoor.data):
        x = backdoor.data.float_images(torch.arange(1))
        shown = flagged[0] if flagged else int(triggers.norms.argmin())
        comparison = [
            (x[0], "test image"),
            (backdoor.trigger.apply(x)[0], f"true trigger ({threat.attack})"),
            (
                triggers.stamp(x, torch.tensor([shown]))[0],
                f"reversed, label {shown}" + ("" if flagged else " (not flagged)"),
            ),
        ]
    files: dict[str, bytes | str] = {
        "detect.json": json.dumps(report, indent=2) + "\n",
        TRIGGER_FILE: triggers.to_bytes(),
        TRIGGER_PNG: reversed_trigger_png(triggers, test.classes, config.threshold, comparison),
    }
    return DetectOutcome(report, files)
