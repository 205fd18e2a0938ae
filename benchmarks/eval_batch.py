"""Images/second of the one evaluation path (`mendnet.evaluate.predict`) by inference batch size.

`predict` picks its batch by device (`eval_batch_size`: 128 on CPU, 512 elsewhere). This script times it
on the first N Fashion-MNIST test images for each architecture and batch size and prints each rate as a
ratio to the device's default batch, so the default can be checked on new hardware (target: no listed
batch size faster than the default by more than 10%). Models are freshly initialised (speed does not
depend on the weights); each timing is the best of `--repeats` passes after one untimed warm-up pass; on
CUDA the clock is read after a synchronise. Writes section `eval_batch_<device type>` of
docs/benchmarks.md.

    .venv/bin/python benchmarks/eval_batch.py [--models small-cnn wrn-16-1] [--images 4096]
        [--batches 32 64 128 256 512] [--repeats 3] [--device auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from docs_section import DOC, write_section
from train_throughput import synchronize

from mendnet.data.catalog import load_dataset
from mendnet.device import resolve_device
from mendnet.evaluate import eval_batch_size, predict
from mendnet.models import ModelSpec, build_classifier


def timed_pass(model, data, batch: int, device: torch.device) -> float:
    """Seconds of one `predict` pass over `data` in batches of `batch`."""
    synchronize(device)
    start = time.perf_counter()
    predict(model, data, batch_size=batch, device=device)
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["small-cnn", "wrn-16-1"])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    device = resolve_device(args.device)
    default = eval_batch_size(device)
    batches = sorted(set(args.batches) | {default})
    data = load_dataset("fashion-mnist", "test")
    data = data.subset(torch.arange(min(args.images, len(data))))
    header = " | ".join(f"{b}{' (default)' if b == default else ''}" for b in batches)
    lines = [
        f"## Evaluation throughput by batch size ({device.type})",
        "",
        f"`benchmarks/eval_batch.py --device {device.type}`, {time.strftime('%Y-%m-%d')}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}. `mendnet.evaluate.predict` on "
        f"{len(data)} Fashion-MNIST test images, best of {args.repeats} passes after a warm-up. Images/s, "
        "and in brackets the ratio to the default batch.",
        "",
        f"| model | {header} |",
        "|---|" + "---|" * len(batches),
    ]
    verdicts = []
    for name in args.models:
        spec = ModelSpec(name, data.num_classes, data.shape, data.mean, data.std)
        model = build_classifier(spec).to(device=device, memory_format=torch.channels_last).eval()
        best = {}
        for batch in batches:
            timed_pass(model, data, batch, device)
            best[batch] = min(timed_pass(model, data, batch, device) for _ in range(args.repeats))
        rate = {b: len(data) / s for b, s in best.items()}
        cells = " | ".join(f"{rate[b]:.0f} ({rate[b] / rate[default]:.2f}×)" for b in batches)
        lines.append(f"| {name} | {cells} |")
        fastest = max(rate, key=rate.get)
        ok = rate[fastest] <= 1.1 * rate[default]
        verdicts.append(
            f"{name}: fastest batch {fastest}, {rate[fastest] / rate[default]:.2f}× the default "
            f"({'meets' if ok else 'misses'} ≤ 1.10×)"
        )
    lines += ["", "; ".join(verdicts) + "."]
    write_section(f"eval_batch_{device.type}", "\n".join(lines), args.doc)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
