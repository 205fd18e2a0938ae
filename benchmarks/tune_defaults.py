"""Selection runs for the defaults that are not the paper's, on the researcher's validation split
(`mendnet.data.tuning`: 5,000 images carved from the training set, tuning seed 100; the test set is never
loaded here). Each part states its candidates and its rule before it runs; the section `tune_defaults` of
docs/benchmarks.md records every candidate's validation figures and the choice.

    .venv/bin/python benchmarks/tune_defaults.py [--parts nad nc-unlearn] [--device auto]

The model tuned on is the demo's setting (Fashion-MNIST, WRN-16-1, BadNets 3×3 all-to-one to label 0, 10%,
5 epochs), trained once on the rest of the training set and cached in runs/tune_defaults/. Each candidate's
validation figures are cached as JSON beside it, so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from docs_section import DOC, write_section
from result_cache import as_json, read_cached, write_cached

from mendnet.artefact import Artefact, load_artefact, save_artefact, write_files
from mendnet.data.ref import DataRef
from mendnet.data.tuning import TUNING_SEED, VALIDATION_IMAGES, carve_validation
from mendnet.demo import DemoConfig
from mendnet.detect.neural_cleanse import Config as DetectConfig
from mendnet.detect.neural_cleanse import reverse_engineer
from mendnet.detect.reversed_trigger import TRIGGER_FILE, ReversedTriggers
from mendnet.device import resolve_device
from mendnet.evaluate import backdoor_metrics
from mendnet.jobs.defender import defender_data
from mendnet.jobs.detect import detect_artefact
from mendnet.jobs.repair import repair_model
from mendnet.jobs.train import train_model
from mendnet.mend.run import MendConfig, mend
from mendnet.repair import mcr, nad, neural_cleanse
from mendnet.threats.backdoor.spec import PoisonSpec, backdoor_test_for

RESULTS = Path("runs/tune_defaults")

# NAD on the demo setting: the first-phase lr (paper 0.1) and the teacher (paper: FT's settings).
NAD_LRS = (0.1, 0.05, 0.045, 0.03, 0.02, 0.01)
NAD_TEACHERS = ("finetune", "finetune-student")
NAD_RULE = (
    "among the candidates whose validation ASR is at most 5%, the highest validation ACC; the paper's "
    "settings (lr 0.1, teacher finetune) are kept unless another candidate's ACC is higher by more than "
    "0.5 points"
)
# Neural Cleanse's unlearning epochs on 5% defender data (paper: 1 epoch on 10% of the training set).
NC_EPOCHS = (1, 2)
MCR_RULES = ("smallest", "middle")
MCR_RULE = (
    "the lower validation ASR; 'smallest' (the rule the methods reference first wrote down) is kept unless "
    "'middle' lowers it by more than 1 point"
)
# NAD again, over three tuning seeds: the single-seed choice (lr 0.02, finetune-student) left the demo's
# backdoor on two of its three reported seeds (test-set figures, section nad_table), so this part was
# added after reading them; it is recorded as such. The candidates exclude lr 0.01, which already fails
# the rule's ASR bound at seed 100.
TUNING_SEEDS = (TUNING_SEED, TUNING_SEED + 1, TUNING_SEED + 2)
NAD_SEEDS_LRS = (0.1, 0.05, 0.045, 0.03, 0.02)
NAD_SEEDS_RULE = (
    "among the candidates whose validation ASR is at most 5% at every tuning seed (100, 101, 102), the "
    "highest mean validation ACC; the paper's settings (lr 0.1, teacher finetune) are kept unless another "
    "candidate's mean ACC is higher by more than 0.5 points"
)
NC_RULE = (
    "the lowest validation ASR; the paper's 1 epoch is kept unless 2 epochs lower it by more than 1 point"
)


def tuning_model(sets, device: torch.device, seed: int = TUNING_SEED) -> Artefact:
    """The demo's backdoored model at a tuning seed, trained on the training set less the validation
    images (cached)."""
    folder = RESULTS / f"badnets-s{seed}"
    if (folder / "model.json").exists():
        return load_artefact(folder)
    demo = DemoConfig(seed=seed)
    out = train_model(
        DataRef(demo.data),
        demo.model,
        demo.train_config(),
        poison_spec=PoisonSpec(demo.attack, demo.target, demo.rate),
        seed=seed,
        device=device,
        sets=sets,
    )
    save_artefact(folder, out.model, out.meta, out.metrics, force=True)
    return load_artefact(folder)


def candidate(
    name: str, method: str, config: Any, art: Artefact, sets, device, seed: int = TUNING_SEED
) -> dict[str, Any]:
    """One candidate's validation ACC/ASR on the tuning model of `seed` (cached under `name`)."""
    path = RESULTS / f"{name}.json"
    settings = as_json({"method": method, "config": asdict(config), "seed": seed})
    cached = read_cached(path, settings)
    if cached is not None:
        return cached
    out = repair_model(
        art,
        method,
        config,
        clean_fraction=DemoConfig.clean_fraction,
        seed=seed,
        device=device,
        sets=sets,
        before={k: art.metrics[k] for k in ("acc", "asr", "ra")},
    )
    fields = {k: out.metrics[k] for k in ("acc", "asr", "ra", "seconds")}
    fields["info"] = {k: v for k, v in out.meta["repair"]["info"].items() if k in ("t", "flagged", "rule")}
    write_cached(path, settings, **fields)
    print(f"{name}: val ACC {100 * fields['acc']:.2f} ASR {100 * fields['asr']:.2f}", flush=True)
    return {"settings": settings, **fields}


def choose(rows: dict[str, dict], default: str, key: str, margin: float, lower: bool) -> str:
    """The candidate the rule picks: the best `key` (lowest if `lower`), the default unless beaten by
    more than `margin` (a fraction)."""
    best = (min if lower else max)(rows, key=lambda n: rows[n][key])
    gain = rows[default][key] - rows[best][key] if lower else rows[best][key] - rows[default][key]
    return best if gain > margin else default


def nad_part(art: Artefact, sets, device) -> list[str]:
    rows = {}
    for teacher in NAD_TEACHERS:
        for lr in NAD_LRS:
            name = f"nad-lr{lr:g}-{teacher}"
            rows[name] = candidate(name, "nad", nad.Config(lr=lr, teacher_init=teacher), art, sets, device)
    default = "nad-lr0.1-finetune"
    eligible = {n: r for n, r in rows.items() if r["asr"] <= 0.05}
    if not eligible:
        pick = "none (no candidate reaches 5% ASR)"
    elif default in eligible:
        pick = choose(eligible, default, "acc", 0.005, lower=False)
    else:
        pick = max(eligible, key=lambda n: eligible[n]["acc"])
    lines = [
        "**NAD on the demo setting** (5% defender data; the student's second phase at the authors' fixed "
        "0.01). Rule, fixed before the run: " + NAD_RULE + ".",
        "",
        "| first-phase lr | teacher | val ACC % | val ASR % | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in rows.values():
        cfg = r["settings"]["config"]
        lines.append(
            f"| {cfg['lr']:g} | {cfg['teacher_init']} | {100 * r['acc']:.2f} | {100 * r['asr']:.2f} | "
            f"{r['seconds']:.0f} |"
        )
    lines += [
        "",
        "The grid first held 0.1, 0.05, 0.045 and 0.03; 0.02 and 0.01 were added once the first rows "
        "put the best ACC at its lower edge (a search on the validation split, the test set unread).",
        "",
        f"Chosen: **{pick}**.",
        "",
    ]
    return lines


def nad_seeds_part(art: Artefact, sets, device) -> list[str]:
    arts = {seed: art if seed == TUNING_SEED else tuning_model(sets, device, seed) for seed in TUNING_SEEDS}
    rows: dict[str, dict[int, dict]] = {}
    for teacher in NAD_TEACHERS:
        for lr in NAD_SEEDS_LRS:
            name = f"nad-lr{lr:g}-{teacher}"
            config = nad.Config(lr=lr, teacher_init=teacher)
            rows[name] = {
                seed: candidate(
                    name if seed == TUNING_SEED else f"{name}-s{seed}",
                    "nad",
                    config,
                    arts[seed],
                    sets,
                    device,
                    seed,
                )
                for seed in TUNING_SEEDS
            }
    mean = {
        n: {k: sum(r[s][k] for s in TUNING_SEEDS) / len(TUNING_SEEDS) for k in ("acc", "asr")}
        for n, r in rows.items()
    }
    eligible = {n: mean[n] for n, r in rows.items() if max(r[s]["asr"] for s in TUNING_SEEDS) <= 0.05}
    default = "nad-lr0.1-finetune"
    if not eligible:
        pick = "none (no candidate reaches 5% ASR at every seed)"
    elif default in eligible:
        pick = choose(eligible, default, "acc", 0.005, lower=False)
    else:
        pick = max(eligible, key=lambda n: eligible[n]["acc"])
    backdoored = " / ".join(
        f"{100 * arts[s].metrics['acc']:.2f} / {100 * arts[s].metrics['asr']:.2f}" for s in TUNING_SEEDS
    )
    seeds = ", ".join(map(str, TUNING_SEEDS))
    lines = [
        f"**NAD on the demo setting, tuning seeds {seeds}.** Added after the single-seed choice above left "
        "the demo's backdoor on two of its three reported seeds (section `nad_table`, test-set figures): the "
        "test figures prompted this run, and chose nothing in it. The backdoored models (val ACC / ASR %, "
        f"seeds {seeds}): {backdoored}. Rule, fixed before the run: " + NAD_SEEDS_RULE + ".",
        "",
        "| first-phase lr | teacher | "
        + " | ".join(f"val ACC / ASR %, seed {s}" for s in TUNING_SEEDS)
        + " | mean ACC / ASR % |",
        "|---|---|" + "---|" * (len(TUNING_SEEDS) + 1),
    ]
    for name, r in rows.items():
        cfg = r[TUNING_SEED]["settings"]["config"]
        cells = " | ".join(f"{100 * r[s]['acc']:.2f} / {100 * r[s]['asr']:.2f}" for s in TUNING_SEEDS)
        lines.append(
            f"| {cfg['lr']:g} | {cfg['teacher_init']} | {cells} | "
            f"{100 * mean[name]['acc']:.2f} / {100 * mean[name]['asr']:.2f} |"
        )
    lines += ["", f"Chosen: **{pick}**.", ""]
    return lines


def reversed_trigger(art: Artefact, sets, device) -> Path:
    """Neural Cleanse's reversal on the tuning model's defender data, once (cached folder)."""
    folder = RESULTS / "nc-trigger"
    if not (folder / "detect.json").exists():
        found = detect_artefact(
            art,
            DetectConfig(),
            clean_fraction=DemoConfig.clean_fraction,
            seed=TUNING_SEED,
            device=device,
            sets=sets,
        )
        write_files(folder, found.files)
    return folder


def nc_part(art: Artefact, sets, device) -> list[str]:
    trigger = reversed_trigger(art, sets, device)
    rows = {}
    for epochs in NC_EPOCHS:
        name = f"nc-unlearn{epochs}"
        config = neural_cleanse.Config(unlearn_epochs=epochs, trigger=str(trigger))
        rows[name] = candidate(name, "neural-cleanse", config, art, sets, device)
    pick = choose(rows, "nc-unlearn1", "asr", 0.01, lower=True)
    lines = [
        "**Neural Cleanse's unlearning epochs** (5% defender data, the reversed trigger of the flagged "
        "label, 20% of the images stamped). Rule, fixed before the run: " + NC_RULE + ".",
        "",
        "| unlearning epochs | val ACC % | val ASR % | seconds |",
        "|---|---|---|---|",
    ]
    for r in rows.values():
        lines.append(
            f"| {r['settings']['config']['unlearn_epochs']} | {100 * r['acc']:.2f} | {100 * r['asr']:.2f} | "
            f"{r['seconds']:.0f} |"
        )
    lines += ["", f"Chosen: **{pick}**.", ""]
    return lines


def mcr_part(art: Artefact, sets, device) -> list[str]:
    rows = {}
    for rule in MCR_RULES:
        name = f"mcr-{rule}"
        rows[name] = candidate(name, "mcr", mcr.Config(t_rule=rule), art, sets, device)
    pick = choose(rows, "mcr-smallest", "asr", 0.01, lower=True)
    lines = [
        "**MCR's rule for t** (both pick among the t whose defender-validation accuracy is within 1 point "
        "of the better endpoint's). Rule, fixed before the run: " + MCR_RULE + ".",
        "",
        "| t rule | t chosen | val ACC % | val ASR % | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in rows.values():
        lines.append(
            f"| {r['settings']['config']['t_rule']} | {r['info']['t']} | {100 * r['acc']:.2f} | "
            f"{100 * r['asr']:.2f} | {r['seconds']:.0f} |"
        )
    lines += ["", f"Chosen: **{pick}**.", ""]
    return lines


def mend_part(art: Artefact, sets, device) -> list[str]:
    """Mend (docs/methods.md §10) on the three tuning models, its rule fixed before this run: the kept
    model's validation ACC/ASR. Chooses nothing; a check of the procedure before any test-set table. Plus
    the scan's focus against the full reversal on seed 100's defender data (cached in nc-trigger)."""
    rows = {}
    for seed in TUNING_SEEDS:
        model = art if seed == TUNING_SEED else tuning_model(sets, device, seed)
        path = RESULTS / f"mend-s{seed}.json"
        settings = as_json({"mend": asdict(MendConfig()), "seed": seed})
        cached = read_cached(path, settings)
        if cached is None:
            data = defender_data(model, DemoConfig.clean_fraction, seed, sets)
            clean = data.d_train.with_data(
                torch.cat([data.d_train.images, data.d_val.images]),
                torch.cat([data.d_train.labels, data.d_val.labels]),
            )
            result = mend(model.model, clean, MendConfig(), seed=seed, device=device, say=print)
            val = sets[1]
            after = backdoor_metrics(result.model, val, backdoor_test_for(data.threat, val), device=device)
            write_cached(path, settings, record=result.record(), after=after, before=model.metrics)
            cached = read_cached(path, settings)
        rows[seed] = cached
    trigger = reversed_trigger(art, sets, device)
    full = ReversedTriggers.load(trigger / TRIGGER_FILE)
    focus_path = RESULTS / "scan-focus-s100.json"
    focus_cfg = MendConfig().scan_config()
    focus_settings = as_json({"scan": asdict(focus_cfg), "seed": TUNING_SEED})
    focus = read_cached(focus_path, focus_settings)
    if focus is None:
        data = defender_data(art, DemoConfig.clean_fraction, TUNING_SEED, sets)
        found, log = reverse_engineer(art.model, data.d_train, focus_cfg, seed=TUNING_SEED, device=device)
        write_cached(
            focus_path,
            focus_settings,
            norms=found.norms.tolist(),
            flagged=found.flagged(),
            seconds=log.seconds,
            stopped=log.stopped_by_focus,
        )
        focus = read_cached(focus_path, focus_settings)
    full_seconds = json.loads((trigger / "detect.json").read_text()).get("seconds")
    lines = [
        "**Mend on the tuning models** (docs/methods.md §10, its rule fixed before this run; chooses "
        "nothing). Clean data: the 5% defender split; validation ACC / ASR % on the carved images.",
        "",
        "| tuning seed | backdoored | kept | flagged | val ACC / ASR % before | after | mend seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, r in rows.items():
        rec, before, after = r["record"], r["before"], r["after"]
        lines.append(
            f"| {seed} | badnets | {rec['chosen']} | {', '.join(map(str, rec['flagged'])) or 'none'} | "
            f"{100 * before['acc']:.2f} / {100 * before['asr']:.2f} | {100 * after['acc']:.2f} / "
            f"{100 * after['asr']:.2f} | {rec['seconds']['total']:.0f} |"
        )
    lines += ["", "Candidates' scores on mend's own validation part (ACC / worst proxy ASR %):", ""]
    for seed, r in rows.items():
        cells = "; ".join(
            f"{s['name']} {100 * s['acc']:.2f} / {100 * s['worst']:.2f}" for s in r["record"]["scores"]
        )
        lines.append(f"- seed {seed}: {cells}. {r['record']['reason']}.")
    lines += [
        "",
        f"**Scan focus against the full reversal** (seed {TUNING_SEED}, the same defender images): full "
        f"flags {full.flagged() or 'none'}, focus flags {focus['flagged'] or 'none'}; seconds "
        f"{full_seconds if full_seconds is None else round(full_seconds)} (full, an earlier run) against "
        f"{focus['seconds']:.0f} (focus).",
        "",
        "| label | full ‖m‖₁ | focus ‖m‖₁ |",
        "|---|---|---|",
    ]
    for k, (a, b) in enumerate(zip(full.norms.tolist(), focus["norms"], strict=True)):
        stopped = " (stopped)" if k in focus["stopped"] else ""
        lines.append(f"| {k} | {a:.1f} | {b:.1f}{stopped} |")
    lines.append("")
    return lines


PARTS = {
    "nad": nad_part,
    "nc-unlearn": nc_part,
    "mcr": mcr_part,
    "nad-seeds": nad_seeds_part,
    "mend": mend_part,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-only", action="store_true", help="only train (and cache) the tuning model")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    device = resolve_device(args.device)
    train, _ = DataRef("fashion-mnist").load()
    sets = carve_validation(train)
    art = tuning_model(sets, device)
    if args.train_only:
        return
    start = time.perf_counter()
    body = [
        "## Defaults chosen on the validation split (tuning seed 100)",
        "",
        f"`benchmarks/tune_defaults.py --parts {' '.join(args.parts)}`, {time.strftime('%Y-%m-%d')}, "
        f"device {device}, {torch.get_num_threads()} threads. {VALIDATION_IMAGES} images carved from the "
        "training set (`mendnet.data.tuning`) stand in for the test set, which this script never loads: "
        "ACC on them, ASR on their non-target images with the trigger. The backdoored model (demo setting, "
        f"seed {TUNING_SEED}) is trained on the rest: val ACC {100 * art.metrics['acc']:.2f}%, "
        f"ASR {100 * art.metrics['asr']:.2f}%.",
        "",
    ]
    for part in args.parts:
        body += PARTS[part](art, sets, device)
    body.append(
        f"This run: {time.perf_counter() - start:.0f} s (cached candidates not counted). The seconds "
        "columns are wall time with other work sharing the 2 cores at times: not speed figures."
    )
    write_section("tune_defaults", "\n".join(body), args.doc)
    print("\n".join(body))


if __name__ == "__main__":
    main()
