"""Train a model on a data set, optionally with a planted backdoor, and evaluate it."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import torch

from mendnet.artefact import load_artefact, provenance
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.errors import MendnetError
from mendnet.evaluate import backdoor_metrics
from mendnet.jobs.outcome import ModelOutcome
from mendnet.models import Classifier, ModelSpec, build_classifier, check_fits
from mendnet.report.poison_grid import trigger_png
from mendnet.threats.backdoor.spec import PoisonSpec, backdoor_test_for
from mendnet.train import TrainConfig, fit


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
) -> ModelOutcome:
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
        threat = replace(planted.record, info=info, data=data.to_json())
        backdoor = backdoor_test_for(threat, test, full_train)
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
        "data": data.to_json(),
        "train_subset": train_subset,
        "threat": threat.to_json() if threat else None,
        "training": {**asdict(cfg), "history": [asdict(e) for e in history.epochs]},
        "provenance": provenance(seed),
    }
    return ModelOutcome(model.cpu(), meta, metrics, files)
