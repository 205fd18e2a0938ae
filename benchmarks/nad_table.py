"""The demo's table (backdoored / fine-tuning / NAD, ACC and ASR) over 3 seeds, mean ± std, written to
docs/benchmarks.md. Each seed reruns the whole demo (about 8 minutes on 2 CPU cores).

    .venv/bin/python benchmarks/nad_table.py [--seeds 0 1 2] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from docs_section import DOC, write_section

from mendnet.demo import DemoConfig, run_demo
from mendnet.device import resolve_device

ROWS = ("backdoored", "finetune", "nad")


def mean_std(values: list[float]) -> str:
    pct = [100 * v for v in values]
    std = statistics.stdev(pct) if len(pct) > 1 else 0.0
    return f"{statistics.mean(pct):.2f} ± {std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    device = resolve_device(args.device)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs.append(run_demo(DemoConfig(seed=seed), Path(tmp) / f"s{seed}", device=device))
    lines = [
        f"## NAD on the demo setting ({len(runs)} seeds: {', '.join(map(str, args.seeds))})",
        "",
        f"`benchmarks/nad_table.py`, {time.strftime('%Y-%m-%d')}, device {device}, "
        f"{torch.get_num_threads()} threads. Fashion-MNIST, WRN-16-1, BadNets 3×3 all-to-one (target 0, "
        f"10%), {DemoConfig.epochs} training epochs; repairs with 5% clean defender data. "
        "Percent, mean ± std.",
        "",
        "| model | ACC % | ASR % | RA % | seconds |",
        "|---|---|---|---|---|",
    ]
    for row in ROWS:
        ms = [r[row] for r in runs]
        secs = statistics.mean(m.get("seconds", m.get("train_seconds", 0.0)) for m in ms)
        lines.append(
            f"| {row} | {mean_std([m['acc'] for m in ms])} | {mean_std([m['asr'] for m in ms])} | "
            f"{mean_std([m['ra'] for m in ms])} | {secs:.0f} |"
        )
    per_seed = ", ".join(
        f"seed {s}: NAD ASR {100 * r['nad']['asr']:.2f}%, "
        f"ACC drop {100 * (r['backdoored']['acc'] - r['nad']['acc']):.2f}"
        for s, r in zip(args.seeds, runs, strict=True)
    )
    lines += [
        "",
        f"Per seed (the demo's acceptance: NAD ASR ≤ 5%, ACC drop ≤ 3 points): {per_seed}.",
        f"Whole demo: {statistics.mean(r['seconds'] for r in runs):.0f} s per seed on average.",
    ]
    write_section("nad_table", "\n".join(lines), args.doc)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
