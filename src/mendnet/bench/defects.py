"""AI-Lancet's general-defect experiment (Zhao et al., CCS 2021; docs/methods.md §4) as a bench cell on
a clean model: its settings (a recipe's [defects] table) and the figures it measures.

The test set is split into two seeded halves. The model's misclassified images of half 1 are the
erroneous samples: the first `pairs` of them get mask companions (`mask_companions`) for locating the EI
neurons (`locate_with_progress`), and all of them, jittered, join N_e (`defect_erroneous_set`); N_o is
the defender split of the training set. Three repairs train on the same N_e ∪ N_o with the same loss (CE
+ KD, `MixedBatches`) and settings, differing only in which weights train: AI-Lancet's EI neurons of the
chosen layer (votes ≥ `vote_share` of the corrected pairs), as many seeded random weights of the same
layer, or every weight (plain fine-tuning). Each is scored on half 2: accuracy, and accuracy on the images
of half 2 the original model misclassifies ("fixed"; the original scores 0 there by definition). At each
of `shares` (the dose), k = share · n of the chosen layer's n weights train: the first k of AI-Lancet's
vote order against k seeded random ones. The minimal ablation ratios' quartiles and the EI sets' union
tell how specific each image's EI set is.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import predict
from mendnet.repair.lancet.companion import MaskSettings, mask_companions
from mendnet.repair.lancet.locate import Located
from mendnet.repair.lancet.repair import FinetuneConfig, defect_erroneous_set, locate_with_progress
from mendnet.repair.lancet.tune import MixedBatches, neuron_finetune
from mendnet.train import fit


@dataclass(frozen=True)
class DefectsConfig:
    """The [defects] table. pairs: erroneous images of half 1 given mask companions for locating
    (AI-Lancet's K); mask_steps: at most this many steps of the companions' mask optimisation
    (`MaskSettings`' 300); layers: the candidate layers (empty: every conv and linear layer); tune_epochs and
    copies: the fine-tuning's epochs and jittered copies of each erroneous image (`FinetuneConfig`'s);
    vote_share: the EI neurons trained are those voted by at least this share of the corrected pairs
    (0.05, the former benchmark script's: the paper's union, share 0, covered 8,600 of a layer's 9,216
    weights on a first run, leaving nothing to compare with random weights); shares: the dose, each a
    share in (0, 1] of the chosen layer's weights (empty: no dose rows); half_seed: the seed of the test
    set's halves (None: the cell's seed, as the scripts)."""

    pairs: int = FinetuneConfig.pairs
    mask_steps: int = MaskSettings.steps
    layers: tuple[str, ...] = ()
    tune_epochs: int = FinetuneConfig.tune_epochs
    copies: int = FinetuneConfig.copies
    vote_share: float = 0.05
    shares: tuple[float, ...] = ()
    half_seed: int | None = None

    def __post_init__(self) -> None:
        self.finetune_config()  # AI-Lancet's own checks of pairs, epochs, copies and vote share
        if self.mask_steps < 1:
            raise MendnetError(f"mask_steps must be ≥ 1, got {self.mask_steps}")
        if not all(0 < s <= 1 for s in self.shares):
            raise MendnetError(f"shares must lie in (0, 1], got {list(self.shares)}")
        if len(set(self.shares)) != len(self.shares):
            raise MendnetError(f"shares repeats a share: {list(self.shares)}")

    def finetune_config(self) -> FinetuneConfig:
        """AI-Lancet's defect-mode settings of locating and neuron fine-tuning (its defaults otherwise)."""
        return FinetuneConfig(
            pairs=self.pairs,
            layers=self.layers,
            tune_epochs=self.tune_epochs,
            copies=self.copies,
            vote_share=self.vote_share,
            misclassified=True,
        )


def dose_key(share: float) -> str:
    """The metric prefix of a dose row ("dose_0.05"; its metrics "dose_0.05.k", "dose_0.05.lancet.acc")."""
    return f"dose_{share:g}"


def seeded_halves(test: ImageSet, seed: int) -> tuple[ImageSet, ImageSet]:
    """The test set split by a seeded permutation: its first ⌊n/2⌋ images and the rest, each in index
    order."""
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    half = len(test) // 2
    return test.subset(order[:half].sort().values), test.subset(order[half:].sort().values)


def misclassified(model: nn.Module, data: ImageSet, device: torch.device) -> torch.Tensor:
    """Indices of `data`'s images the model gets wrong."""
    return torch.nonzero(predict(model, data, device=device) != data.labels).flatten()


@dataclass
class DefectSetup:
    """Everything before the repairs: the original model, half 2 and the indices of its misclassified
    images, how many half 1 has, the located EI neurons, N_e and N_o, AI-Lancet's config, and the seconds
    locating took (companions, locating, N_e)."""

    model: nn.Module
    half2: ImageSet
    wrong2: torch.Tensor
    wrong1: int
    located: Located
    erroneous: ImageSet
    originals: ImageSet
    config: FinetuneConfig
    seconds: float


def defect_setup(
    model: nn.Module,
    defender: ImageSet,
    test: ImageSet,
    config: DefectsConfig,
    seed: int,
    device: torch.device,
    progress: bool = False,
) -> DefectSetup:
    """Split the test set, locate on half 1's errors, build N_e (N_o: `defender`)."""
    half1, half2 = seeded_halves(test, seed if config.half_seed is None else config.half_seed)
    wrong1 = misclassified(model, half1, device)
    if len(wrong1) == 0:
        raise MendnetError(f"defects: the model misclassifies none of test half 1's {len(half1)} images")
    start = time.perf_counter()
    x1, y1 = half1.float_images(wrong1).to(device), half1.labels[wrong1].to(device)
    settings = MaskSettings(steps=config.mask_steps)
    pairs = mask_companions(model, x1[: config.pairs], y1[: config.pairs], settings)
    lancet = config.finetune_config()
    located = locate_with_progress(model, pairs, lancet, progress=progress)
    n_e, _ = defect_erroneous_set(model, x1, y1, located, defender, lancet.copies, seed, device)
    return DefectSetup(
        model=model,
        half2=half2,
        wrong2=misclassified(model, half2, device),
        wrong1=len(wrong1),
        located=located,
        erroneous=n_e,
        originals=defender,
        config=lancet,
        seconds=time.perf_counter() - start,
    )


def half2_scores(model: nn.Module, setup: DefectSetup, device: torch.device) -> dict[str, float]:
    """Fractions in [0, 1]: accuracy on half 2 ("acc"), and on half 2's images the original model
    misclassifies ("fixed")."""
    right = predict(model, setup.half2, device=device) == setup.half2.labels
    return {"acc": float(right.float().mean()), "fixed": float(right[setup.wrong2].float().mean())}


def tuned_scores(
    setup: DefectSetup, mask: torch.Tensor, seed: int, device: torch.device, progress: bool = False
) -> dict[str, float]:
    """Half-2 scores and seconds after training only the chosen layer's weights inside `mask` (bool,
    the layer's weight shape; `neuron_finetune`)."""
    start = time.perf_counter()
    tuned, _ = neuron_finetune(
        setup.model,
        setup.located.layer,
        mask,
        setup.erroneous,
        setup.originals,
        setup.config.train_config(),
        setup.config.kd_weight,
        seed=seed,
        device=device,
        progress=progress,
    )
    return {**half2_scores(tuned, setup, device), "seconds": time.perf_counter() - start}


def random_mask(like: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` weights drawn uniformly without replacement (seeded), as a bool mask shaped like `like`."""
    flat = torch.zeros(like.numel(), dtype=torch.bool)
    flat[torch.randperm(like.numel(), generator=torch.Generator().manual_seed(seed))[:count]] = True
    return flat.view(like.shape)


def plain_scores(
    setup: DefectSetup, seed: int, device: torch.device, progress: bool = False
) -> dict[str, float]:
    """Half-2 scores and seconds after training every weight on the same data with the same loss and
    settings; BatchNorm in training mode as in ordinary fine-tuning (with frozen statistics, training
    every weight at lr 0.01 diverged in the former benchmark script)."""
    start = time.perf_counter()
    original = copy.deepcopy(setup.model).eval().requires_grad_(False)
    tuned = copy.deepcopy(setup.model)
    train = setup.config.train_config()
    fit(
        tuned,
        setup.erroneous,
        replace(train, batch_size=max(1, train.batch_size // 2)),  # N_e rows; as many N_o rows join
        objective=MixedBatches(original, setup.originals, setup.config.kd_weight, seed=seed),
        seed=seed,
        device=device,
        progress=progress,
        description="plain fine-tuning",
    )
    return {**half2_scores(tuned.eval(), setup, device), "seconds": time.perf_counter() - start}


def located_figures(located: Located) -> dict[str, Any]:
    """The chosen layer's weights ("layer_weights"), its pairs and how many its ablation corrected, the
    quartiles of the corrected pairs' minimal ablation ratios (fractions of the layer), and the EI sets'
    union ("voted": weights with at least one vote)."""
    result = located.chosen.result
    ratios = result.ratio[result.found].double()
    q1, median, q3 = ratios.quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
    return {
        "layer_weights": located.votes.numel(),
        "pairs": located.chosen.stats.samples,
        "corrected": located.chosen.stats.successes,
        "ratio_q1": q1,
        "ratio_median": median,
        "ratio_q3": q3,
        "voted": len(located.order),
    }


def dose_row(
    setup: DefectSetup, share: float, seed: int, device: torch.device, progress: bool = False
) -> dict[str, Any]:
    """k = round(share · n) weights of the chosen layer (at most the voted ones) trained: the first k of
    AI-Lancet's vote order against k seeded random weights; k and each one's half-2 scores."""
    located = setup.located
    k = min(round(share * located.votes.numel()), len(located.order))
    top = torch.zeros(located.votes.numel(), dtype=torch.bool)
    top[located.order[:k]] = True
    return {
        "k": k,
        "lancet": tuned_scores(setup, top.view(located.votes.shape), seed, device, progress),
        "random": tuned_scores(setup, random_mask(located.votes, k, seed), seed, device, progress),
    }


def defect_figures(
    model: nn.Module,
    defender: ImageSet,
    test: ImageSet,
    config: DefectsConfig,
    seed: int,
    device: torch.device,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The experiment on `model` with N_o = `defender` (module docstring): metrics (nested; fractions in
    [0, 1], counts, seconds: AI-Lancet's include locating) and info (the chosen layer, the halves' seed)."""
    model = model.to(device).eval()
    setup = defect_setup(model, defender, test, config, seed, device, progress)
    mask = setup.config.trained_mask(setup.located)
    trained = int(mask.sum())
    lancet = tuned_scores(setup, mask, seed, device, progress)
    metrics: dict[str, Any] = {
        "original": half2_scores(model, setup, device),
        "lancet": {**lancet, "seconds": lancet["seconds"] + setup.seconds},
        "random": tuned_scores(setup, random_mask(mask, trained, seed), seed, device, progress),
        "plain": plain_scores(setup, seed, device, progress),
        "trained_weights": trained,
        "wrong_half1": setup.wrong1,
        "wrong_half2": len(setup.wrong2),
        **located_figures(setup.located),
    }
    for share in config.shares:
        metrics[dose_key(share)] = dose_row(setup, share, seed, device, progress)
    info = {
        "layer": setup.located.layer,
        "half_seed": seed if config.half_seed is None else config.half_seed,
    }
    return metrics, info
