"""Images/second of mendnet's training loop vs a bare PyTorch loop on the same model and batch.

Target: ours ≥ 0.9× the bare loop. Two bare loops are timed: the plain one (default memory format)
and one in channels_last (the faster of the two is the floor we compare against). Data: the first
N Fashion-MNIST training images, no augmentation, SGD, batch 128. Each timing is the best of
`--repeats` epochs after one untimed warm-up epoch; on CUDA the clock is read after a synchronise.
Writes section `train_throughput_<device type>` of docs/benchmarks.md.

    .venv/bin/python benchmarks/train_throughput.py [--model wrn-16-1] [--images 6400] [--repeats 3]
        [--device auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from docs_section import DOC, write_section

from mendnet.data.catalog import load_dataset
from mendnet.device import resolve_device
from mendnet.models import ModelSpec, build_classifier
from mendnet.train import TrainConfig, fit


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(
    model, images: torch.Tensor, labels: torch.Tensor, batch: int, channels_last: bool, device: torch.device
) -> float:
    """One epoch of the textbook loop over uint8 batches already on the device; returns seconds."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    synchronize(device)
    start = time.perf_counter()
    for i in range(0, len(images) - batch + 1, batch):
        x = images[i : i + batch].float().div(255).contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(x), labels[i : i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="wrn-16-1")
    parser.add_argument("--images", type=int, default=6400)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_dataset("fashion-mnist", "train")
    data = data.subset(torch.arange(args.images))
    spec = ModelSpec(args.model, data.num_classes, data.shape, data.mean, data.std)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.01, schedule="constant")
    n = (len(data) // args.batch_size) * args.batch_size
    images, labels = data.images.to(device), data.labels.to(device)

    def ours() -> float:
        torch.manual_seed(0)
        seconds = fit(build_classifier(spec), data, cfg, progress=False, device=device).seconds
        synchronize(device)
        return seconds

    def bare(channels_last: bool) -> float:
        torch.manual_seed(0)
        return bare_loop(build_classifier(spec), images, labels, args.batch_size, channels_last, device)

    timers = {
        "mendnet fit": ours,
        "bare loop": lambda: bare(False),
        "bare loop, channels_last": lambda: bare(True),
    }
    best = {name: float("inf") for name in timers}
    for repeat in range(args.repeats + 1):
        for name, timer in timers.items():
            seconds = timer()
            if repeat:  # the first round warms up (allocator, kernels)
                best[name] = min(best[name], seconds)
    rate = {k: n / v for k, v in best.items()}
    floor = max(rate["bare loop"], rate["bare loop, channels_last"])
    ratio = rate["mendnet fit"] / floor
    lines = [
        f"## Training-loop throughput ({device.type})",
        "",
        f"`benchmarks/train_throughput.py --device {device.type}`, {time.strftime('%Y-%m-%d')}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}. {args.model}, {n} Fashion-MNIST "
        f"images, batch {args.batch_size}, SGD, no augmentation, best of {args.repeats} epochs after a "
        "warm-up.",
        "",
        "| loop | images/s |",
        "|---|---|",
        *(f"| {k} | {v:.0f} |" for k, v in rate.items()),
        "",
        f"mendnet fit / faster bare loop: {ratio:.2f}× (target ≥ 0.90)",
    ]
    write_section(f"train_throughput_{device.type}", "\n".join(lines), args.doc)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
