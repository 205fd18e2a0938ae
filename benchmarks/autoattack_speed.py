"""Seconds of PGD-L∞ (20 steps), AutoAttack (standard) and the audit's budgeted AutoAttack on the same
model and test images, each as a multiple of PGD-20's, to show what AutoAttack costs in the robustness
report and in `mendnet audit`.

    .venv/bin/python benchmarks/autoattack_speed.py --model ARTEFACT [--images 500] [--eps 0.1]
        [--threads 2] [--device cpu] [--attacks pgd20 standard budgeted] [--batch-size N]
        [--section NAME] [--doc FILE] [--no-doc]

The first N test images of the artefact's data set; ε defaults to mendnet's (0.1 on 28×28 greyscale, else
8/255; `linf_budget`). Each attack is built where its command builds it and run by
`robust_accuracy` alone, at its caller's batch size unless --batch-size is given:

- pgd20: the robustness report's PGD-L∞-20 (`report_attacks`: α ε/4, random start, seed 0), batch 500;
- standard: the report's AutoAttack (standard version, seed 0), batch 500;
- budgeted: the audit's (`budgeted_autoattack` with `AuditConfig`'s defaults: APGD-CE, APGD-T with 3
  targets, Square with 1000 queries, seed 0), batch 256.

One untimed PGD-20 call on two images warms up first; on CUDA the clock is read after a synchronise.
The full standard version costs about 4 s an image of a robust small CNN on 2 CPU cores: try a handful of
images first. Progress bars go to stderr (MENDNET_QUIET=1 silences them). Writes section
`autoattack_speed_<device type>` of docs/benchmarks.md unless --no-doc.
"""

from __future__ import annotations

import argparse
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from docs_section import DOC, write_section
from train_throughput import synchronize

from mendnet.artefact import load_artefact
from mendnet.audit.run import AuditConfig, budgeted_autoattack
from mendnet.cli.config import parse_number
from mendnet.data.ref import data_of
from mendnet.device import resolve_device
from mendnet.models import check_fits
from mendnet.robust.context import linf_budget
from mendnet.robust.evaluation import AA_PGD, AA_VERSION, report_attacks, robust_metrics
from mendnet.threats.adversarial import Attack, AutoAttack, robust_accuracy

ATTACKS = ("pgd20", "standard", "budgeted")


def default_batch(caller: Callable[..., Any]) -> int:
    """The `batch_size` default of `caller`, the function whose batch size the command runs with."""
    return inspect.signature(caller).parameters["batch_size"].default


def attacks_to_time(eps: float, shape: tuple[int, int, int]) -> dict[str, tuple[str, Attack, int]]:
    """Each attack key → (table label, attack, its caller's batch size)."""
    budgeted = budgeted_autoattack(shape, AuditConfig(eps=eps))
    return {
        "pgd20": ("PGD-L∞-20 (report)", report_attacks(eps)[AA_PGD], default_batch(robust_metrics)),
        "standard": (
            f"AutoAttack {AA_VERSION} (report)",
            AutoAttack(eps=eps, seed=0, aa_version=AA_VERSION),
            default_batch(robust_metrics),
        ),
        "budgeted": (
            f"AutoAttack budgeted (audit: {', '.join(budgeted.components)}; {budgeted.aa_targets} targets, "
            f"{budgeted.aa_square_queries} Square queries)",
            budgeted,
            default_batch(robust_accuracy),
        ),
    }


def model_text(meta: dict[str, Any]) -> str:
    """The artefact's architecture and the command that wrote it, as its model.json records them."""
    command = (meta.get("provenance") or {}).get("command", "command not recorded")
    return f"{meta['model']['arch']}, from `{command}`"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="artefact folder")
    parser.add_argument("--images", type=int, default=500, help="first N test images (default: 500)")
    parser.add_argument("--eps", type=parse_number, default=None, help="L∞ budget (default: mendnet's)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    parser.add_argument("--batch-size", type=int, default=None, help="every attack's (default: its caller's)")
    parser.add_argument("--section", default=None, help="docs section (default: autoattack_speed_DEVICE)")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    art = load_artefact(args.model)
    ref = data_of(art.meta)
    test = ref.split("test")
    check_fits(art.model, test)
    test = test.subset(torch.arange(min(args.images, len(test))))
    eps = linf_budget(args.eps, test.shape)
    model = art.model.to(device).eval()
    chosen = {k: v for k, v in attacks_to_time(eps, test.shape).items() if k in args.attacks}

    warm = test.float_images(torch.arange(min(2, len(test)))).to(device)
    report_attacks(eps)[AA_PGD](model, warm, test.labels[: len(warm)].to(device))
    rows = {}
    for key, (label, attack, caller_batch) in chosen.items():
        batch = args.batch_size or caller_batch
        synchronize(device)
        start = time.perf_counter()
        result = robust_accuracy(
            model,
            test,
            attacks={label: attack},
            batch_size=batch,
            device=device,
            progress=True,
        )
        synchronize(device)
        rows[key] = (label, result.per_attack[label], time.perf_counter() - start, batch)

    n = len(test)
    pgd_seconds = rows["pgd20"][2] if "pgd20" in rows else None
    lines = [
        f"## AutoAttack speed ({n} {ref.name} test images, L∞ ε {eps:.4g}, {device.type})",
        "",
        "| attack | images | robust accuracy % | seconds | images/s | seconds ÷ PGD-20's | batch |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {label} | {n} | {100 * acc:.1f} | {seconds:.2f} | {n / seconds:.2f} | "
            f"{f'{seconds / pgd_seconds:.1f}×' if pgd_seconds else '–'} | {batch} |"
            for label, acc, seconds, batch in rows.values()
        ),
        "",
        f"Model {args.model}: {model_text(art.meta)}. Device {device}, {torch.get_num_threads()} CPU "
        f"threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; `benchmarks/autoattack_speed.py "
        f"--device {device.type} --threads {args.threads}`. Each attack alone through `robust_accuracy`, "
        "seed 0, at its command's batch size unless --batch-size; one untimed PGD-20 warm-up on two images.",
    ]
    text = "\n".join(lines)
    if not args.no_doc:
        write_section(args.section or f"autoattack_speed_{device.type}", text, args.doc)
    print(text)


if __name__ == "__main__":
    main()
