"""The attack table of issue 4: each backdoor attack planted in WRN-16-1 on Fashion-MNIST with the demo's
training settings (`DemoConfig.train_config()`: 5 epochs, batch 128, lr 0.05 Nesterov, cosine, crop
padding 2, flip), 10% rate all-to-one to target 0 (clean-label attacks: every target-class image up to
that rate, which on Fashion-MNIST is all 6,000 of class 0), beside a clean model trained the same way;
written to docs/benchmarks.md (section `attack_table`).

`--rate` and `--target` run the same table in another setting (e.g. `--rate 0.05 --attacks sig cl
refool`: half of the target class poisoned, so clean target-class images remain in training), and
`--epochs` with longer or shorter training; such a run writes section
`attack_table_target<T>_rate<R>` and/or `..._epochs<E>` and leaves `attack_table` alone.

The clean model doubles as the attacker's separately trained clean model for Trojan (patch
optimisation) and CL (PGD), so their seconds include that work but not the clean model's training.
"clean ASR" is the clean model's rate of sending each attack's triggered test images to the target:
the floor an ASR must be compared with.

    .venv/bin/python benchmarks/attack_table.py [--seed 0] [--device auto] [--attacks sig cl]
    .venv/bin/python benchmarks/attack_table.py --rate 0.05 --attacks sig cl refool
    .venv/bin/python benchmarks/attack_table.py --quick    # small-cnn, 3,000 images, 1 epoch (a smoke run)

--quick also cuts Trojan to 100 Adam steps on 16 images and CL to 10 PGD steps, evaluates on the first
1,000 test images, and writes section `attack_table_quick` instead.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
from docs_section import DOC, write_section

from mendnet.data.ref import DataRef
from mendnet.demo import DemoConfig
from mendnet.device import resolve_device
from mendnet.evaluate import accuracy, backdoor_metrics
from mendnet.jobs.outcome import ModelOutcome
from mendnet.jobs.train import train_model
from mendnet.models import Classifier
from mendnet.threats.backdoor.spec import PoisonSpec, backdoor_test_for, threat_of

ATTACKS = ("badnets", "blend", "trojan", "sig", "cl", "refool")
QUICK_PARAMS = {"trojan": (("steps", 100), ("images", 16)), "cl": (("steps", 10),)}
QUICK_SUBSET, QUICK_TEST = 3000, 1000
TARGET, RATE = 0, 0.1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small-cnn, 3,000 images, 1 epoch")
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    parser.add_argument("--rate", type=float, default=RATE, help="poisoned fraction of the training set")
    parser.add_argument("--target", type=int, default=TARGET, help="the attacks' target class")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the demo's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be ≥ 1, got {args.epochs}")
    device = resolve_device(args.device)
    ref = DataRef("fashion-mnist")
    train, test = ref.load()
    cfg = DemoConfig().train_config()
    arch, subset = ("small-cnn", QUICK_SUBSET) if args.quick else ("wrn-16-1", None)
    if args.quick:
        test = test.subset(torch.arange(QUICK_TEST))
        cfg = replace(cfg, epochs=1)
    demo_epochs = args.epochs in (None, cfg.epochs)
    if not demo_epochs:
        cfg = replace(cfg, epochs=args.epochs)

    def run(spec: PoisonSpec | None, clean_model: Classifier | None = None) -> tuple[ModelOutcome, float]:
        start = time.perf_counter()
        out = train_model(
            ref,
            arch,
            cfg,
            poison_spec=spec,
            seed=args.seed,
            device=device,
            sets=(train, test),
            train_subset=subset,
            clean_model=clean_model,
        )
        return out, time.perf_counter() - start

    target_test = test.subset(torch.nonzero(test.labels == args.target).flatten())

    def target_acc(model: Classifier) -> str:
        return f"{100 * accuracy(model, target_test, device=device):.2f}"

    clean, clean_seconds = run(None)
    rows = [
        f"| clean | – | – | {100 * clean.metrics['acc']:.2f} | {target_acc(clean.model)} | – | – | – | "
        f"{clean_seconds:.0f} |"
    ]
    for attack in args.attacks:
        params = QUICK_PARAMS.get(attack, ()) if args.quick else ()
        out, seconds = run(PoisonSpec(attack, args.target, args.rate, params=params), clean.model.to(device))
        threat = threat_of(out.meta)
        floor = backdoor_metrics(clean.model, test, backdoor_test_for(threat, test, train), device=device)
        m = out.metrics
        rows.append(
            f"| {attack} | {'clean' if threat.clean_label else 'dirty'} | {len(threat.poisoned_indices)} | "
            f"{100 * m['acc']:.2f} | {target_acc(out.model)} | {100 * m['asr']:.2f} | {100 * m['ra']:.2f} | "
            f"{100 * floor['asr']:.2f} | {seconds:.0f} |"
        )
        print(rows[-1], flush=True)
    setting = (
        f"small-cnn, {QUICK_SUBSET:,} training images, {cfg.epochs} epoch(s), "
        f"first {QUICK_TEST:,} test images; "
        "Trojan 100 Adam steps on 16 images, CL 10 PGD steps (a smoke run, not a result)"
        if args.quick
        else f"WRN-16-1, the full training set, {cfg.epochs} epochs, the full test set"
    )
    variants = []  # (flags, section suffix, title) of each setting that differs from the issue's
    if (args.rate, args.target) != (RATE, TARGET):
        variants.append(
            (
                f"--rate {args.rate:g} --target {args.target}",
                f"_target{args.target}_rate{args.rate:g}",
                f", target {args.target}, rate {100 * args.rate:g}%",
            )
        )
    if not demo_epochs:
        variants.append((f"--epochs {cfg.epochs}", f"_epochs{cfg.epochs}", f", {cfg.epochs} epochs"))
    section = "attack_table" + "".join(suffix for _, suffix, _ in variants)
    title = "".join(part for _, _, part in variants)
    flags = [
        *(["--quick"] if args.quick else []),
        *(flag for flag, _, _ in variants),
        *([] if tuple(args.attacks) == ATTACKS else ["--attacks", *args.attacks]),
    ]
    training = (
        f"batch {cfg.batch_size}, lr {cfg.lr:g}{' Nesterov' if cfg.nesterov else ''}, {cfg.schedule}, "
        f"crop padding {cfg.crop_padding}{', flip' if cfg.flip else ''}"
    )
    lines = [
        "## Backdoor attacks on Fashion-MNIST" + title + (" (quick smoke run)" if args.quick else ""),
        "",
        f"`{' '.join(['benchmarks/attack_table.py', *flags])}`, {time.strftime('%Y-%m-%d')}, "
        f"device {device}, {torch.get_num_threads()} threads, seed {args.seed}. {setting}. Demo "
        f"training settings ({training}); all-to-one, "
        f"target {args.target}, rate {100 * args.rate:g}% (clean-label: the target class's images up to that "
        "rate). Percent. "
        "`clean ASR`: the clean model's rate for the same triggered test images. Seconds: poisoning "
        "(Trojan patch optimisation, CL's PGD) + training + evaluation; Trojan and CL use the clean "
        "model above as the attacker's clean model. `target-class ACC`: clean test accuracy on the "
        "target class's test images alone, where clean-label attacks, which stamp the target class's "
        "training images, lose accuracy.",
        "",
        "| attack | labels | poisoned | ACC % | target-class ACC % | ASR % | RA % | clean ASR % | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_section(section + "_quick" if args.quick else section, "\n".join(lines), args.doc)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
