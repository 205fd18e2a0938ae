"""`mendnet locate`: AI-Lancet's locating step on an artefact, without repairing it (docs/methods.md §4
steps 1–7). Writes per-layer statistics, the chosen layer and its vote map, and a figure.

Differences from the paper and the authors' release: docs/deviations.md#ai-lancet.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import torch
from safetensors.torch import save

from mendnet.artefact import Artefact, provenance
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import classify
from mendnet.jobs.defender import defender_data, oracle_trigger
from mendnet.jobs.detect import DetectOutcome
from mendnet.repair.context import RepairContext
from mendnet.repair.lancet.repair import Config, error_source, locate_with_progress
from mendnet.threats.backdoor.spec import backdoor_test_for

LOCATE_JSON = "locate.json"
VOTES_FILE = "votes.safetensors"
FIGURE = "lancet.png"
SHOWN_PAIRS = 6
TOP_VOTES = 50


def locate_artefact(
    art: Artefact,
    config: Config,
    *,
    clean_fraction: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    sets: tuple[ImageSet, ImageSet] | None = None,
) -> DetectOutcome:
    """Locate the EI neurons of an artefact's model on seeded clean defender data: backdoor mode (the
    recorded trigger with `config.oracle_trigger`, else Neural Cleanse's reversal) or defect mode
    (`config.misclassified`). The test set is used only to rebuild the recorded trigger."""
    from mendnet.report.lancet_grid import lancet_png

    data = defender_data(art, clean_fraction, seed, sets)
    test, threat = data.test, data.threat
    known = None
    if config.oracle_trigger:
        known = oracle_trigger(threat, backdoor_test_for(threat, test, data.train))
    ctx = RepairContext(
        data.d_train, data.d_val, device=device, seed=seed, progress=progress, known_trigger=known
    )
    net = art.model.to(device).eval()
    source = error_source(net, ctx, config)
    if source is None:
        raise MendnetError("neural cleanse flagged no label: there is no backdoor to locate")
    located = locate_with_progress(net, source.pairs, config, progress)
    votes = located.votes
    order = located.order[:TOP_VOTES]
    report = {
        "model": str(art.path) if art.path else None,
        "method": "ai-lancet locate",
        "mode": "defect" if config.misclassified else "backdoor",
        "config": asdict(config),
        "clean_fraction": clean_fraction,
        "source": source.info,
        "layers": [s.to_json() for s in located.stats],
        "chosen_layer": located.layer,
        "ei_neurons": int((votes > 0).sum()),
        "layer_weights": votes.numel(),
        "top_votes": [
            {"index": list(map(int, torch.unravel_index(i, votes.shape))), "votes": int(votes.flatten()[i])}
            for i in order
        ],
        "defender": data.split.to_json(),
        "provenance": provenance(seed),
    }
    pairs = source.pairs.take(torch.arange(min(SHOWN_PAIRS, len(source.pairs))))
    pred_err, pred_comp = classify(net, pairs.x_err).tolist(), classify(net, pairs.x_comp).tolist()
    names = test.classes
    titles = [
        f"{names[y][:9]}: x→{p}, x'→{q}"
        for y, p, q in zip(pairs.y.tolist(), pred_err, pred_comp, strict=True)
    ]
    png = lancet_png(
        pairs.x_err,
        pairs.x_comp,
        pairs.masks,
        titles,
        [(s.layer, s.successes) for s in located.stats],
        located.layer,
        len(source.pairs),
    )
    files: dict[str, bytes | str] = {
        **source.files,
        LOCATE_JSON: json.dumps(report, indent=2) + "\n",
        VOTES_FILE: save({"votes": votes.to(torch.int32).contiguous()}, metadata={"layer": located.layer}),
        FIGURE: png,
    }
    return DetectOutcome(report, files)
