"""Images/second of mendnet's training loop vs a bare PyTorch loop on the same model and batch.

Target: ours ≥ 0.9× the bare loop. Two bare loops are timed: the plain one (default memory format)
and one in channels_last (the faster of the two is the floor we compare against). Data: the first
N Fashion-MNIST training images, no augmentation, SGD, batch 128.

    .venv/bin/python benchmarks/train_throughput.py [--model wrn-16-1] [--images 6400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mendnet.data.catalog import load_dataset
from mendnet.models import ModelSpec, build_classifier
from mendnet.train import TrainConfig, fit


def bare_loop(model, images: torch.Tensor, labels: torch.Tensor, batch: int, channels_last: bool) -> float:
    """One epoch of the textbook loop over pre-made float batches; returns seconds."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
    for i in range(0, len(images) - batch + 1, batch):
        x = images[i : i + batch].float().div(255).contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(x), labels[i : i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="wrn-16-1")
    parser.add_argument("--images", type=int, default=6400)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = load_dataset("fashion-mnist", "train")
    data = data.subset(torch.arange(args.images))
    spec = ModelSpec(args.model, data.num_classes, data.shape, data.mean, data.std)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.01, schedule="constant")
    n = (len(data) // args.batch_size) * args.batch_size
    best = {"mendnet fit": float("inf"), "bare loop": float("inf"), "bare loop, channels_last": float("inf")}
    for _ in range(args.repeats):
        torch.manual_seed(0)
        model = build_classifier(spec)
        best["mendnet fit"] = min(best["mendnet fit"], fit(model, data, cfg, progress=False).seconds)
        for name, cl in (("bare loop", False), ("bare loop, channels_last", True)):
            torch.manual_seed(0)
            model = build_classifier(spec)
            best[name] = min(best[name], bare_loop(model, data.images, data.labels, args.batch_size, cl))
    rate = {k: n / v for k, v in best.items()}
    floor = max(rate["bare loop"], rate["bare loop, channels_last"])
    print(
        f"{args.model}, {n} images, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, best of {args.repeats}"
    )
    for k, v in rate.items():
        print(f"  {k:28s} {v:8.0f} img/s")
    print(f"ratio mendnet / faster bare loop = {rate['mendnet fit'] / floor:.2f} (target ≥ 0.90)")


if __name__ == "__main__":
    main()
