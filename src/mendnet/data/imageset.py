"""In-memory image sets: uint8 N×C×H×W images, int64 labels, class names and normalisation.

`ImageSet.from_numpy`, `ImageSet.from_dataset` and `ImageSet.from_folder` bring a user's own data in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mendnet.data.readers import FOLDER_IMAGE_SIZE, channel_mean_std
from mendnet.errors import MendnetError

LAYOUTS = ("nchw", "nhwc")
"""Axis orders `ImageSet.from_numpy` accepts for 4-D arrays."""


@dataclass(frozen=True)
class ImageSet:
    """A labelled image set held in memory.

    images: uint8 tensor N×C×H×W (pixel values 0..255; divide by 255 for pixel space [0, 1]).
    labels: int64 tensor N, each in [0, len(classes)).
    mean, std: per-channel normalisation in pixel space [0, 1]; applied inside the model wrapper.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise MendnetError(
                f"{self.name}: images must be a uint8 N×C×H×W tensor, got {self.images.dtype} "
                f"with shape {tuple(self.images.shape)}"
            )
        if self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise MendnetError(
                f"{self.name}: {len(self.images)} images but labels of shape {tuple(self.labels.shape)}"
            )
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise MendnetError(
                f"{self.name}: labels must lie in [0, {len(self.classes)}), "
                f"found {int(self.labels.min())}..{int(self.labels.max())}"
            )
        c = self.images.shape[1]
        if len(self.mean) != c or len(self.std) != c:
            raise MendnetError(f"{self.name}: mean/std need {c} channel values")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def subset(self, indices: torch.Tensor | list[int]) -> ImageSet:
        """The images at `indices` (a copy-free view where torch allows it)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return replace(self, images=self.images[idx], labels=self.labels[idx])

    def with_data(self, images: torch.Tensor, labels: torch.Tensor) -> ImageSet:
        """The same set description (classes, mean, std, name) over other images and labels."""
        return replace(self, images=images, labels=labels)

    def float_images(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Images (all, or those at `indices`) as float32 in pixel space [0, 1]."""
        imgs = self.images if indices is None else self.images[indices]
        return imgs.float().div_(255.0)

    # ---- bringing your own data ------------------------------------------------------------------

    @classmethod
    def from_numpy(
        cls,
        x: Any,
        y: Any,
        classes: Sequence[str] | int | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        name: str = "numpy",
        *,
        layout: str | None = None,
    ) -> ImageSet:
        """An ImageSet from an array of images `x` and integer labels `y` (numpy arrays, torch
        tensors or anything `numpy.asarray` takes).

        x: uint8 (0..255), another integer type with values in 0..255, or float in pixel space
        [0, 1] (rounded to the nearest 1/255 step, since an ImageSet stores uint8; floats outside
        [0, 1] or NaN are refused: divide 0..255 values by 255 first). Shapes:

        - N×H×W: greyscale, one channel;
        - N×H×W×C (channels last) when the last axis is 1 or 3 and H and W are both larger than 4;
        - N×C×H×W (channels first) otherwise, when axis 1 is 1 or 3.

        Any other 4-D shape is refused as ambiguous; `layout` ("nchw" or "nhwc") then states the axis
        order and allows any channel count. y: N integer labels ≥ 0 (floats and booleans are refused).
        classes: class names, or their count; default "0".."K−1" with K = max label + 1.
        mean, std: per-channel normalisation in pixel space [0, 1] (a number is used for every channel);
        default: the images' own per-channel mean and population standard deviation (1.0 for a
        constant channel). They matter only for models mendnet builds from this set; a wrapped model
        keeps the normalisation given to `mendnet.wrap`.
        """
        array = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
        images = _images_nchw(array, layout, name)
        labels = _labels(y, len(images), name)
        if classes is None:
            count = int(labels.max()) + 1 if len(labels) else 1
            names: tuple[str, ...] = tuple(str(i) for i in range(count))
        elif isinstance(classes, int) and not isinstance(classes, bool):
            if classes < 1:
                raise MendnetError(f"{name}: the class count must be ≥ 1, got {classes}")
            names = tuple(str(i) for i in range(classes))
        else:
            names = tuple(str(c) for c in classes)
        channels = images.shape[1]
        stat_mean, stat_std = (None, None) if mean is not None and std is not None else _channel_stats(images)
        mean_t = _per_channel(mean, stat_mean, channels, "mean", name)
        std_t = _per_channel(std, stat_std, channels, "std", name)
        if min(std_t) <= 0:
            raise MendnetError(f"{name}: std must be positive, got {std_t}")
        return cls(images, labels, names, mean_t, std_t, name=name)

    @classmethod
    def from_dataset(
        cls,
        dataset: Iterable[Any],
        classes: Sequence[str] | int | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        name: str | None = None,
        *,
        layout: str | None = None,
    ) -> ImageSet:
        """An ImageSet from a torch `Dataset` of (image, label, ...) items, or from a `DataLoader` of
        (images, labels, ...) batches (iterated once, in its own order, shuffled or not).

        Images may be tensors (e.g. torchvision's ToTensor: float C×H×W in [0, 1]), numpy arrays or
        PIL images (greyscale modes become one channel, every other mode RGB; PIL images are
        channels last). All items are stacked and read as `from_numpy` reads an array, with the
        same shape rule, `layout`, `classes`, `mean` and `std`. Labels may be ints, 0-d tensors or
        numpy integers. A map-style dataset is read by index over range(len(dataset)); one without
        a length (an IterableDataset) is iterated. name: default the dataset's class name.
        """
        label = name or type(dataset).__name__
        images: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        pil = False
        if isinstance(dataset, DataLoader):
            for batch in dataset:
                x, y = _pair(batch, "batch")
                images.append(_to_array(x, batched=True))
                labels.append(np.asarray(_label_array(y)).reshape(-1))
        else:
            items: Iterable[Any]
            if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
                items = (dataset[i] for i in range(len(dataset)))  # type: ignore[arg-type]
            else:
                items = dataset
            for item in items:
                x, y = _pair(item, "item")
                pil = pil or _is_pil(x)
                images.append(_to_array(x, batched=False)[None])
                labels.append(np.asarray(_label_array(y)).reshape(-1))
        if not images:
            raise MendnetError(f"{label}: the dataset yielded no images")
        kinds = {a.dtype.kind for a in images}
        if len(kinds) > 1:
            raise MendnetError(f"{label}: images mix integer and float types; give all in one")
        shapes = {a.shape[1:] for a in images}
        if len(shapes) > 1:
            found = ", ".join(map(str, sorted(shapes)))
            raise MendnetError(f"{label}: images differ in shape ({found}); resize them to one size first")
        if layout is None and pil and images[0].ndim == 4:
            layout = "nhwc"
        return cls.from_numpy(
            np.concatenate(images),
            np.concatenate(labels),
            classes,
            mean,
            std,
            label,
            layout=layout,
        )

    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        split: str = "train",
        image_size: int | tuple[int, int] | None = FOLDER_IMAGE_SIZE,
    ) -> ImageSet:
        """The `split` ("train" or "test") of an image folder tree root/{train,test}/<class>/*.png
        (also jpg, jpeg, ppm, bmp): classes are root/train's sorted subfolders; images become RGB, or
        one channel when every train image is greyscale; mean/std are the train split's.

        image_size: resize every image (bilinear) to image_size×image_size pixels, or to (height,
        width) for a pair; None keeps the size of the first train image (then all must resize to it).
        """
        from mendnet.data.catalog import load_dataset  # here: catalog imports this module

        return load_dataset("imagefolder", split, root, image_size=image_size)


def _images_nchw(x: np.ndarray, layout: str | None, name: str) -> torch.Tensor:
    """uint8 N×C×H×W images from an N×H×W or 4-D array (see `ImageSet.from_numpy` for the rule)."""
    if layout is not None and layout not in LAYOUTS:
        raise MendnetError(f"{name}: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if x.ndim == 3:
        if layout is not None:
            raise MendnetError(f"{name}: layout applies to 4-D images; N×H×W images have no channel axis")
        x = x[:, None]
    elif x.ndim == 4:
        if layout is None:
            _, a, b, c = x.shape
            if c in (1, 3) and a > 4 and b > 4:
                layout = "nhwc"
            elif a in (1, 3):
                layout = "nchw"
            else:
                raise MendnetError(
                    f"{name}: cannot tell the channel axis of images of shape {x.shape}: give N×H×W×C with C "
                    "1 or 3 (H, W > 4) or N×C×H×W with C 1 or 3, or pass layout='nchw' or 'nhwc'"
                )
        if layout == "nhwc":
            x = x.transpose(0, 3, 1, 2)
    else:
        raise MendnetError(f"{name}: images must be N×H×W, N×H×W×C or N×C×H×W, got shape {x.shape}")
    if len(x) == 0 or min(x.shape[1:]) < 1:
        raise MendnetError(f"{name}: no images (shape {x.shape})")
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise MendnetError(f"{name}: integer images must lie in 0..255, found {lo}..{hi}")
        return torch.from_numpy(np.ascontiguousarray(x.astype(np.uint8)))
    if x.dtype.kind == "f":
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        lo, hi = (float(v) for v in torch.aminmax(t))
        if not (lo >= 0.0 and hi <= 1.0):  # also false for NaN
            raise MendnetError(
                f"{name}: float images must lie in pixel space [0, 1], found values in [{lo:.4g}, {hi:.4g}] "
                "(divide 0..255 values by 255)"
            )
        return to_uint8(t)
    raise MendnetError(f"{name}: images must be uint8, integers in 0..255 or floats in [0, 1], got {x.dtype}")


def _labels(y: Any, n: int, name: str) -> torch.Tensor:
    arr = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if arr.dtype.kind not in "iu":
        raise MendnetError(f"{name}: labels must be integers, got {arr.dtype}")
    if arr.shape != (n,):
        raise MendnetError(f"{name}: {n} images need labels of shape ({n},), got {arr.shape}")
    if n and int(arr.min()) < 0:
        raise MendnetError(f"{name}: labels must be ≥ 0, found {int(arr.min())}")
    return torch.from_numpy(arr.astype(np.int64))


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std in pixel space [0, 1]; a constant channel gets std 1."""
    mean, std = channel_mean_std(images)
    return mean, tuple(s if s > 0 else 1.0 for s in std)


def _per_channel(
    given: Sequence[float] | float | None,
    default: tuple[float, ...] | None,
    channels: int,
    what: str,
    name: str,
) -> tuple[float, ...]:
    if given is None:
        assert default is not None
        return default
    values = (float(given),) * channels if isinstance(given, (int, float)) else tuple(float(v) for v in given)
    if len(values) != channels:
        raise MendnetError(f"{name}: {what} needs {channels} values (one per channel), got {len(values)}")
    return values


def _pair(item: Any, what: str) -> tuple[Any, Any]:
    """(image, label) from a dataset item or a loader batch: the first two entries of a tuple/list."""
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise MendnetError(f"each {what} must be (image, label, ...), got {type(item).__name__}")


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.")


def _to_array(x: Any, *, batched: bool) -> np.ndarray:
    """A numpy array from a tensor, array or (unbatched) PIL image."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if not batched and _is_pil(x):
        if x.mode in ("I", "I;16", "F"):
            raise MendnetError(f"PIL images of mode {x.mode} are not 8-bit; convert them to 'L' or 'RGB'")
        mode = "L" if x.mode in ("1", "L", "LA") else "RGB"
        return np.asarray(x.convert(mode), dtype=np.uint8)
    arr = np.asarray(x)
    if arr.dtype == object:
        raise MendnetError(f"images must be tensors, numpy arrays or PIL images, got {type(x).__name__}")
    return arr


def _label_array(y: Any) -> Any:
    return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Quantise a float batch in [0, 1] to uint8 by rounding, clipping first (no wrap-around)."""
    return x.clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
