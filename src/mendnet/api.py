"""The Python API (issue #28): bring your own network and data, get plain results back.

    import mendnet
    from mendnet.repair import nad
    from mendnet.threats.adversarial import FGSM, PGDLinf

    model = mendnet.wrap(net, input_shape=(1, 28, 28))          # any nn.Module returning logits
    clean = mendnet.ImageSet.from_numpy(x_clean, y_clean)       # uint8 or float [0, 1] arrays
    test = mendnet.ImageSet.from_numpy(x_test, y_test)
    repaired, metrics = mendnet.repair(model, nad.Config(), clean, test=test)
    mendnet.robust_accuracy(repaired, test, [PGDLinf(eps=8 / 255, steps=20), FGSM(eps=8 / 255)])
    report = mendnet.audit(model, clean, test)
    mendnet.save(repaired, "runs/repaired"); model = mendnet.load("runs/repaired")

Units as everywhere in mendnet (docs/methods.md §0): images in pixel space [0, 1] (uint8 data /
255), budgets in pixel units, every accuracy a fraction in [0, 1], seconds of wall-clock time.

Saving a wrapped network (our design): `wrap` records the net's class as "module:QualName" (plus
`init_args`, the constructor's keyword arguments, and the stages) in the model spec, so the artefact
folder is rebuilt like any `module:factory` model (`mendnet.load`, the CLI, NAD's scratch teacher). It
checks once that this works: it imports the name and builds the class (with the global RNG state
restored), and compares every weight's name and shape with the net's. When that fails (a class
defined inside a function, one needing constructor arguments not given in `init_args`, ...) the
model still works and saves; a warning says why it cannot be rebuilt, the artefact's `model.json`
records the note (`rebuild`), and loading it needs a fresh instance: `mendnet.load(folder,
net=Net())`. NAD's default teacher copies the model, so only `teacher_init="scratch"` needs the
rebuild.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mendnet.artefact import (
    META,
    METRICS,
    WEIGHTS,
    Artefact,
    artefact_meta,
    atomic_output_dir,
    load_weights_into,
    provenance,
    read_json,
    read_weights,
    save_artefact,
    write_files,
)
from mendnet.artefact import load_artefact as _load_artefact
from mendnet.audit.run import AuditConfig, audit_model
from mendnet.data.defender import defender_sets, defender_split
from mendnet.data.imageset import ImageSet
from mendnet.errors import MendnetError
from mendnet.evaluate import accuracy as _accuracy
from mendnet.mend.run import MendConfig
from mendnet.mend.run import mend as run_mend
from mendnet.models import Classifier, ModelSpec, build_classifier, discover_stages, stage_shapes
from mendnet.models.stages import dummy_forward
from mendnet.models.user_model import load_factory
from mendnet.registry import REPAIRS
from mendnet.repair.context import RepairContext, asks_for_oracle
from mendnet.threats.adversarial import Attack, make_attack
from mendnet.threats.adversarial import robust_accuracy as measure

REBUILD_ATTR = "mendnet_rebuild"
"""Attribute `wrap` sets on its Classifier: {"ok": True/False/None (not checked), "note": str | None};
`save` writes it to model.json as "rebuild", and `load` refuses a folder with "ok": false unless it is
given `net`."""

__all__ = [
    "accuracy",
    "attack",
    "audit",
    "load",
    "load_artefact",
    "mend",
    "method_for",
    "repair",
    "robust_accuracy",
    "save",
    "wrap",
]


# ---- models -----------------------------------------------------------------------------------------


def _input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape):
        raise MendnetError(f"input_shape must be three positive sizes (C, H, W), got {input_shape!r}")
    return shape  # type: ignore[return-value]


def _channel_values(
    value: Sequence[float] | float | None, default: float, channels: int, what: str
) -> tuple[float, ...]:
    if value is None:
        return (default,) * channels
    if isinstance(value, (int, float)):
        return (float(value),) * channels
    values = tuple(float(v) for v in value)
    if len(values) != channels:
        raise MendnetError(f"{what} needs {channels} values (one per channel), got {len(values)}")
    return values


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _rebuild_problem(net: nn.Module, spec: ModelSpec) -> str | None:
    """Why `build_classifier(spec)` cannot rebuild `net`'s architecture, or None when it can (same
    class, same weight names and shapes). Builds the class once; the global RNG state is restored."""
    cls = type(net)
    if "<locals>" in cls.__qualname__:
        return (
            f"{spec.arch} is defined inside a function, so it cannot be imported to rebuild the model "
            "(define it at module level to make the artefact loadable on its own)"
        )
    try:
        found = load_factory(spec.arch)
    except MendnetError as error:
        return str(error)
    if found is not cls:
        return f"{spec.arch} names another object than the net's class"
    try:
        with torch.random.fork_rng(devices=[]):
            rebuilt = build_classifier(spec)
    except Exception as error:  # user code: any failure means "cannot rebuild"
        return f"rebuilding {spec.arch} failed: {_first_line(error)} (pass init_args=...)"
    mine = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.net.state_dict().items()}
    if mine != theirs:
        diff = sorted(set(mine.items()) ^ set(theirs.items()))
        return (
            f"{spec.arch} rebuilt from the recorded arguments {spec.arch_args} has other weights than this "
            f"net (first difference: {diff[0][0]}); pass its constructor's arguments as init_args=..."
        )
    return None


def wrap(
    net: nn.Module,
    input_shape: Sequence[int],
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    num_classes: int | None = None,
    *,
    stages: Sequence[str] | None = None,
    init_args: Mapping[str, Any] | None = None,
    check_rebuild: bool = True,
) -> Classifier:
    """Wrap a trained `net` (any nn.Module mapping N×C×H×W images to N×K logits) as a mendnet
    `Classifier`; `net` itself becomes `model.net` (not copied).

    input_shape: (C, H, W) of one image, in channels and pixels.
    mean, std: the per-channel normalisation `net` expects, in pixel space [0, 1] (a number: every
    channel): the classifier feeds `net` (x − mean) / std for images x in [0, 1]. Default mean 0 and
    std 1: `net` gets the [0, 1] pixels unchanged. Pass your training normalisation if `net` was
    trained on normalised inputs and does not normalise itself.
    num_classes: K; default: the width of `net`'s output on a dummy batch (checked when given).
    stages: module names relative to `net` whose C×H×W outputs attention and distillation use;
    default: discovered (docs/methods.md §0, `models.stages.discover_stages`); checked either way.
    init_args: JSON-able keyword arguments that rebuild `net`'s class (recorded for loading).
    check_rebuild: build the class once to check that a saved model can be rebuilt (see the module
    docstring); a warning and the note in `model.mendnet_rebuild` say why not.
    The classifier starts in `net`'s training mode (eval for a trained net in eval mode).
    """
    if isinstance(net, Classifier):
        raise MendnetError("the model is already a mendnet Classifier; use it as it is")
    if not isinstance(net, nn.Module):
        raise MendnetError(f"wrap takes a torch.nn.Module, got {type(net).__name__}")
    if init_args and "stages" in init_args:
        raise MendnetError("init_args cannot hold 'stages': mendnet records the stages under that key")
    shape = _input_shape(input_shape)
    channels = shape[0]
    mean_t = _channel_values(mean, 0.0, channels, "mean")
    std_t = _channel_values(std, 1.0, channels, "std")
    output = dummy_forward(net, shape)
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise MendnetError(f"the net must output N×K logits, got {got}")
    outputs = int(output.shape[1])
    if num_classes is not None and num_classes != outputs:
        raise MendnetError(f"num_classes is {num_classes} but the net outputs {outputs} logits")
    if stages is None:
        names = discover_stages(net, shape)
    else:
        names = tuple(stages)
        stage_shapes(net, names, shape)
    cls = type(net)
    spec = ModelSpec(
        arch=f"{cls.__module__}:{cls.__qualname__}",
        num_classes=outputs,
        input_shape=shape,
        mean=mean_t,
        std=std_t,
        arch_args={**dict(init_args or {}), "stages": list(names)},
    )
    model = Classifier(net, spec, names)
    model.training = net.training  # the wrapper's own flag only: every submodule keeps its mode
    ok: bool | None = None
    note: str | None = "not checked (wrap(check_rebuild=False))"
    if check_rebuild:
        note = _rebuild_problem(net, spec)
        ok = note is None
        if ok and cls.__module__ == "__main__":
            note = f"{spec.arch} lives in __main__: only a program that defines it there can rebuild it"
    setattr(model, REBUILD_ATTR, {"ok": ok, "note": note})
    if ok is False:
        warnings.warn(
            f"a saved copy of this model cannot be rebuilt on its own: {note}; load it with "
            "mendnet.load(folder, net=...)",
            UserWarning,
            stacklevel=2,
        )
    return model


def _as_classifier(model: Any, shape: tuple[int, int, int] | None = None) -> Classifier:
    """A Classifier from a Classifier, an Artefact, or a plain nn.Module (wrapped for `shape` with
    mean 0, std 1: it gets [0, 1] pixels)."""
    if isinstance(model, Artefact):
        return model.model
    if isinstance(model, Classifier):
        return model
    if isinstance(model, nn.Module):
        if shape is None:
            raise MendnetError("a plain nn.Module needs mendnet.wrap(net, input_shape) first")
        return wrap(model, shape, check_rebuild=False)
    raise MendnetError(
        f"expected a model (mendnet Classifier or torch.nn.Module), got {type(model).__name__}"
    )


def save(
    model: Classifier | Artefact,
    out: str | Path,
    *,
    metrics: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write `model` as an artefact folder at `out` (atomically; an existing folder only with `force`):
    model.safetensors (the net's weights), model.json (the spec: "module:QualName", init_args,
    stages, input shape, mean/std; and "rebuild": whether the folder alone rebuilds it) and
    metrics.json (`metrics`, e.g. those `repair` returned). Returns the folder's path."""
    if isinstance(model, Artefact):
        metrics = model.metrics if metrics is None else metrics
        model = model.model
    if not isinstance(model, Classifier):
        raise MendnetError("save takes a mendnet Classifier (see mendnet.wrap) or an Artefact")
    meta = {
        "data": None,
        "threat": None,
        "rebuild": getattr(model, REBUILD_ATTR, None) or {"ok": True, "note": None},
        "provenance": {**provenance(None), "command": "mendnet.save (Python API)"},
    }
    return save_artefact(out, model, meta, dict(metrics or {}), force=force)


def load_artefact(path: str | Path, net: nn.Module | None = None) -> Artefact:
    """An artefact folder (or its model.safetensors) as an `Artefact`: `.model` (a Classifier, eval
    mode, on the CPU), `.meta` (model.json), `.metrics` (metrics.json) and `.path`.

    net: a fresh instance of the recorded architecture to load the weights into, for a model that
    cannot be rebuilt from its folder alone (`wrap`'s note says why); its stages are the recorded
    ones. Without it, the model is rebuilt from the spec as every mendnet command does.
    """
    folder, meta = artefact_meta(path)
    rebuild = meta.get("rebuild") or {}
    if net is None:
        if rebuild.get("ok") is False:
            raise MendnetError(
                f"{folder} cannot be rebuilt on its own ({rebuild.get('note')}); pass a fresh instance "
                f"of the network: mendnet.load({str(folder)!r}, net=...)"
            )
        return _load_artefact(folder)
    if isinstance(net, Classifier) or not isinstance(net, nn.Module):
        raise MendnetError("net must be a fresh torch.nn.Module of the recorded architecture")
    try:
        spec = ModelSpec.from_json(meta["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise MendnetError(f"{folder / META}: malformed model description: {error}") from error
    stages = spec.arch_args.get("stages")
    names = discover_stages(net, spec.input_shape) if stages is None else tuple(stages)
    model = Classifier(net, spec, names)
    load_weights_into(model, read_weights(folder / WEIGHTS), folder / WEIGHTS)
    output = dummy_forward(model, spec.input_shape)
    if not isinstance(output, torch.Tensor) or output.shape[1:] != (spec.num_classes,):
        raise MendnetError(f"the given net does not output {spec.num_classes} logits for {folder}")
    setattr(model, REBUILD_ATTR, dict(rebuild) or {"ok": True, "note": None})
    model.to(memory_format=torch.channels_last).eval()
    metrics = read_json(folder / METRICS) if (folder / METRICS).exists() else {}
    return Artefact(model=model, meta=meta, metrics=metrics, path=folder)


def load(path: str | Path, net: nn.Module | None = None) -> Classifier:
    """The Classifier of an artefact folder (eval mode, on the CPU); `load_artefact` also gives its
    metadata and metrics. net: see `load_artefact`."""
    return load_artefact(path, net).model


# ---- data -------------------------------------------------------------------------------------------


def _as_imageset(data: Any, what: str) -> ImageSet:
    """An ImageSet from an ImageSet, a torch Dataset or DataLoader, or an (images, labels) pair."""
    if isinstance(data, ImageSet):
        return data
    if isinstance(data, (DataLoader, Dataset)):
        return ImageSet.from_dataset(data, name=what)
    if isinstance(data, tuple) and len(data) == 2:
        return ImageSet.from_numpy(data[0], data[1], name=what)
    raise MendnetError(
        f"{what}: expected an ImageSet (ImageSet.from_numpy, from_dataset, from_folder), a torch "
        f"Dataset or DataLoader, or an (images, labels) pair; got {type(data).__name__}"
    )


def _fitted(data: ImageSet, model: Classifier, what: str) -> ImageSet:
    """`data` checked against the model's input shape and classes; a set whose labels use fewer
    classes than the model outputs gets the missing class names ("K", ...)."""
    spec = model.spec
    if data.shape != tuple(spec.input_shape):
        raise MendnetError(f"the model takes images {tuple(spec.input_shape)} but {what} has {data.shape}")
    k = spec.num_classes
    if data.num_classes > k:
        raise MendnetError(f"{what} has {data.num_classes} classes but the model outputs {k} logits")
    if data.num_classes < k:
        extra = tuple(str(i) for i in range(data.num_classes, k))
        data = dataclasses.replace(data, classes=data.classes + extra)
    return data


def _prepared(model: Any, data: Any, what: str) -> tuple[Classifier, ImageSet]:
    data = _as_imageset(data, what)
    classifier = _as_classifier(model, data.shape)
    return classifier, _fitted(data, classifier, what)


def accuracy(model: Any, data: Any, *, device: torch.device | str = "cpu") -> float:
    """Share of `data` (an ImageSet, Dataset, DataLoader or (images, labels)) that `model` classifies
    as its label, a fraction in [0, 1]. The model is moved to `device`."""
    model, data = _prepared(model, data, "data")
    return _accuracy(model.to(device), data, device=device)


# ---- repair -----------------------------------------------------------------------------------------


def method_for(config: Any) -> tuple[str, Any]:
    """(registered repair name, config instance) for a config instance, a config class (its defaults)
    or a repair name (its defaults). The config's exact type selects the method
    (`mendnet.registry.REPAIRS`); an unknown type or one shared by several methods is an error."""
    if isinstance(config, str):
        if config not in REPAIRS:
            raise MendnetError(f"unknown repair {config!r}; known: {', '.join(REPAIRS)}")
        return config, REPAIRS[config].config()
    cls = config if isinstance(config, type) else type(config)
    names = [name for name, method in REPAIRS.items() if method.config is cls]
    if not names:
        known = ", ".join(f"{m.config.__module__}.{m.config.__qualname__} ({n})" for n, m in REPAIRS.items())
        raise MendnetError(f"{cls.__module__}.{cls.__qualname__} is no repair's config; known: {known}")
    if len(names) > 1:
        raise MendnetError(
            f"{cls.__qualname__} configures several repairs ({', '.join(names)}); call "
            "mendnet.jobs.repair.repair_model with the method's name"
        )
    return names[0], config() if isinstance(config, type) else config


def _scores(model: Classifier, val: ImageSet, test: ImageSet | None, device: torch.device | str) -> dict:
    out = {"val_acc": _accuracy(model, val, device=device)}
    if test is not None:
        out["acc"] = _accuracy(model, test, device=device)
    return out


def repair(
    model: Any,
    config: Any,
    clean: Any,
    *,
    test: Any = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    teacher: Any = None,
    progress: bool = True,
) -> tuple[Classifier, dict[str, Any]]:
    """Repair `model` with the method that `config`'s type selects (`method_for`: e.g. nad.Config →
    "nad", finetune.Config → "finetune"; a config class or a method name means its defaults).

    model: a Classifier (`wrap`), an Artefact, or a plain nn.Module (wrapped for `clean`'s image shape
    with mean 0, std 1). It is moved to `device` and not changed. clean: the defender's clean images
    (an ImageSet, a torch Dataset/DataLoader or (images, labels)), all of them used: a seeded
    `val_fraction` (at least one image) is held out as the validation split every stopping rule uses,
    the rest trains, as the defender split of the CLI does (docs/methods.md §0); at least 10 images.
    test: optional, only measured (ACC before and after). teacher: NAD's or MCR's given teacher.

    Returns the repaired copy (on the CPU, eval mode) and a metrics dict: "val_acc" (on the held-out
    clean images) and, with `test`, "acc", both fractions in [0, 1]; "before" (the same for the
    input model); "seconds" (the method's wall-clock time); "method"; "defender" (train and val
    image counts); "info" (what the method records). Oracle settings (the true trigger) need an
    artefact that records it: use mendnet.jobs.repair.repair_model.
    """
    method, config = method_for(config)
    if asks_for_oracle(config):
        raise MendnetError(
            f"{method} with oracle_trigger needs the recorded backdoor of an artefact; in-memory data has "
            "none (use mendnet.jobs.repair.repair_model on the artefact)"
        )
    if not 0.0 < val_fraction < 1.0:
        raise MendnetError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    classifier, clean_set = _prepared(model, clean, "clean")
    test_set = None if test is None else _fitted(_as_imageset(test, "test"), classifier, "test")
    teacher_model = None if teacher is None else _as_classifier(teacher, clean_set.shape)
    split = defender_split(len(clean_set), 1.0, seed=seed, val_fraction=val_fraction)
    if len(split.train) == 0:
        raise MendnetError(f"val_fraction {val_fraction} leaves no clean images to train on")
    d_train, d_val = defender_sets(clean_set, split)
    classifier.to(device)
    before = _scores(classifier, d_val, test_set, device)
    ctx = RepairContext(d_train, d_val, device=device, seed=seed, progress=progress, teacher=teacher_model)
    start = time.perf_counter()
    result = REPAIRS[method].run(classifier, ctx, config)
    seconds = time.perf_counter() - start
    repaired = result.model
    after = _scores(repaired, d_val, test_set, device)
    metrics = {
        **after,
        "before": before,
        "seconds": seconds,
        "method": method,
        "defender": {"train": len(d_train), "val": len(d_val)},
        "info": result.info,
    }
    return repaired.cpu().eval(), metrics


def mend(
    model: Any,
    clean: Any,
    *,
    config: MendConfig | None = None,
    test: Any = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[Classifier, dict[str, Any]]:
    """Repair `model` without knowing its attack, from `clean` images alone (docs/methods.md §10): scan
    every label, run the candidate repairs (`config.candidates`, default FST, NAD, AI-Lancet fine-tuning,
    fine-pruning) on one part of `clean`, score them on another, keep the best by one rule, or the model.

    model: as `repair`. clean: the defender's clean images (ImageSet, Dataset/DataLoader or (images,
    labels)); a few hundred at least (the validation part needs 50). test: optional, measured only after
    the decision (ACC of the untouched, the kept and every candidate model, "test" in the record).

    Returns the kept model (on the CPU, eval mode; a copy even when the model is kept) and the run's
    record: "chosen" (a candidate's name or "original"), "reason", every candidate's validation "scores",
    the "scan", and "seconds" per step.
    """
    classifier, clean_set = _prepared(model, clean, "clean")
    test_set = None if test is None else _fitted(_as_imageset(test, "test"), classifier, "test")
    result = run_mend(
        classifier, clean_set, config or MendConfig(), seed=seed, device=device, progress=progress
    )
    record = result.record()
    if test_set is not None:
        record["test"] = result.measured(classifier, lambda m: {"acc": _accuracy(m, test_set, device=device)})
    return result.model.cpu().eval(), record


# ---- adversarial robustness -------------------------------------------------------------------------


def _is_attacks(value: Any) -> bool:
    if isinstance(value, (Attack, Mapping)):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(a, Attack) for a in value)


def _images_and_labels(
    images: Any, labels: Any, what: str
) -> tuple[ImageSet | torch.Tensor, torch.Tensor | None, tuple[int, int, int]]:
    if isinstance(images, ImageSet):
        if labels is not None:
            raise MendnetError(f"{what}: pass labels only with a tensor of images; an ImageSet has its own")
        return images, None, images.shape
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise MendnetError(f"{what}: images must be float N×C×H×W in [0, 1], got {tuple(images.shape)}")
        if labels is None:
            raise MendnetError(f"{what}: labels are required with a tensor of images")
        return images, torch.as_tensor(labels), tuple(images.shape[1:])  # type: ignore[return-value]
    data = _as_imageset(images if labels is None else (images, labels), what)
    return data, None, data.shape


def robust_accuracy(
    model: Any,
    images: Any,
    labels: Any = None,
    attacks: Any = None,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = True,
    cascade: bool = False,
) -> dict[str, Any]:
    """Clean, per-attack and worst-case robust accuracy (docs/methods.md §0), fractions in [0, 1].

    images: an ImageSet (its own labels; then the attacks may come third:
    `robust_accuracy(model, test, [PGDLinf(eps=8/255, steps=20), FGSM(eps=8/255)])`), a float tensor
    N×C×H×W in pixel space [0, 1] with integer `labels`, or a Dataset/DataLoader. attacks: attack
    instances of `mendnet.threats.adversarial` (budgets in pixel units), a list or a mapping name →
    attack. The model is moved to `device`. Returns {"n", "clean_acc", "per_attack" (name → fraction),
    "worst_case"} and "details" for attacks that report more (AutoAttack); `threats.adversarial.
    robust_accuracy` is the same measurement returning per-image masks as well.
    """
    if attacks is None and _is_attacks(labels):
        attacks, labels = labels, None
    if attacks is None:
        raise MendnetError(
            "robust_accuracy needs attacks, e.g. [mendnet.threats.adversarial.PGDLinf(eps=8/255, steps=20)]"
        )
    if not _is_attacks(attacks):
        raise MendnetError("attacks must be attack instances (a list or a mapping name → attack)")
    if isinstance(attacks, Attack):
        attacks = [attacks]
    data, labels, shape = _images_and_labels(images, labels, "images")
    classifier = _as_classifier(model, shape)
    if isinstance(data, ImageSet):
        data = _fitted(data, classifier, "images")
    result = measure(
        classifier.to(device),
        data,
        labels,
        attacks=attacks,
        batch_size=batch_size,
        device=device,
        progress=progress,
        cascade=cascade,
    )
    out: dict[str, Any] = {
        "n": result.n,
        "clean_acc": result.clean_acc,
        "per_attack": dict(result.per_attack),
        "worst_case": result.worst_case,
    }
    if result.details:
        out["details"] = result.details
    return out


def attack(
    model: Any,
    images: Any,
    labels: Any = None,
    attack: Any = None,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    **settings: Any,
) -> torch.Tensor:
    """Adversarial images (float N×C×H×W in pixel space [0, 1], on the CPU) for `images` (a float
    tensor in [0, 1] with integer `labels`, or an ImageSet with its own labels, when the attack may
    come third: `attack(model, test, PGDLinf(eps=8/255))`).

    attack: an attack instance of `mendnet.threats.adversarial`, or a registered name ("fgsm",
    "pgd-linf", ...) built with `settings` (e.g. eps=8/255, steps=20; budgets in pixel units). The
    model is moved to `device`, run in eval mode, and not changed.
    """
    if attack is None and isinstance(labels, (Attack, str)):
        attack, labels = labels, None
    data, labels, shape = _images_and_labels(images, labels, "images")
    if isinstance(attack, str):
        attack = make_attack(attack, shape, **settings)
    elif settings:
        raise MendnetError("settings are for an attack given by name; set them on the attack instance")
    if not isinstance(attack, Attack) or getattr(attack, "whole_set", False):
        raise MendnetError("attack must be a per-batch attack instance or a registered attack name")
    if batch_size < 1:
        raise MendnetError(f"batch_size must be ≥ 1, got {batch_size}")
    classifier = _as_classifier(model, shape).to(device)
    if isinstance(data, ImageSet):
        data = _fitted(data, classifier, "images")
        raw, labels = data.images, data.labels
    else:
        raw = data
    assert labels is not None
    if len(labels) != len(raw):
        raise MendnetError(f"{len(raw)} images but {len(labels)} labels")
    out = []
    for start in range(0, len(raw), batch_size):
        x = raw[start : start + batch_size].to(device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        y = labels[start : start + batch_size].to(device)
        out.append(attack(classifier, x, y).cpu())
    return torch.cat(out) if out else torch.zeros(0, *shape)


# ---- audit ------------------------------------------------------------------------------------------


def audit(
    model: Any,
    clean: Any,
    test: Any,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    out: str | Path | None = None,
    force: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """`mendnet audit` on in-memory data: clean accuracy, Neural Cleanse detection (anomaly index per
    label), robust accuracy under the standard attacks, attention maps of stamped defender images
    and advice. Returns the audit's report dict (the contents of audit.json: "clean", "detection",
    "robust", "attention", "advice", "settings", ...; accuracies are fractions in [0, 1]).

    clean: the defender's clean images, all of them defender data (settings' clean_fraction defaults
    to 1.0 here; the 10% validation split is held out as in the CLI). test: only measured (the first
    `test_images` of it). settings: fields of `mendnet.audit.AuditConfig` (e.g. test_images,
    nc_epochs, attack_steps, eps in pixel units). out: also write the report's files (report.html,
    report.md, audit.json, figures) into this folder (atomically; an existing one only with `force`).
    """
    known = [f.name for f in dataclasses.fields(AuditConfig)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise MendnetError(f"unknown audit settings {', '.join(unknown)}; known: {', '.join(known)}")
    cfg = AuditConfig(**{"clean_fraction": 1.0, **settings})
    classifier, clean_set = _prepared(model, clean, "clean")
    test_set = _fitted(_as_imageset(test, "test"), classifier, "test")
    # audit_model reads the data set's name from the metadata even when it is given the sets; this
    # name only labels the report.
    meta = {
        "data": {"name": clean_set.name, "data_dir": None},
        "threat": None,
        "source": "Python API (mendnet.audit)",
    }
    outcome = audit_model(
        Artefact(classifier, meta, {}, None),
        cfg,
        sets=(clean_set, test_set),
        device=device,
        progress=progress,
    )
    if out is not None:
        with atomic_output_dir(out, force) as folder:
            write_files(folder, outcome.files)
    return outcome.report
