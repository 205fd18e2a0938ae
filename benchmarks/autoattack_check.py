"""mendnet's `autoattack` against the authors' package called directly, on the same images, ε, version, seed
and batch size (issue 27's acceptance: robust accuracy equal to within 0.5 points on 500 images).

    .venv/bin/python benchmarks/autoattack_check.py ARTEFACT [--images 500] [--eps 8/255] [--norm linf]
        [--version standard] [--seed 0] [--batch-size 250] [--device auto] [--threads N] [--quiet]

Both attack the first N test images of the artefact's data set. mendnet runs `robust_accuracy` with its
`autoattack` (or `autoattack-l2`) attack, which is what `mendnet attack ARTEFACT --attack autoattack`
runs; the package runs `pyautoattack.AutoAttack(model, eps=..., norm=..., version=..., seed=...,
device=...).run_standard_evaluation(x, y, batch_size=...)` (`autoattack.package_run`). The script
prints both robust accuracies, their difference in points, mendnet's per-component counts and the
seconds of each. ε defaults to mendnet's (8/255 L∞, 0.1 on 28×28 greyscale; 0.5 L2) and is passed to
both explicitly (the package's own default is 0.3).

The full standard version costs about 4 s an image of a robust small CNN on 2 CPU cores (36 minutes for
500), twice that here since both run; try it on a handful of images first. On busy CPU cores
`--threads 1` can be several times faster for small models.

The same check on a PGD-AT small CNN that the bench trains: `mendnet bench recipes/autoattack_check.toml`
(`run.aa_check`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from mendnet.artefact import load_artefact
from mendnet.cli.config import parse_number
from mendnet.data.catalog import load_dataset
from mendnet.data.ref import data_of
from mendnet.device import resolve_device
from mendnet.models import check_fits
from mendnet.threats.adversarial import make_attack, robust_accuracy
from mendnet.threats.adversarial.autoattack import PACKAGE_NORM, VERSIONS, package_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="artefact folder")
    p.add_argument("--images", type=int, default=500, help="first N test images (default: 500)")
    p.add_argument("--eps", type=parse_number, default=None, help="budget (default: mendnet's)")
    p.add_argument("--norm", choices=sorted(PACKAGE_NORM), default="linf")
    p.add_argument("--version", choices=VERSIONS, default="standard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250, help="both runs' batch size (default: 250)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    art = load_artefact(args.model)
    ref = data_of(art.meta)
    test = load_dataset(ref.name, "test", ref.data_dir)
    check_fits(art.model, test)
    test = test.subset(torch.arange(min(args.images, len(test))))
    device = resolve_device(args.device)
    model = art.model.to(device).eval()
    name = "autoattack" if args.norm == "linf" else "autoattack-l2"
    attack = make_attack(name, test.shape, eps=args.eps, seed=args.seed, aa_version=args.version)

    start = time.perf_counter()
    ours = robust_accuracy(
        model,
        test,
        attacks={name: attack},
        batch_size=args.batch_size,
        device=device,
        progress=not args.quiet,
    )
    ours_seconds = time.perf_counter() - start

    theirs = package_run(
        model,
        test.float_images().to(device),
        test.labels.to(device),
        eps=attack.eps,
        norm=attack.norm,
        version=args.version,
        seed=args.seed,
        batch_size=args.batch_size,
    )

    mine = ours.per_attack[name]
    detail = ours.details[name]
    print(
        f"{args.model}: {len(test)} images, {args.version}, {attack.norm} ε = {attack.eps:.4g}, "
        f"seed {args.seed}, batch {args.batch_size}, {device}"
    )
    print(f"clean accuracy          {100 * ours.clean_acc:6.2f}%")
    print(f"mendnet autoattack      {100 * mine:6.2f}%   {ours_seconds:8.1f} s")
    print(f"pyautoattack directly   {100 * theirs.accuracy:6.2f}%   {theirs.seconds:8.1f} s")
    print(f"difference              {100 * (mine - theirs.accuracy) + 0.0:+6.2f} points")
    print("mendnet, broken by: " + ", ".join(f"{c} {k}" for c, k in detail["broken_by"].items()))
    for line in detail["warnings"]:
        print(f"warning: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
