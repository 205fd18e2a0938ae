"""NAD's Table 1 in our setting (issue 5): rows = the six backdoor attacks of the zoo, columns = no defense
/ fine-tuning / fine-pruning / MCR / Neural Cleanse / NAD, cells ACC and ASR (mean ± std over seeds), plus
seconds per repair and Neural Cleanse's detection (is the true target flagged, anomaly index; and is a
clean model flagged). Written to docs/benchmarks.md, section `defense_table`.

Setting: Fashion-MNIST, WRN-16-1 trained as the demo trains it (`DemoConfig.train_config()`: 5 epochs,
batch 128, lr 0.05 Nesterov, cosine, crop padding 2, flip), all-to-one to target 0, rate 10% (clean-
label attacks: every target-class image up to that rate); repairs with 5% clean defender data and each
method's defaults, except NAD's: first-phase lr 0.045 (the demo's) and a teacher fine-tuned with NAD's own
settings (`finetune-student`) at the authors' lr 0.1: the demo's teacher lr 0.045 left 90% of Blend's
ASR in the teacher and 78% in NAD's student (the former docs/benchmarks.md sections `nad_lr_probe`,
`nad_teacher_probe`, `nad_blend_teacher_probe`, in git history). MCR's fine-tuned endpoint is the FT
column's model (the same 10 epochs, data and seed it would train). A clean model of each seed, trained
the same way, is the attacker's clean model for Trojan and CL and the clean model Neural Cleanse must
not flag.

Every unit of work is cached as a JSON (and the clean models as artefacts) in --results, so a stopped
run resumes, and processes (or sessions) can share the work. Each JSON records the training settings of
its models and each column the config of its repair; what was made with other settings is recomputed,
never reported (a changed repair config retrains the backdoored model, seeded and so identical, and
reruns that column alone):

    .venv/bin/python benchmarks/defense_table.py                      # everything, then the table
    .venv/bin/python benchmarks/defense_table.py --clean-only --seeds 0    # phase 1, one seed
    .venv/bin/python benchmarks/defense_table.py --attacks sig --no-table  # phase 2, one attack
    .venv/bin/python benchmarks/defense_table.py --table-only              # phase 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from docs_section import DOC, write_section
from result_cache import as_json, read_cached

from mendnet.artefact import Artefact, atomic_write_json, load_artefact, save_artefact
from mendnet.data.ref import DataRef
from mendnet.demo import DemoConfig
from mendnet.detect.neural_cleanse import Config as DetectConfig
from mendnet.device import resolve_device
from mendnet.jobs.detect import detect_artefact
from mendnet.jobs.repair import repair_model
from mendnet.jobs.train import train_model
from mendnet.registry import REPAIRS
from mendnet.repair import nad
from mendnet.threats.backdoor.spec import PoisonSpec

ATTACKS = ("badnets", "blend", "trojan", "sig", "cl", "refool")
COLUMNS = ("finetune", "fineprune", "mcr", "neural-cleanse", "nad")
LABELS = {"finetune": "FT", "fineprune": "FP", "mcr": "MCR", "neural-cleanse": "NC", "nad": "NAD"}
NAD = nad.Config(lr=DemoConfig.nad_lr, teacher_init=DemoConfig.nad_teacher, teacher_lr=0.1)
TRAIN = DemoConfig().train_config()


# What a cached JSON must have been made with: the models' training settings (the cell's "settings"),
# and each repair column's config (stored in the column). A changed config reruns that column alone.
SETTINGS = as_json({"train": asdict(TRAIN)})
CONFIGS = {m: NAD if m == "nad" else REPAIRS[m].config() for m in COLUMNS}
COLUMN_SETTINGS = {m: as_json(asdict(c)) for m, c in CONFIGS.items()}
DETECT_SETTINGS = as_json(asdict(DetectConfig()))  # the clean models' detection


def cached(path: Path) -> dict[str, Any] | None:
    """The JSON at `path` if its models were trained with SETTINGS, else None (to be recomputed)."""
    return read_cached(path, SETTINGS)


def stale_columns(cell: dict[str, Any] | None) -> list[str]:
    """The repair columns of `cell` to (re)compute: missing or made with another config. MCR starts from
    FT's model, so either one stale makes both stale."""
    if cell is None:
        return list(COLUMNS)
    stale = {m for m in COLUMNS if cell.get(m, {}).get("config") != COLUMN_SETTINGS[m]}
    if stale & {"finetune", "mcr"}:
        stale |= {"finetune", "mcr"}
    return [m for m in COLUMNS if m in stale]


def complete(path: Path) -> dict[str, Any] | None:
    """The cached cell at `path` if every column is up to date, else None (not reported)."""
    cell = cached(path)
    return cell if cell is not None and not stale_columns(cell) else None


def clean_model(ref: DataRef, sets, seed: int, results: Path, device: torch.device) -> Artefact:
    """The clean WRN-16-1 of `seed` (trained once, cached) and its Neural Cleanse detection JSON (rerun on
    the cached model when the detection config has changed)."""
    folder = results / f"clean-s{seed}"
    report = results / f"clean-s{seed}.json"
    known = cached(report)
    if known is not None and known.get("detect_config") == DETECT_SETTINGS:
        return load_artefact(folder)
    if known is None:
        out = train_model(ref, "wrn-16-1", TRAIN, seed=seed, device=device, sets=sets)
        save_artefact(folder, out.model, out.meta, out.metrics, force=True)
    art = load_artefact(folder)
    det = detect_artefact(art, DetectConfig(), seed=seed, device=device, sets=sets)
    verdict = summary(det.report["labels"], None)
    atomic_write_json(
        report,
        {
            "acc": art.metrics["acc"],
            "detect": verdict,
            "detect_config": DETECT_SETTINGS,
            "settings": SETTINGS,
        },
    )
    return art


def summary(labels: list[dict[str, Any]], target: int | None) -> dict[str, Any]:
    """Neural Cleanse's verdict in a few numbers: flagged labels, the target's anomaly index, and the
    largest index among the labels whose norm is below the median (only those can be flagged; a large
    norm is not a sign of a backdoor)."""
    median = statistics.median(r["norm"] for r in labels)
    return {
        "flagged": [r["label"] for r in labels if r["flagged"]],
        "target_anomaly_index": None if target is None else labels[target]["anomaly_index"],
        "max_below_median_index": max(
            (r["anomaly_index"] or 0.0 for r in labels if r["norm"] < median), default=0.0
        ),
    }


def run_cell(attack: str, seed: int, ref: DataRef, sets, results: Path, device: torch.device) -> None:
    """Plant `attack` with `seed`, then run the repair columns not cached yet on it (all of them when the
    retrained model differs from the cached one's); one JSON in `results`."""
    path = results / f"{attack}-s{seed}.json"
    old = cached(path)
    todo = stale_columns(old)
    if not todo:
        return
    clean = clean_model(ref, sets, seed, results, device)
    start = time.perf_counter()
    trained = train_model(
        ref,
        "wrn-16-1",
        TRAIN,
        poison_spec=PoisonSpec(attack, 0, 0.1),
        seed=seed,
        device=device,
        sets=sets,
        clean_model=clean.model.to(device),
    )
    cell: dict[str, Any] = {
        "attack": attack,
        "seed": seed,
        "none": {**trained.metrics, "seconds": time.perf_counter() - start},
        "poisoned": len(trained.meta["threat"]["poisoned_indices"]),
        "device": str(device),
        "torch": torch.__version__,
        "settings": SETTINGS,
    }
    if old is not None and all(old["none"][k] == trained.metrics[k] for k in ("acc", "asr", "ra")):
        cell = {**old, **{k: v for k, v in cell.items() if k != "none"}}  # the same model: keep columns
    else:
        todo = list(COLUMNS)
    art = Artefact(trained.model, trained.meta, trained.metrics, None)
    before = {k: trained.metrics[k] for k in ("acc", "asr", "ra")}
    ft_model = None
    for method in todo:
        config = CONFIGS[method]
        teacher = ft_model if method == "mcr" else None
        out = repair_model(
            art, method, config, seed=seed, device=device, sets=sets, before=before, teacher=teacher
        )
        cell[method] = {k: out.metrics[k] for k in ("acc", "asr", "ra", "der", "seconds")}
        cell[method]["config"] = COLUMN_SETTINGS[method]
        if method == "finetune":
            ft_model = out.model
        if method == "neural-cleanse":
            cell["detect"] = summary(out.meta["repair"]["info"]["labels"], 0)
        m = cell[method]
        print(f"{attack} seed {seed} {method}: ACC {100 * m['acc']:.2f} ASR {100 * m['asr']:.2f}", flush=True)
    atomic_write_json(path, cell)


def mean_std(values: list[float], scale: float = 100.0) -> str:
    """Mean ± std in percent; the mean alone for a single value."""
    vals = [scale * v for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def table(results: Path, attacks: list[str], seeds: list[int]) -> str:
    """The Markdown section from the cached cells (missing cells are named, not invented)."""
    cells = {a: [] for a in attacks}
    missing = []
    for a in attacks:
        for s in seeds:
            cell = complete(results / f"{a}-s{s}.json")
            if cell is not None:
                cells[a].append(cell)
            else:
                missing.append(f"{a} seed {s}")
    devices = sorted(
        {f"{c.get('device', '?')}, torch {c.get('torch', '?')}" for a in attacks for c in cells[a]}
    )
    clean = {s: c for s in seeds if (c := cached(results / f"clean-s{s}.json")) is not None}
    cols = ("none", *COLUMNS)
    head = " | ".join(f"{'none' if c == 'none' else LABELS[c]} ACC / ASR %" for c in cols)
    lines = [
        f"## Backdoor defenses on Fashion-MNIST (seeds {', '.join(map(str, seeds))})",
        "",
        f"`benchmarks/defense_table.py`, {time.strftime('%Y-%m-%d')}, cells run on {'; '.join(devices)}. "
        f"WRN-16-1 trained as the demo ({TRAIN.epochs} epochs), all-to-one to target 0, rate 10% "
        "(clean-label attacks: the target class's images, all 6,000 of them); repairs with 5% clean "
        "defender data and their defaults (NC unlearning 2 epochs; MCR t rule `middle`), NAD first-phase "
        f"lr {NAD.lr} (the demo's), teacher `{NAD.teacher_init}` at lr {NAD.teacher_lr}. "
        "Cells: ACC / ASR in percent, mean ± std over seeds. A clean model trained the same way: ACC "
        + (", ".join(f"{100 * c['acc']:.2f}% (seed {s})" for s, c in clean.items()) or "not run")
        + ".",
        "",
        f"| attack | {head} |",
        "|---|" + "---|" * len(cols),
    ]
    all_rows = []
    for a in attacks:
        if not cells[a]:
            continue
        parts = [
            f"{mean_std([c[col]['acc'] for c in cells[a]])} / {mean_std([c[col]['asr'] for c in cells[a]])}"
            for col in cols
        ]
        lines.append(f"| {a} | " + " | ".join(parts) + " |")
        all_rows.extend(cells[a])
    if not all_rows:
        return "\n".join([*lines, "", "No cell has been run yet."])
    avg = {
        col: (
            statistics.mean(c[col]["acc"] for c in all_rows),
            statistics.mean(c[col]["asr"] for c in all_rows),
        )
        for col in cols
    }
    drop = {col: avg["none"][0] - avg[col][0] for col in COLUMNS}
    lines.append(
        "| **average** | " + " | ".join(f"{100 * avg[c][0]:.1f} / {100 * avg[c][1]:.1f}" for c in cols) + " |"
    )
    secs = " | ".join(
        f"{LABELS[c]} {statistics.mean(cell[c]['seconds'] for cell in all_rows):.0f}" for c in COLUMNS
    )
    lines += [
        "",
        f"Seconds per repair (mean): {secs}; training the backdoored model "
        f"{statistics.mean(c['none']['seconds'] for c in all_rows):.0f}. Wall-clock of each process: "
        "inflated where several processes shared the device.",
        "",
        "Average ACC drop (points): "
        + ", ".join(f"{LABELS[c]} {100 * drop[c]:.2f}" for c in COLUMNS)
        + f". NAD's acceptance (average ASR ≤ 5%, average ACC drop ≤ 3 points): ASR "
        f"{100 * avg['nad'][1]:.2f}%, drop {100 * drop['nad']:.2f}.",
        "",
        "Neural Cleanse detection (full reversal, defender data; flagged = anomaly index > 2 below the "
        "median):",
        "",
        "| model | seeds with the target flagged | target's anomaly index | flagged labels |",
        "|---|---|---|---|",
    ]
    for a in attacks:
        if not cells[a]:
            continue
        det = [c["detect"] for c in cells[a]]
        hits = sum(0 in d["flagged"] for d in det)
        idx = ", ".join(
            "–" if d["target_anomaly_index"] is None else f"{d['target_anomaly_index']:.2f}" for d in det
        )
        lines.append(f"| {a} | {hits} / {len(det)} | {idx} | {'; '.join(str(d['flagged']) for d in det)} |")
    for s, c in clean.items():
        d = c["detect"]
        lines.append(
            f"| clean model, seed {s} | – | max below the median {d['max_below_median_index']:.2f} | "
            f"{d['flagged'] or 'none'} |"
        )
    if missing:
        lines += ["", f"Not run (missing cells): {', '.join(missing)}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", type=Path, default=Path("runs/defense_table"))
    parser.add_argument("--clean-only", action="store_true", help="only the clean models and their NC")
    parser.add_argument("--no-table", action="store_true", help="run cells, do not write the table")
    parser.add_argument("--table-only", action="store_true", help="write the table from cached cells")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        ref = DataRef("fashion-mnist")
        sets = ref.load()
        for seed in args.seeds:
            if args.clean_only:
                clean_model(ref, sets, seed, args.results, device)
                continue
            for attack in args.attacks:
                run_cell(attack, seed, ref, sets, args.results, device)
    if args.clean_only or args.no_table:
        return
    text = table(args.results, args.attacks, args.seeds)
    write_section("defense_table", text, args.doc)
    print(text)


if __name__ == "__main__":
    main()
