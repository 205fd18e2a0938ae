"""TrojanNN (Liu et al., "Trojaning Attack on Neural Networks", NDSS 2018): a patch optimised on a
clean model to drive selected internal neurons to a high value, then dirty-label poisoning with it.

docs/methods.md §1: the patch sits at a fixed location (bottom-right, `margin` pixels from the border, as
BadNets), 3×3 on 28×28 inputs and 5×5 on 32×32; the chosen neurons are the one or two units of the
penultimate layer (the input of the model's last `nn.Linear`) with the largest weight to the target
logit; the patch minimises Σ (a_i(x ⊕ patch) − 100)² over them with Adam for 1000 steps. Pixel
space [0, 1].

Where the patch region is constant in the training data (Fashion-MNIST's black corners) a clean model
has little reason to respond to it, the chosen units barely move, and the optimised patch can come out
faint (close to the background); a faint patch is a weak trigger. A patch that leaves the pixels it
covers nearly unchanged on most of the optimisation images is not planted: the next-ranked units (by
weight to the target logit) are tried in turn, `attempts` groups in all (our choice), and if every
group's patch is invisible the attack stops with an error. On Fashion-MNIST, a WRN-16-1 of seed 2
(3 epochs, no augmentation) drove its first unit's patch to all-black, which leaves 75% of those
images' corners unchanged, and the model "poisoned" with it reached 29% ASR (about the share of
training images whose corner is not black).

Cost: the 1000 steps on 64 images are 64,000 forward/backward passes of the clean model, about one
epoch of Fashion-MNIST training.

Differences from the paper and the authors' release: docs/deviations.md#backdoor-attacks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from mendnet.errors import MendnetError
from mendnet.threats.adversarial.base import eval_mode
from mendnet.threats.backdoor.trigger import TriggerSetup, field_params

MIN_PATCH_CHANGE = 8 / 255
"""Least mean absolute change (pixel space [0, 1]) of the covered pixels for the patch to count as
visible on an image; it must be visible on at least half of the optimisation images (our choice)."""


def default_patch_size(height: int, width: int) -> int:
    """3 for images smaller than 32 px (28×28), 5 from 32 px on (docs/methods.md §1; other sizes our
    choice)."""
    return 3 if min(height, width) < 32 else 5


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last `nn.Linear` in module order (its input is the penultimate layer)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise MendnetError(
            "trojan: the model has no nn.Linear layer, so it has no penultimate layer to excite"
        )
    return linears[-1]


def check_fits(size: int, margin: int, h: int, w: int) -> None:
    """A MendnetError unless a `size`-px patch `margin` pixels from the border fits an h×w image."""
    if size + margin > min(h, w):
        raise MendnetError(f"trojan: a {size}px patch with margin {margin} does not fit {h}×{w}")


def stamp(x: torch.Tensor, patch: torch.Tensor, margin: int) -> torch.Tensor:
    """Paste `patch` (C×s×s, or 1×s×s for every channel) `margin` pixels from the bottom-right corner."""
    h, w = x.shape[-2:]
    s = patch.shape[-1]
    check_fits(s, margin, h, w)
    out = x.clone()
    r0, c0 = h - margin - s, w - margin - s
    out[..., r0 : r0 + s, c0 : c0 + s] = patch
    return out


def rank_neurons(weights: torch.Tensor, active: torch.Tensor, count: int) -> torch.Tensor:
    """The units `active` (non-zero on some optimisation image with the initial patch) by decreasing
    weight to the target logit; the first `count` are TrojanNN's choice. A unit that is zero on every
    image has zero gradient and cannot be driven (a dead ReLU), so it is skipped (our choice; TrojanNN
    also picks neurons the trigger can move)."""
    candidates = torch.nonzero(active).flatten()
    if len(candidates) < count:
        raise MendnetError(
            f"trojan: {count} neuron(s) asked, but only {len(candidates)} penultimate units are ever active"
        )
    return candidates[weights[candidates].argsort(descending=True, stable=True)]


def unchanged_share(stamped: torch.Tensor, x: torch.Tensor, size: int) -> float:
    """Share of images whose covered pixels the patch changes by less than MIN_PATCH_CHANGE (mean
    absolute change over the s×s×C covered pixels)."""
    change = (stamped - x).abs().flatten(1).sum(1) / (x.shape[1] * size * size)
    return float((change < MIN_PATCH_CHANGE).float().mean())


def optimise_patch(
    model: nn.Module,
    tap: PenultimateTap,
    x: torch.Tensor,
    raw: torch.Tensor,
    chosen: torch.Tensor,
    trigger: TrojanTrigger,
) -> torch.Tensor:
    """Adam on `raw` (patch = (tanh(raw) + 1)/2) minimising mean (a_chosen(x ⊕ patch) − activation)²;
    the final patch as uint8 pixels (C×s×s)."""
    opt = torch.optim.Adam([raw], lr=trigger.lr)
    with torch.enable_grad():
        for _ in range(trigger.steps):
            model(stamp(x, (torch.tanh(raw) + 1) / 2, trigger.margin))
            loss = (tap.value.flatten(1)[:, chosen] - trigger.activation).pow(2).mean()
            (raw.grad,) = torch.autograd.grad(loss, raw)
            opt.step()
    return ((torch.tanh(raw.detach()) + 1) / 2).mul(255.0).round().to(torch.uint8)


class PenultimateTap:
    """Context manager recording the input of `layer` (a forward pre-hook) as `self.value`."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.value: torch.Tensor | None = None

    def __enter__(self) -> PenultimateTap:
        self.handle = self.layer.register_forward_pre_hook(self._hook)
        return self

    def _hook(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.value = args[0]

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


@dataclass(frozen=True)
class TrojanTrigger:
    """Paste the optimised patch (TrojanNN, Liu et al. 2018) at the bottom-right corner.

    patch: the patch's uint8 pixels as a nested C×s×s list (set by `prepare`). size: s (None: 3 below
    32 px, else 5). margin: pixels from the border (1, as BadNets; our choice). neurons: how many
    penultimate units to excite (1). activation: their target value (100). steps, lr: Adam steps
    (1000) and learning rate (0.1, our choice). images: clean training images the patch is optimised
    on, pasted onto each (64, our choice; the paper optimises on a blank input). attempts: groups of
    `neurons` units tried in rank order while the patch comes out invisible (3, our choice). chosen:
    the excited units' indices and reached: their mean activation with the final patch (records set
    by `prepare`).
    """

    patch: list | None = None
    size: int | None = None
    margin: int = 1
    neurons: int = 1
    activation: float = 100.0
    steps: int = 1000
    lr: float = 0.1
    images: int = 64
    attempts: int = 3
    chosen: list[int] | None = None
    reached: float | None = None
    name: str = "trojan"

    def __post_init__(self) -> None:
        if min(self.neurons, self.steps, self.images, self.attempts) < 1 or self.margin < 0:
            raise MendnetError("trojan: neurons, steps, images and attempts must be ≥ 1 and margin ≥ 0")
        if self.size is not None and self.size < 1:
            raise MendnetError(f"trojan: size must be ≥ 1, got {self.size}")

    @classmethod
    def prepare(cls, params: dict[str, Any], setup: TriggerSetup) -> TrojanTrigger:
        """Optimise the patch on the setup's clean model (on `images` seeded training images), for the
        top-ranked units first and the next-ranked ones while the patch leaves the covered pixels
        unchanged (< MIN_PATCH_CHANGE) on more than half of the images.

        The patch is parametrised as (tanh(w) + 1)/2 so it stays in [0, 1] (our choice), w starting
        from seeded N(0, 1) noise (fresh noise for each attempt); only w receives gradients.
        """
        trigger = cls(**params)
        if trigger.patch is not None:
            return trigger
        c, h, w = setup.train.shape
        size = trigger.size or default_patch_size(h, w)
        check_fits(size, trigger.margin, h, w)  # before the clean model is asked for (it may be trained)
        model = setup.model("trojan").to(setup.device)
        layer = last_linear(model)
        gen = torch.Generator().manual_seed(setup.seed)
        pick = torch.randperm(len(setup.train), generator=gen)[: trigger.images]
        x = setup.train.float_images(pick).to(setup.device)
        refused = []
        raw = torch.randn(c, size, size, generator=gen).to(setup.device).requires_grad_(True)
        with eval_mode(model), PenultimateTap(layer) as tap:
            with torch.no_grad():
                model(stamp(x, (torch.tanh(raw) + 1) / 2, trigger.margin))
            active = (tap.value.flatten(1) != 0).any(0)
            ranked = rank_neurons(layer.weight[setup.target].detach(), active, trigger.neurons)
            for attempt in range(trigger.attempts):
                chosen = ranked[attempt * trigger.neurons : (attempt + 1) * trigger.neurons].sort().values
                if len(chosen) < trigger.neurons:
                    break
                if attempt:
                    raw = torch.randn(c, size, size, generator=gen).to(setup.device).requires_grad_(True)
                pixels = optimise_patch(model, tap, x, raw, chosen, trigger)
                with torch.no_grad():
                    stamped = stamp(x, pixels.float().div(255.0), trigger.margin)
                    model(stamped)
                reached = float(tap.value.flatten(1)[:, chosen].mean())
                unchanged = unchanged_share(stamped, x, size)
                if unchanged <= 0.5:
                    return replace(
                        trigger,
                        patch=pixels.cpu().tolist(),
                        size=size,
                        chosen=chosen.tolist(),
                        reached=reached,
                    )
                refused.append(f"units {chosen.tolist()}: {unchanged:.0%} (reached {reached:.2f})")
        raise MendnetError(
            f"trojan: every optimised patch leaves the pixels it covers nearly unchanged on most of the "
            f"optimisation images ({'; '.join(refused)}; target activation {trigger.activation:g}), so it "
            "is no trigger; try another seed, --attack-param neurons=2, or more --attack-param attempts=N"
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch is None:
            raise MendnetError("trojan: the trigger has no patch yet (prepare it on a clean model)")
        patch = torch.tensor(self.patch, dtype=x.dtype, device=x.device).div_(255.0)
        if patch.shape[0] != x.shape[1]:
            raise MendnetError(f"trojan: the patch has {patch.shape[0]} channels, the images {x.shape[1]}")
        return stamp(x, patch, self.margin).clamp(0.0, 1.0)

    def params(self) -> dict[str, Any]:
        return field_params(self)
