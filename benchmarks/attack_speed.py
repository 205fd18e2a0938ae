"""PGD-L∞ (20 steps) speed and robust accuracy: mendnet vs torchattacks vs adversarial-robustness-toolbox
vs a bare loop of 20 forward+backward passes (the physical floor), on the same model and test images.

Targets: images/second ≥ 1.0× the faster peer and ≥ 0.9× the bare loop; robust accuracy within 1 point
of the peers at the same settings. Peers are optional (installed only for this benchmark):

    .venv/bin/pip install --no-deps torchattacks adversarial-robustness-toolbox
    .venv/bin/pip install scipy scikit-learn
    .venv/bin/python benchmarks/attack_speed.py [--model ARTEFACT] [--images 1000] [--eps 0.1] [--device auto]

Without --model, a WRN-16-1 is trained on Fashion-MNIST for one epoch first (about 80 s on 2 cores).
Each implementation attacks one untimed warm-up batch first; on CUDA the clock is read after a
synchronise. Writes section `attack_speed_<device type>` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from docs_section import DOC, write_section

from mendnet.artefact import load_artefact
from mendnet.data.catalog import load_dataset
from mendnet.data.ref import DataRef
from mendnet.device import resolve_device
from mendnet.jobs.train import train_model
from mendnet.threats.adversarial import PGD
from mendnet.train import TrainConfig


def bare_loop(model, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    """The floor: `steps` forward+backward passes w.r.t. the input, nothing else."""
    x = x.clone().requires_grad_(True)
    for _ in range(steps):
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g


def ours(model, x, y, eps, alpha, steps):
    return PGD(eps=eps, alpha=alpha, steps=steps)(model, x, y)


def torchattacks_pgd(model, x, y, eps, alpha, steps):
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)


def art_pgd(model, x, y, eps, alpha, steps):
    device_type = "gpu" if x.is_cuda else "cpu"
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type=device_type,
    )
    atk = ProjectedGradientDescentPyTorch(
        clf,
        norm="inf",
        eps=eps,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=1,
        batch_size=len(x),
        verbose=False,
    )
    return torch.from_numpy(atk.generate(x.cpu().numpy(), y.cpu().numpy())).to(x.device)


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """fn's result and its wall-clock seconds (device work finished before the clock is read)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="artefact folder (default: train a WRN-16-1 briefly)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args()
    device = resolve_device(args.device)
    alpha = args.eps / 4
    if args.model:
        model = load_artefact(args.model).model
    else:
        cfg = TrainConfig(epochs=1, lr=0.05)
        model = train_model(DataRef(), "wrn-16-1", cfg, progress=False, device=device).model
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    test = load_dataset("fashion-mnist", "test")
    x_all = test.float_images(torch.arange(args.images)).to(device)
    y_all = test.labels[: args.images].to(device)
    candidates = {
        "mendnet": ours,
        "torchattacks": torchattacks_pgd,
        "adversarial-robustness-toolbox": art_pgd,
    }
    rows = {}
    for name, fn in candidates.items():
        try:
            fn(model, x_all[: args.batch_size], y_all[: args.batch_size], args.eps, alpha, args.steps)
            parts, seconds = [], 0.0
            for i in range(0, args.images, args.batch_size):
                x, y = x_all[i : i + args.batch_size], y_all[i : i + args.batch_size]
                adv, dt = timed(lambda fn=fn, x=x, y=y: fn(model, x, y, args.eps, alpha, args.steps))
                parts.append(adv)
                seconds += dt
        except ImportError:
            print(f"{name}: not installed, skipped")
            continue
        adv = torch.cat(parts)
        with torch.inference_mode():
            acc = float((model(adv).argmax(1) == y_all).float().mean())
        rows[name] = (args.images / seconds, acc)
    floor = 0.0
    for i in range(0, args.images, args.batch_size):
        _, dt = timed(
            lambda i=i: bare_loop(
                model, x_all[i : i + args.batch_size], y_all[i : i + args.batch_size], args.steps
            )
        )
        floor += dt
    floor_rate = args.images / floor
    peers = [r for n, r in rows.items() if n != "mendnet"]
    lines = [
        f"## PGD-L∞ speed ({args.images} Fashion-MNIST test images, ε {args.eps}, α ε/4, {args.steps} steps)",
        "",
        f"`benchmarks/attack_speed.py --device {device.type}`, {time.strftime('%Y-%m-%d')}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, batch {args.batch_size}; "
        "one warm-up batch per implementation.",
        "",
        "| implementation | images/s | robust accuracy % | vs bare loop |",
        "|---|---|---|---|",
        *(f"| {n} | {r:.0f} | {100 * a:.1f} | {r / floor_rate:.2f}× |" for n, (r, a) in rows.items()),
        f"| bare loop ({args.steps} forward+backward) | {floor_rate:.0f} | – | 1.00× |",
    ]
    if peers and "mendnet" in rows:
        best_peer = max(r for r, _ in peers)
        lines += ["", f"mendnet / faster peer: {rows['mendnet'][0] / best_peer:.2f}× (target ≥ 1.0)"]
    write_section(f"attack_speed_{device.type}", "\n".join(lines), args.doc)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
