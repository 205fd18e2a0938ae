"""Poisoned data for users who train elsewhere (`mendnet poison`).

Format of an output folder (also written into it as README.txt):

- `poisoned.safetensors`: `images` uint8 N×C×H×W (the whole training set, poisoned images in place),
  `labels` int64 N (as trained on: the target for dirty-label poisons), `poisoned_indices` int64 P
  (rows of `images` that were poisoned, ascending), `original_labels` int64 P (their labels before).
- `threat.json`: the format name, the data set (name, classes, image shape, mean/std) and the threat
  record (attack, trigger parameters, target, mode, rate, labelling, indices, original labels), from
  which `mendnet` rebuilds the trigger to test a model trained on the set.
- `trigger.png`: a clean/poisoned training image and a clean/triggered test image.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from mendnet.artefact import atomic_output_dir, load_artefact, provenance, write_json
from mendnet.data.ref import DataRef
from mendnet.models import Classifier, check_fits
from mendnet.report.poison_grid import trigger_png
from mendnet.threats.backdoor import Planted
from mendnet.threats.backdoor.spec import PoisonSpec, backdoor_test_for

FORMAT = "mendnet-poisoned-set/1"
DATA_FILE = "poisoned.safetensors"
THREAT_FILE = "threat.json"

README = """mendnet poisoned training set ({format})

Made by: {command}
Attack: {attack} ({labelling}, {mode}, target {target}), {count} of {n} training images poisoned.

Files
- {data_file}: safetensors tensors
    images           uint8 N×C×H×W   the whole training set ({shape}), poisoned images in place;
                                     divide by 255 for pixel values in [0, 1]
    labels           int64 N         the labels to train on (dirty-label poisons carry the target)
    poisoned_indices int64 P         rows of `images` that were poisoned, ascending
    original_labels  int64 P         the labels those rows had before poisoning
- {threat_file}: JSON with "format", "data" (name, classes, shape, mean, std), "threat" (attack,
  params, target, mode, rate, clean_label, poisoned_count, poisoned_indices, original_labels) and
  "provenance". To measure ASR and RA of a model trained on this set, rebuild the triggered test set:
    from mendnet.data.ref import DataRef
    from mendnet.threats.backdoor import ThreatRecord
    from mendnet.threats.backdoor.spec import backdoor_test_for
    train, test = DataRef("{data}").load()
    backdoor = backdoor_test_for(ThreatRecord.from_json(threat["threat"]), test, train)
- trigger.png: a training image before/after poisoning and a test image before/after the trigger.

Reading it in Python:
    from safetensors.torch import load_file
    t = load_file("{data_file}")
    x = t["images"].float() / 255; y = t["labels"]
"""


def poison_dataset(
    data: DataRef,
    spec: PoisonSpec,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[Planted, bytes]:
    """Poison the full training set of `data` as `spec` says: (the planted backdoor, trigger PNG).

    Trojan and CL need the spec's `clean_model` artefact (no surrogate is trained here).
    """
    train, test = data.load()
    path = spec.clean_model_path()

    def provide_clean_model() -> Classifier:
        model = load_artefact(path).model  # type: ignore[arg-type]
        check_fits(model, train)
        return model

    planted = spec.plant(train, seed=seed, clean_model=provide_clean_model if path else None, device=device)
    info = {"clean_model": path} if path else {}
    planted = replace(planted, record=replace(planted.record, info=info))
    backdoor = backdoor_test_for(planted.record, test, train)
    return planted, trigger_png(train, planted, backdoor)


def write_poisoned_set(
    out: str | Path, data: DataRef, planted: Planted, png: bytes, *, force: bool = False, seed: int = 0
) -> Path:
    """Write `planted` as a poisoned-set folder at `out` (atomically; an existing one needs `force`)."""
    poisoned, record = planted.data, planted.record
    with atomic_output_dir(out, force) as tmp:
        save_file(
            {
                "images": poisoned.images.contiguous(),
                "labels": poisoned.labels.contiguous(),
                "poisoned_indices": torch.tensor(record.poisoned_indices, dtype=torch.long),
                "original_labels": torch.tensor(record.original_labels, dtype=torch.long),
            },
            str(tmp / DATA_FILE),
            metadata={"format": FORMAT},
        )
        prov = provenance(seed)
        write_json(
            tmp / THREAT_FILE,
            {
                "format": FORMAT,
                "data": {
                    **data.to_json(),
                    "classes": list(poisoned.classes),
                    "shape": list(poisoned.shape),
                    "mean": list(poisoned.mean),
                    "std": list(poisoned.std),
                },
                "threat": record.to_json(),
                "provenance": prov,
            },
        )
        (tmp / "README.txt").write_text(
            README.format(
                format=FORMAT,
                command=prov["command"],
                attack=record.attack,
                labelling="clean-label" if record.clean_label else "dirty-label",
                mode=record.mode,
                target=record.target,
                count=len(record.poisoned_indices),
                n=len(poisoned),
                data_file=DATA_FILE,
                threat_file=THREAT_FILE,
                shape="×".join(map(str, poisoned.shape)),
                data=data.name,
            )
        )
        (tmp / "trigger.png").write_bytes(png)
    return Path(out)
