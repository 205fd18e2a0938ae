"""AI-Lancet's general defects (issue 6) at several sizes of the trained set: does the vote order pick
better weights than chance when fewer of them train? Written to docs/benchmarks.md, section
`lancet_defect_dose`.

The setting of `lancet_defects.py --part defects` (its clean WRN-16-1 per seed, test-set halves, mask
companions of half 1's first 100 errors, the located layer and votes, N_e ∪ N_o and the fine-tuning
config). For each share s of the chosen layer's weights, k = s·n weights train: the first k of AI-Lancet's
flip order (most votes first, ties by importance) against k seeded random weights of the same layer.
Also reported: how the per-sample minimal ablation ratios spread, and how much of the layer the union of
the EI sets covers, which is what leaves the default vote threshold (≥ 5% of corrected pairs) training
most of the layer.

    .venv/bin/python benchmarks/lancet_dose.py [--seeds 0 1 2] [--shares 0.01 0.05 0.2] [--device auto]

Each seed is cached as a JSON in --results (default runs/lancet_dose) with its settings; `--table-only`
writes the section from the cache. About 15 minutes per seed on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch
from docs_section import write_section
from lancet_defects import FULL, defect_scores, defect_setup, pct, random_mask, say, tuned_scores
from result_cache import as_json, read_cached, write_cached

from mendnet.data.ref import DataRef
from mendnet.device import resolve_device
from mendnet.errors import MendnetError
from mendnet.repair.lancet.repair import FinetuneConfig

RESULTS = Path(__file__).resolve().parent.parent / "runs" / "lancet_dose"


def settings_of(shares: list[float]) -> dict:
    return as_json({"setting": asdict(FULL), "finetune": asdict(FinetuneConfig()), "shares": shares})


def one_seed(sets: tuple, seed: int, shares: list[float], device: torch.device) -> dict:
    setup = defect_setup(FULL, sets, seed, device)
    located = setup.located
    found = located.chosen.result.found
    ratios = located.chosen.result.ratio[found].double()
    quartiles = ratios.quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
    n = located.votes.numel()
    out = {
        "seed": seed,
        "layer": located.layer,
        "layer_weights": n,
        "successes": int(found.sum()),
        "pairs": located.chosen.stats.samples,
        "ratio_quartiles": quartiles,
        "voted": len(located.order),
        "original": defect_scores(setup.model, setup.half2, setup.wrong2, device),
        "rows": [],
    }
    for share in shares:
        k = min(round(share * n), len(located.order))
        top = torch.zeros(n, dtype=torch.bool)
        top[located.order[:k]] = True
        row = {
            "share": share,
            "k": k,
            "lancet": tuned_scores(setup, top.view(located.votes.shape), seed, device),
            "random": tuned_scores(setup, random_mask(located.votes, k, seed), seed, device),
        }
        say(f"  seed {seed}, {k} weights: {row}")
        out["rows"].append(row)
    return out


def table(results: list[dict], shares: list[float], command: str, device: torch.device) -> str:
    lines = [
        "## AI-Lancet: general defects at several sizes of the trained set",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d')}, device {device}, {torch.get_num_threads()} threads; "
        f"seeds {', '.join(str(r['seed']) for r in results)}. The setting of `lancet_defects.py --part "
        "defects`; k weights of the chosen layer train (the first k of AI-Lancet's vote order, or k random "
        "ones), everything else as there. Percent, mean ± std over seeds; the original model scores 0 on "
        "half 2's misclassified images by definition.",
        "",
        "| share of the layer | weights k | AI-Lancet: half 2 ACC / misclassified fixed % "
        "| random: half 2 ACC / misclassified fixed % | AI-Lancet − random, points |",
        "|---|---|---|---|---|",
    ]
    lines.append(f"| original | - | {pct([r['original']['acc'] for r in results])} / 0.00 | - | - |")

    def pair(rows: list[dict], key: str) -> str:
        return f"{pct([row[key]['acc'] for row in rows])} / {pct([row[key]['fixed'] for row in rows])}"

    for i, share in enumerate(shares):
        rows = [r["rows"][i] for r in results]
        gain = [row["lancet"]["fixed"] - row["random"]["fixed"] for row in rows]
        lines.append(
            f"| {100 * share:g}% | {statistics.mean(row['k'] for row in rows):.0f} | "
            f"{pair(rows, 'lancet')} | {pair(rows, 'random')} | {pct(gain)} |"
        )
    lines += [
        "",
        "Located: "
        + "; ".join(
            f"seed {r['seed']}: `{r['layer']}`, {r['successes']} of {r['pairs']} pairs corrected, minimal "
            f"ratio quartiles {' / '.join(f'{100 * q:.2g}%' for q in r['ratio_quartiles'])}, the EI sets' "
            f"union {r['voted']} of {r['layer_weights']} weights "
            f"({100 * r['voted'] / r['layer_weights']:.0f}%)"
            for r in results
        )
        + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.01, 0.05, 0.2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the per-seed JSONs")
    parser.add_argument("--table-only", action="store_true", help="write the section from the cache")
    args = parser.parse_args()
    if not all(0 < s <= 1 for s in args.shares):
        raise SystemExit(f"error: --shares must lie in (0, 1], got {args.shares}")
    device = resolve_device(args.device)
    settings = settings_of(args.shares)
    sets = None if args.table_only else DataRef("fashion-mnist").load()
    results = []
    for seed in args.seeds:
        path = args.results / f"s{seed}.json"
        cached = read_cached(path, settings)
        if cached is None:
            if args.table_only:
                raise SystemExit(f"error: {path} is missing or was made with other settings")
            say(f"seed {seed}: general defects at shares {args.shares}")
            try:
                result = one_seed(sets, seed, args.shares, device)
            except MendnetError as e:
                raise SystemExit(f"error: {e}") from e
            write_cached(path, settings, result=result)
        else:
            result = cached["result"]
        results.append(result)
    flags = ["--seeds", *map(str, args.seeds), "--shares", *map(str, args.shares)]
    text = table(results, args.shares, " ".join(["benchmarks/lancet_dose.py", *flags]), device)
    write_section("lancet_defect_dose", text)
    print(text)


if __name__ == "__main__":
    main()
