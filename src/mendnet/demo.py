"""`mendnet demo`, the main job: Fashion-MNIST, WRN-16-1, BadNets 10% → train → FT and NAD with 5%
defender data → `mendnet mend` on the backdoored model (unless `mend` is off) → metrics.json, report.md,
attention.png and the model artefacts in one folder (mend's artefact and report in mend/).

Differences from the paper and the authors' release: docs/deviations.md#general.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mendnet.artefact import Artefact, atomic_output_dir, write_json
from mendnet.data.ref import DataRef
from mendnet.jobs.attention import triggered_test_images
from mendnet.jobs.mend import mend_artefact
from mendnet.jobs.outcome import write_outcome
from mendnet.jobs.repair import repair_model
from mendnet.jobs.train import train_model
from mendnet.repair import finetune, nad
from mendnet.report.attention_grid import attention_grid_png
from mendnet.report.tables import markdown_table, print_table
from mendnet.threats.backdoor.spec import PoisonSpec
from mendnet.train import TrainConfig, train_config_from

ATTENTION_IMAGES = 4


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings. The backdoored model trains 5 epochs, the most that fitted the demo's
    10-minute budget on 2 CPU cores before mend joined it (training took 256–440 s on this machine
    type); it is a budget, not a setting chosen by any repair's result.

    NAD runs the paper's schedule (20 epochs, the first 2 at `nad_lr`, then the authors' fixed 0.01)
    with two settings chosen on the validation split, never on the test set (docs/benchmarks.md,
    section `tune_nad`, written by `mendnet bench recipes/tune_nad.toml`): nad_lr, the first-phase lr,
    0.045 (the paper's lr 0.1 and teacher lost 8.0 validation ACC points on average), and nad_teacher
    "finetune-student",
    the teacher trained as the authors' release does (NAD's own settings with β = 0, 10 epochs) rather
    than by FT's constant 0.01. Rule, fixed before the run: the highest mean validation ACC over tuning
    seeds 100, 101 and 102 among the candidates with validation ASR ≤ 5% at every one; chosen 89.80%
    ACC / 2.39% ASR on average (backdoored: about 92% / 100%). A first, single-seed run (seed 100) had
    chosen 0.02, which left the backdoor on two of the demo's three test seeds; the three-seed run was
    added after reading those test figures and is recorded as such. The `nad` method keeps the paper's
    defaults.

    mend: after NAD, run `mendnet mend` (its defaults, the same defender data) on the backdoored model
    (about 4.5 minutes on 2 CPU cores; off, the demo shows the paper's repairs alone).
    """

    data: str = "fashion-mnist"
    data_dir: str | None = None
    model: str = "wrn-16-1"
    attack: str = "badnets"
    target: int = 0
    rate: float = 0.1
    clean_fraction: float = 0.05
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    nad_lr: float = 0.045
    nad_teacher: str = "finetune-student"
    seed: int = 0
    mend: bool = True

    def train_config(self) -> TrainConfig:
        """The backdoored model's training: SGD Nesterov, cosine schedule, crop (pad 2) and flip.
        recipes/attack_zoo.toml and recipes/defense_table.toml train with these settings."""
        return train_config_from(self, nesterov=True, schedule="cosine", crop_padding=2, flip=True)


def run_demo(
    cfg: DemoConfig,
    out: str | Path,
    *,
    force: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict:
    """Run the whole demo into `out` (written atomically) and return its metrics."""
    start = time.perf_counter()
    ref = DataRef(cfg.data, cfg.data_dir)
    with atomic_output_dir(out, force) as tmp:
        sets = ref.load()
        trained = train_model(
            ref,
            cfg.model,
            cfg.train_config(),
            seed=cfg.seed,
            device=device,
            progress=progress,
            poison_spec=PoisonSpec(cfg.attack, cfg.target, cfg.rate),
            sets=sets,
        )
        write_outcome(tmp / "backdoored", trained)
        backdoored = Artefact(trained.model, trained.meta, trained.metrics, Path(out) / "backdoored")
        before = {k: trained.metrics[k] for k in ("acc", "asr", "ra")}
        repairs = {
            "finetune": finetune.Config(),
            "nad": nad.Config(lr=cfg.nad_lr, teacher_init=cfg.nad_teacher),
        }
        shared = {  # the same defender split, device and progress for every repair and for mend
            "clean_fraction": cfg.clean_fraction,
            "seed": cfg.seed,
            "device": device,
            "progress": progress,
            "sets": sets,
        }
        outcomes = {}
        for method, config in repairs.items():
            outcomes[method] = repair_model(backdoored, method, config, before=before, **shared)
            write_outcome(tmp / method, outcomes[method])
        if cfg.mend:
            say = print if progress else lambda _: None
            outcomes["mend"] = mend_artefact(backdoored, say=say, **shared)
            write_outcome(tmp / "mend", outcomes["mend"])
        rows = {"backdoored": trained.metrics, **{m: o.metrics for m, o in outcomes.items()}}
        metrics = {**rows, "settings": asdict(cfg), "seconds": time.perf_counter() - start}
        x = triggered_test_images(trained.meta, sets[1], ATTENTION_IMAGES)
        shown = {
            "backdoored": trained.model,
            "fine-tuned": outcomes["finetune"].model,
            "NAD": outcomes["nad"].model,
        }
        if cfg.mend:
            shown[f"mend ({outcomes['mend'].metrics['chosen']})"] = outcomes["mend"].model
        (tmp / "attention.png").write_bytes(attention_grid_png(shown, x))
        (tmp / "report.md").write_text(report_markdown(cfg, rows, metrics["seconds"]))
        write_json(tmp / "metrics.json", metrics)
    print_table(rows, title=f"mendnet demo ({cfg.data}, {cfg.model}, {cfg.attack} {cfg.rate:g})")
    return metrics


def report_markdown(cfg: DemoConfig, rows: dict, seconds: float) -> str:
    mend_text = (
        f"mend (`mendnet mend` with its defaults on the same defender data, deciding from it alone) kept "
        f"**{rows['mend']['chosen']}**; its candidates' validation scores and reasons: mend/report.md.\n\n"
        if "mend" in rows
        else ""
    )
    return (
        f"# mendnet demo: BadNets → fine-tuning and NAD{' → mend' if 'mend' in rows else ''}\n\n"
        f"Data {cfg.data}, model {cfg.model}, {cfg.attack} all-to-one, target {cfg.target}, rate {cfg.rate}; "
        f"defender data {cfg.clean_fraction:.0%} of the training set (clean); seed {cfg.seed}. "
        f"NAD with the paper's settings except two chosen on a validation split of the training set "
        f"(docs/benchmarks.md, `tune_nad`): the first-phase lr {cfg.nad_lr} (paper: 0.1; the second "
        f"phase stays at the authors' fixed 0.01) and the teacher {cfg.nad_teacher} (a copy of the "
        "backdoored model trained 10 epochs with NAD's own settings and no distillation term, as the "
        "authors' release does).\n\n"
        + markdown_table(rows)
        + f"\n{mend_text}Total {seconds:.0f} s. ACC: clean test accuracy; ASR: triggered non-target test "
        "images sent to the target; RA: triggered images still classified correctly; DER: defense "
        "effectiveness rating.\n\n![attention maps](attention.png)\n\n"
        "Settings: " + json.dumps(asdict(cfg)) + "\n"
    )
