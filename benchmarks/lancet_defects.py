"""AI-Lancet (issue 6, docs/methods.md §4): the paper's general-defect experiment in our setting, and the
backdoor acceptance, written to docs/benchmarks.md (section `lancet`, or `lancet_quick`).

Defects: a clean WRN-16-1 (Fashion-MNIST, the attack table's training settings); the test set is split
in seeded halves; the model's misclassified images of half 1 are the erroneous samples (up to `pairs`
of them get mask companions for locating; all of them, jittered, join N_e); N_o is the 5% defender
split of the training set. Three repairs train on the same N_e ∪ N_o with the same loss (CE + KD, T = 4),
lr and epochs, differing only in which weights train: the EI neurons of the chosen layer (AI-Lancet),
as many randomly chosen weights of the same layer, or every weight (plain fine-tuning). Reported:
accuracy on half 2 and on half 2's images the original model misclassifies.

Backdoor: WRN-16-1 with BadNets, Trojan and Blend (10% all-to-one, target 0; no augmentation, so the
corner trigger stays in its corner; Trojan's patch is optimised on the defects' clean WRN-16-1, or on a
clean surrogate in --quick); Neural Cleanse (its default epochs) reverses the trigger once per model on
the defender data, then `lancet-flip` and `lancet-finetune` run through `repair_model` with that
reversed trigger (no oracle; when Neural Cleanse flags no label, its smallest-norm label's trigger,
marked in the table).
Reported: ACC and ASR before and after, the weights changed (share of the chosen layer's), seconds.

    .venv/bin/python benchmarks/lancet_defects.py [--seeds 0] [--device auto]
    .venv/bin/python benchmarks/lancet_defects.py --quick   # 2 CPU cores, ~5 min: small subsets
    .venv/bin/python benchmarks/lancet_defects.py --part backdoor --attacks badnets  # one experiment

--part writes its own section (`lancet_defects`, `lancet_backdoor`); a backdoor-only run with Trojan
still trains the defects' clean model for Trojan's attacker.

Each backdoor row (one attack, one seed) is cached as a JSON in --results with the settings it was made
with, so a stopped run resumes and later runs add seeds: `--part backdoor --seeds 0 1 2` reruns only the
rows not cached with the current settings (and trains a clean model only where Trojan needs one).
An attack that refuses to plant its backdoor (Trojan when every optimised patch is invisible on its
corner) is cached as refused and listed under the table instead of stopping the run.

--quick: small-cnn (defects) and WRN-16-1 on 16,000 images for 2 epochs without augmentation (BadNets
only), 30 pairs, three candidate layers each, Neural Cleanse for 6 epochs, 2 fine-tuning epochs, 2
jittered copies of each erroneous image.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from docs_section import DOC, write_section
from result_cache import as_json, read_cached, write_cached

from mendnet.artefact import Artefact, load_artefact, save_artefact
from mendnet.data.defender import defender_sets
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import DataRef
from mendnet.detect import neural_cleanse as nc
from mendnet.detect.reversed_trigger import TRIGGER_FILE
from mendnet.device import resolve_device
from mendnet.errors import MendnetError
from mendnet.evaluate import predict
from mendnet.jobs.defender import defender_of
from mendnet.jobs.repair import repair_model
from mendnet.jobs.train import train_model
from mendnet.models import Classifier
from mendnet.repair.lancet.companion import mask_companions
from mendnet.repair.lancet.locate import Located
from mendnet.repair.lancet.repair import (
    FinetuneConfig,
    FlipConfig,
    defect_erroneous_set,
    locate_with_progress,
)
from mendnet.repair.lancet.tune import MixedBatches, neuron_finetune
from mendnet.threats.backdoor.spec import PoisonSpec
from mendnet.train import TrainConfig, fit

ATTACKS = ("badnets", "trojan", "blend")
RESULTS = Path(__file__).resolve().parent.parent / "runs" / "lancet_backdoor"
DEFECT_VOTE_SHARE = 0.05
"""Defects train the weights voted by ≥ 5% of the corrected pairs (the method's default is the paper's
union, `vote_share` 0): on a first run the union of the EI sets covered 8,600 of the chosen layer's 9,216
weights, which leaves nothing to compare with random weights of the same layer. Chosen from that count
alone, no accuracy read; the dose section (1%, 5%, 20%, scored on test half 2) evaluates it and chose
nothing."""


@dataclass(frozen=True)
class Setting:
    arch: str
    subset: int | None
    train: TrainConfig
    backdoor_subset: int | None
    backdoor_train: TrainConfig
    attacks: tuple[str, ...]
    pairs: int
    defect_layers: tuple[str, ...]
    backdoor_layers: tuple[str, ...]
    nc_epochs: int
    tune_epochs: int
    copies: int


FULL = Setting(
    arch="wrn-16-1",
    subset=None,
    train=TrainConfig(epochs=3, batch_size=128, lr=0.05, nesterov=True, crop_padding=2, flip=True),
    backdoor_subset=None,
    backdoor_train=TrainConfig(epochs=3, batch_size=128, lr=0.05, nesterov=True),
    attacks=ATTACKS,
    pairs=100,
    defect_layers=(),
    backdoor_layers=(),
    nc_epochs=nc.Config().epochs,
    tune_epochs=5,
    copies=20,
)
QUICK = Setting(
    arch="small-cnn",
    subset=16_000,
    train=TrainConfig(epochs=2, batch_size=128, lr=0.05, nesterov=True),
    backdoor_subset=16_000,
    backdoor_train=TrainConfig(epochs=2, batch_size=64, lr=0.1),
    attacks=("badnets",),
    pairs=30,
    defect_layers=("net.stage2.0", "net.stage2.3", "net.head.3"),
    backdoor_layers=("net.block1.0.conv1", "net.block3.0.conv2", "net.fc"),
    nc_epochs=6,
    tune_epochs=2,
    copies=2,
)


def say(text: str) -> None:
    print(time.strftime("%H:%M:%S"), text, flush=True)


def halves(test: ImageSet, seed: int) -> tuple[ImageSet, ImageSet]:
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    half = len(test) // 2
    return test.subset(order[:half].sort().values), test.subset(order[half:].sort().values)


def defect_scores(model: Classifier, half2: ImageSet, wrong2: torch.Tensor, device: torch.device) -> dict:
    preds = predict(model, half2, device=device)
    right = preds == half2.labels
    return {"acc": float(right.float().mean()), "fixed": float(right[wrong2].float().mean())}


def clean_model(
    setting: Setting, sets: tuple[ImageSet, ImageSet], seed: int, device: torch.device
) -> Classifier:
    """The defects' clean model of `seed` (Trojan's attacker reuses it when it is a WRN-16-1), kept in
    RESULTS as an artefact that records its training settings (reused only when they match)."""
    path = RESULTS / f"clean-{setting.arch}-{setting.subset}-s{seed}"
    key = as_json(
        {"arch": setting.arch, "train": asdict(setting.train), "subset": setting.subset, "seed": seed}
    )
    if (path / "model.json").exists() and load_artefact(path).meta.get("cache_settings") == key:
        say(f"seed {seed}: the clean {setting.arch} from {path}")
        return load_artefact(path).model.to(device).eval()
    say(f"seed {seed}: training a clean {setting.arch}")
    torch.manual_seed(seed)
    out = train_model(
        DataRef("fashion-mnist"),
        setting.arch,
        setting.train,
        seed=seed,
        device=device,
        progress=False,
        sets=sets,
        train_subset=setting.subset,
    )
    save_artefact(path, out.model.cpu(), {**out.meta, "cache_settings": key}, out.metrics, force=True)
    return out.model.to(device).eval()


@dataclass
class DefectSetup:
    """One seed's general-defect experiment before any repair: the clean model, half 2 and the indices
    of its misclassified images, the located EI neurons, the repair data N_e and N_o and its config."""

    model: Classifier
    half2: ImageSet
    wrong1: torch.Tensor
    wrong2: torch.Tensor
    located: Located
    erroneous: ImageSet
    originals: ImageSet
    cfg: FinetuneConfig
    locate_seconds: float


def defect_setup(
    setting: Setting, sets: tuple[ImageSet, ImageSet], seed: int, device: torch.device
) -> DefectSetup:
    """Train the clean model of `seed`, split the test set, locate on half 1's errors, build N_e ∪ N_o."""
    train, test = sets
    model = clean_model(setting, sets, seed, device)
    half1, half2 = halves(test, seed)
    wrong1 = torch.nonzero(predict(model, half1, device=device) != half1.labels).flatten()
    wrong2 = torch.nonzero(predict(model, half2, device=device) != half2.labels).flatten()
    defender, _ = defender_sets(train, defender_of(None, len(train), 0.05, seed))
    start = time.perf_counter()
    x1, y1 = half1.float_images(wrong1).to(device), half1.labels[wrong1].to(device)
    pairs = mask_companions(model, x1[: setting.pairs], y1[: setting.pairs])
    say(f"  {len(wrong1)} erroneous in half 1, {len(pairs)} companions; locating")
    cfg = FinetuneConfig(
        pairs=setting.pairs,
        layers=setting.defect_layers,
        tune_epochs=setting.tune_epochs,
        copies=setting.copies,
        vote_share=DEFECT_VOTE_SHARE,
    )
    located: Located = locate_with_progress(model, pairs, cfg, progress=False)
    n_e, _ = defect_erroneous_set(model, x1, y1, located, defender, cfg.copies, seed, device)
    return DefectSetup(model, half2, wrong1, wrong2, located, n_e, defender, cfg, time.perf_counter() - start)


def tuned_scores(setup: DefectSetup, mask: torch.Tensor, seed: int, device: torch.device) -> dict[str, float]:
    """Half-2 scores (and seconds) after training only the weights of the chosen layer inside `mask`."""
    start = time.perf_counter()
    tuned, _ = neuron_finetune(
        setup.model,
        setup.located.layer,
        mask,
        setup.erroneous,
        setup.originals,
        setup.cfg.train_config(),
        setup.cfg.kd_weight,
        seed=seed,
        device=device,
        progress=False,
    )
    scores = defect_scores(tuned, setup.half2, setup.wrong2, device)
    return {**scores, "seconds": time.perf_counter() - start}


def random_mask(like: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` weights drawn uniformly (seeded), as a bool mask shaped like `like`."""
    flat = torch.zeros(like.numel(), dtype=torch.bool)
    flat[torch.randperm(like.numel(), generator=torch.Generator().manual_seed(seed))[:count]] = True
    return flat.view(like.shape)


def defects(
    setting: Setting, sets: tuple[ImageSet, ImageSet], seed: int, device: torch.device
) -> tuple[dict, Classifier]:
    """The general-defect experiment of one seed: accuracies of the original and of the three repairs,
    and the clean model (Trojan's attacker reuses it when it is a WRN-16-1)."""
    setup = defect_setup(setting, sets, seed, device)
    mask = setup.cfg.trained_mask(setup.located)
    weights = int(mask.sum())
    out = {
        "layer": setup.located.layer,
        "weights": weights,
        "layer_weights": mask.numel(),
        "wrong1": len(setup.wrong1),
        "wrong2": len(setup.wrong2),
        "original": defect_scores(setup.model, setup.half2, setup.wrong2, device),
    }
    for name, m in (("lancet", mask), ("random", random_mask(mask, weights, seed))):
        out[name] = tuned_scores(setup, m, seed, device)
        say(f"  {name}: {out[name]}")
    t = time.perf_counter()
    plain = plain_finetune(setup, seed, device)
    out["plain"] = {
        **defect_scores(plain, setup.half2, setup.wrong2, device),
        "seconds": time.perf_counter() - t,
    }
    say(f"  plain: {out['plain']}")
    out["lancet"]["seconds"] += setup.locate_seconds
    return out, setup.model


def plain_finetune(setup: DefectSetup, seed: int, device) -> Classifier:
    """Every weight trained on the same data with the same loss and settings; BatchNorm in training mode
    as in ordinary fine-tuning (with frozen statistics, training every weight at lr 0.01 diverged)."""
    original = copy.deepcopy(setup.model).eval().requires_grad_(False)
    tuned = copy.deepcopy(setup.model)
    train = setup.cfg.train_config()
    fit(
        tuned,
        setup.erroneous,
        replace(train, batch_size=max(1, train.batch_size // 2)),
        objective=MixedBatches(original, setup.originals, setup.cfg.kd_weight, seed=seed),
        seed=seed,
        device=device,
        progress=False,
        description="plain fine-tuning",
    )
    return tuned.eval()


def backdoor(
    setting: Setting,
    sets: tuple[ImageSet, ImageSet],
    attack: str,
    seed: int,
    device,
    tmp: Path,
    clean: Classifier | None,
) -> dict:
    """One attack: train, reverse the trigger once, run both AI-Lancet repairs with it."""
    say(f"backdoor {attack}, seed {seed}: training wrn-16-1")
    torch.manual_seed(seed)
    out = train_model(
        DataRef("fashion-mnist"),
        "wrn-16-1",
        setting.backdoor_train,
        poison_spec=PoisonSpec(attack, 0, 0.1),
        seed=seed,
        device=device,
        progress=False,
        sets=sets,
        train_subset=setting.backdoor_subset,
        clean_model=clean,
    )
    art = Artefact(out.model, out.meta, out.metrics, None)
    train = sets[0]
    from mendnet.threats.backdoor.spec import threat_of

    d_train, _ = defender_sets(train, defender_of(threat_of(out.meta), len(train), 0.05, seed))
    ncfg = replace(nc.Config(), epochs=setting.nc_epochs)
    start = time.perf_counter()
    triggers, _ = nc.reverse_engineer(out.model, d_train, ncfg, seed=seed, device=device, progress=False)
    nc_seconds = time.perf_counter() - start
    path = tmp / f"{attack}-{seed}"
    path.mkdir()
    (path / TRIGGER_FILE).write_bytes(triggers.to_bytes())
    flagged = triggers.flagged(ncfg.threshold)
    smallest = int(triggers.norms.argmin())
    say(f"  before {out.metrics}; NC flagged {flagged} in {nc_seconds:.0f} s")
    row = {"before": out.metrics, "flagged": flagged, "nc_seconds": nc_seconds, "smallest": smallest}
    common = {
        "pairs": setting.pairs,
        "layers": setting.backdoor_layers,
        "trigger": str(path),
        "epochs": setting.nc_epochs,
        "label": None if flagged else smallest,  # NC flagged none: its smallest-norm label, marked below
    }
    for method, cfg in (
        ("lancet-flip", FlipConfig(**common)),
        ("lancet-finetune", FinetuneConfig(**common, tune_epochs=setting.tune_epochs)),
    ):
        rep = repair_model(
            art, method, cfg, seed=seed, device=device, progress=False, sets=sets, before=out.metrics
        )
        info = rep.meta["repair"]["info"]
        row[method] = {
            "acc": rep.metrics["acc"],
            "asr": rep.metrics["asr"],
            "seconds": rep.metrics["seconds"],
            "layer": info.get("layer"),
            "changed": info.get("weights_changed", 0),
            "share": info.get("fraction_of_layer", 0.0),
        }
        say(f"  {method}: {row[method]}")
    return row


def backdoor_settings(setting: Setting) -> dict:
    """What a cached backdoor row must have been made with: the whole setting and both repairs' configs."""
    return as_json(
        {"setting": asdict(setting), "flip": asdict(FlipConfig()), "finetune": asdict(FinetuneConfig())}
    )


def row_path(results: Path, attack: str, seed: int, quick: bool) -> Path:
    return results / f"{attack}-s{seed}{'-quick' if quick else ''}.json"


def flag_text(row: dict) -> str:
    if row["flagged"]:
        return ", ".join(map(str, row["flagged"]))
    return f"none (smallest norm {row['smallest']} used)"


def pct(values: list[float]) -> str:
    p = [100 * v for v in values]
    return f"{statistics.mean(p):.2f}" + (f" ± {statistics.stdev(p):.2f}" if len(p) > 1 else "")


def defect_lines(setting: Setting, d: list[dict], seeds: list[int]) -> list[str]:
    """The general-defect table and its chosen layers."""
    lines = [
        f"**General defects** ({setting.arch}; Fashion-MNIST test set in seeded halves; erroneous samples: "
        "half 1's misclassified images; N_o: 5% defender split; same data, loss and settings for the three "
        'repairs). "half 2 misclassified": accuracy on the images of half 2 the original model gets wrong.',
        "",
        "| model | half 2 ACC % | half 2 misclassified % | weights trained | seconds |",
        "|---|---|---|---|---|",
        f"| original | {pct([r['original']['acc'] for r in d])} | 0.00 | - | - |",
    ]
    trained = {
        "lancet": f"{statistics.mean(r['weights'] for r in d):.0f} EI neurons "
        f"(votes ≥ {100 * DEFECT_VOTE_SHARE:.0f}% of corrected pairs)",
        "random": "as many random, same layer",
        "plain": "all",
    }
    names = {
        "lancet": "AI-Lancet neuron fine-tuning",
        "random": "random weights",
        "plain": "plain fine-tuning",
    }
    for key, label in names.items():
        lines.append(
            f"| {label} | {pct([r[key]['acc'] for r in d])} | {pct([r[key]['fixed'] for r in d])} | "
            f"{trained[key]} | {statistics.mean(r[key]['seconds'] for r in d):.0f} |"
        )
    lines += [
        "",
        "Chosen layers: "
        + ", ".join(
            f"seed {s}: `{r['layer']}` ({r['weights']} of {r['layer_weights']} weights; "
            f"{r['wrong1']} erroneous in half 1, {r['wrong2']} in half 2)"
            for s, r in zip(seeds, d, strict=True)
        )
        + ".",
    ]
    return lines


def backdoor_lines(setting: Setting, backdoor_rows: dict[str, list[dict]]) -> list[str]:
    """The backdoor table: both AI-Lancet repairs per attack."""
    lines = [
        "**Backdoors** (WRN-16-1, 10% all-to-one to label 0, Neural Cleanse's reversed trigger, no oracle; "
        f"{setting.pairs} pairs). Changed: weights changed, as a share of the chosen layer's.",
        "",
        "| attack | before ACC / ASR % | flip ACC / ASR % | flip changed | fine-tune ACC / ASR % "
        "| fine-tune changed | NC flagged | seconds NC / flip / fine-tune |",
        "|---|---|---|---|---|---|---|---|",
    ]
    refused = [(a, r) for a, rows in backdoor_rows.items() for r in rows if "refused" in r]
    for attack, all_rows in backdoor_rows.items():
        rows = [r for r in all_rows if "refused" not in r]
        if not rows:
            continue

        def pair(key: str, rows: list[dict] = rows) -> str:
            return f"{pct([r[key]['acc'] for r in rows])} / {pct([r[key]['asr'] for r in rows])}"

        def changed(key: str, rows: list[dict] = rows) -> str:
            return "; ".join(
                f"{r[key]['changed']} in `{r[key]['layer']}` ({100 * r[key]['share']:.2f}%)" for r in rows
            )

        secs = " / ".join(
            f"{statistics.mean(r[k]['seconds'] if k != 'nc' else r['nc_seconds'] for r in rows):.0f}"
            for k in ("nc", "lancet-flip", "lancet-finetune")
        )
        lines.append(
            f"| {attack} | {pair('before')} | {pair('lancet-flip')} | {changed('lancet-flip')} | "
            f"{pair('lancet-finetune')} | {changed('lancet-finetune')} | "
            f"{'; '.join(flag_text(r) for r in rows)} | {secs} |"
        )
    lines += [f"\nNot planted ({attack}, seed {r['seed']}): {r['refused']}" for attack, r in refused]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="a smoke run on 2 CPU cores (~5 min)")
    parser.add_argument(
        "--part",
        choices=("all", "defects", "backdoor"),
        default="all",
        help="run both experiments, or one of them (its own docs section: lancet_defects, lancet_backdoor)",
    )
    parser.add_argument(
        "--attacks", nargs="+", choices=ATTACKS, help="backdoor attacks to run (default: the setting's)"
    )
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder of the cached backdoor rows (one JSON each)"
    )
    args = parser.parse_args()
    setting = QUICK if args.quick else FULL
    attacks = tuple(args.attacks or setting.attacks)
    device = resolve_device(args.device)
    sets = DataRef("fashion-mnist").load()
    begin = time.perf_counter()
    defect_rows: list[dict] = []
    clean_models: list[Classifier | None] = []
    settings = backdoor_settings(setting)

    def known(attack: str, seed: int) -> dict | None:
        return read_cached(row_path(args.results, attack, seed, args.quick), settings)

    for seed in args.seeds:
        if args.part == "backdoor":
            needs_clean = "trojan" in attacks and known("trojan", seed) is None
            trains = needs_clean and setting.arch == "wrn-16-1"
            clean_models.append(clean_model(setting, sets, seed, device) if trains else None)
            continue
        row, model = defects(setting, sets, seed, device)
        defect_rows.append(row)
        clean_models.append(model if setting.arch == "wrn-16-1" else None)
    backdoor_rows: dict[str, list[dict]] = {a: [] for a in attacks}
    if args.part != "defects":
        with tempfile.TemporaryDirectory() as tmp:
            for seed, clean in zip(args.seeds, clean_models, strict=True):
                for attack in attacks:
                    path = row_path(args.results, attack, seed, args.quick)
                    cached = known(attack, seed)
                    if cached is None:
                        try:
                            row = backdoor(setting, sets, attack, seed, device, Path(tmp), clean)
                        except MendnetError as e:  # e.g. Trojan's patch came out invisible
                            say(f"  {attack}, seed {seed}: refused: {e}")
                            row = {"refused": str(e), "seed": seed}
                        write_cached(path, settings, row=row)
                    else:
                        say(f"backdoor {attack}, seed {seed}: cached in {path}")
                        row = cached["row"]
                    backdoor_rows[attack].append(row)
    total = time.perf_counter() - begin
    command = "benchmarks/lancet_defects.py" + (" --quick" if args.quick else "")
    if args.part != "all":
        command += f" --part {args.part}"
    if args.attacks and args.part != "defects":
        command += f" --attacks {' '.join(attacks)}"
    lines = [
        f"## AI-Lancet{' (quick smoke run)' if args.quick else ''}"
        + {"all": "", "defects": ": general defects", "backdoor": ": backdoors"}[args.part],
        "",
        f"`{command} --seeds {' '.join(map(str, args.seeds))}`, {time.strftime('%Y-%m-%d')}, "
        f"device {device}, "
        f"{torch.get_num_threads()} threads, {total:.0f} s in this run"
        + (" (backdoor rows cached by earlier runs not counted)" if args.part != "defects" else "")
        + ". Percent; mean ± std over seeds.",
        "",
    ]
    if args.part != "backdoor":
        lines += defect_lines(setting, defect_rows, args.seeds)
    if args.part == "all":
        lines.append("")
    if args.part != "defects":
        lines += backdoor_lines(setting, backdoor_rows)
    section = "lancet_quick" if args.quick else "lancet"
    if args.part != "all":
        section += f"_{args.part}"
    write_section(section, "\n".join(lines), args.doc)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
