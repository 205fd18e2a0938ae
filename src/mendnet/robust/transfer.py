"""Transfer set-ups (docs/methods.md §6): a student made from a teacher of another task (new head), the
same-data split into a source half and a target half by samples, and the layers both sides share.

Differences from the paper and the authors' release: docs/deviations.md#robust-kd.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.models import Classifier
from mendnet.models.stages import stage_shapes

SPLITS = ("all", "source", "target")


def split_indices(n: int, part: str, seed: int = 0) -> torch.Tensor:
    """Sorted indices of one half of n samples under a seeded permutation: "source" the first ⌈n/2⌉,
    "target" the rest, "all" every index (the same-data split of Robust-KD's §5)."""
    if part not in SPLITS:
        raise MendnetError(f"unknown split {part!r}; choose {', '.join(SPLITS)}")
    if part == "all":
        return torch.arange(n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    half = (n + 1) // 2
    return (perm[:half] if part == "source" else perm[half:]).sort().values


def split_set(data: ImageSet, part: str, seed: int = 0) -> ImageSet:
    """The `part` half of `data` (see `split_indices`)."""
    return data if part == "all" else data.subset(split_indices(len(data), part, seed))


def last_linear_name(model: nn.Module) -> str:
    """Name of the model's last `nn.Linear` in module order: the classifier head."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise MendnetError(f"{type(model).__name__} has no nn.Linear head to replace or read features from")
    return names[-1]


def penultimate_name(model: nn.Module) -> str:
    """The leaf module run just before the last `nn.Linear` (its output is the pooled, penultimate
    features: `net.flatten` of WRN, `net.head.2` of the small CNN). Module order is taken as run order."""
    head = last_linear_name(model)
    leaves = [name for name, m in model.named_modules() if not any(True for _ in m.children())]
    position = leaves.index(head)
    if position == 0:
        raise MendnetError("the model's head is its first layer; it has no penultimate features")
    return leaves[position - 1]


def student_from_teacher(teacher: Classifier, data: ImageSet) -> Classifier:
    """A copy of `teacher` for the task of `data`: the same network, with a new (PyTorch-initialised)
    head when the number of classes differs. The teacher's normalisation is kept (our choice: its
    features were learned under it). MendnetError if the input shapes differ."""
    spec = teacher.spec
    if tuple(spec.input_shape) != data.shape:
        raise MendnetError(
            f"teacher takes inputs {tuple(spec.input_shape)} but {data.name} has {data.shape}; "
            "transfer needs the same input shape"
        )
    student = copy.deepcopy(teacher)
    if spec.num_classes != data.num_classes:
        name = last_linear_name(student.net)
        old = student.net.get_submodule(name)
        parent, _, leaf = name.rpartition(".")
        new = nn.Linear(old.in_features, data.num_classes, bias=old.bias is not None)
        setattr(student.net.get_submodule(parent) if parent else student.net, leaf, new.to(old.weight.device))
        student.spec = replace(spec, num_classes=data.num_classes)
    return student


def shared_stages(
    student: Classifier, teacher: Classifier, asked: tuple[str, ...]
) -> tuple[tuple[str, ...], dict[str, tuple[int, int, int]]]:
    """The stages distilled between `student` and `teacher` (`asked`, else the student's stages) and
    their (C, H, W); MendnetError naming both models' stages when a stage is missing or differs."""
    stages = asked or student.stages
    mods_s, mods_t = dict(student.named_modules()), dict(teacher.named_modules())
    missing = [s for s in stages if s not in mods_s or s not in mods_t]
    shapes_s = stage_shapes(student, [s for s in stages if s not in missing], student.spec.input_shape)
    shapes_t = stage_shapes(teacher, [s for s in stages if s not in missing], teacher.spec.input_shape)
    differ = [s for s in shapes_s if shapes_s[s] != shapes_t[s]]
    if missing or differ or not stages:
        detail = "; ".join(
            [f"{s} is missing" for s in missing]
            + [
                f"{s} is {'×'.join(map(str, shapes_s[s]))} vs {'×'.join(map(str, shapes_t[s]))}"
                for s in differ
            ]
        )
        raise MendnetError(
            f"teacher ({teacher.spec.arch}) and student ({student.spec.arch}) do not match at the distilled "
            f"stages ({detail or 'none given'}); teacher stages: {', '.join(teacher.stages)}; "
            f"student stages: {', '.join(student.stages)}"
        )
    return tuple(stages), shapes_s
