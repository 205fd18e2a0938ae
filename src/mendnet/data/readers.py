"""Readers for the official image data set formats: IDX (MNIST family), CIFAR pickles, folders.

Every reader returns uint8 N×C×H×W image tensors (pixel values 0..255) and int64 label tensors,
and raises MendnetError (one line, naming the file) for anything missing, corrupt or out of range.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from mendnet.errors import MendnetError

GZIP_MAGIC = b"\x1f\x8b"
IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned-byte data, 3 or 1 dimensions
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")
GREY_MODES = ("1", "L", "LA")
CIFAR_ROW = 3 * 32 * 32  # bytes per CIFAR image: the R plane, then G, then B, each 32×32 row-major
FOLDER_IMAGE_SIZE = 32
"""The size image folders are resized to (n×n pixels) unless another image size is given."""

# The only globals a CIFAR pickle may name: numpy's array reconstruction. `_reconstruct` lives in
# numpy.core.multiarray (numpy 1, as in the official files) or numpy._core.multiarray (numpy 2);
# both names map to the function this numpy actually uses, so no module is ever imported by name.
_RECONSTRUCT = np.empty(0, np.uint8).__reduce__()[0]
ALLOWED_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def read_bytes(path: Path) -> bytes:
    """The whole content of `path`, gunzipped when it starts with the gzip magic bytes 1f 8b."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MendnetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise MendnetError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# ---------------------------------------------------------------------------------------------


def read_idx(path: Path, kind: Literal["images", "labels"]) -> np.ndarray:
    """An IDX file (raw or gzipped) as a uint8 array: N×H×W for images, N for labels.

    The header is checked in full: magic number, number of dimensions and an exact payload length
    of prod(dims) bytes.
    """
    data = read_bytes(path)
    ndim = 3 if kind == "images" else 1
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise MendnetError(f"{path}: too short for an IDX {kind} header ({len(data)} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != IDX_MAGIC[kind]:
        raise MendnetError(
            f"{path}: not an IDX {kind} file (magic 0x{magic:08x}, expected 0x{IDX_MAGIC[kind]:08x})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    if ndim == 3 and 0 in dims[1:]:
        raise MendnetError(f"{path}: IDX header gives an empty image size {dims[1]}×{dims[2]}")
    expected = int(np.prod(dims))
    found = len(data) - header_len
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        shape = "×".join(map(str, dims))
        raise MendnetError(f"{path}: IDX file {what}: header says {shape} = {expected} bytes, found {found}")
    return np.frombuffer(data, np.uint8, count=expected, offset=header_len).reshape(dims)


def read_idx_split(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 N×1×H×W) and labels (int64 N) from a pair of IDX files."""
    images = read_idx(images_path, "images")
    labels = read_idx(labels_path, "labels")
    if len(images) != len(labels):
        raise MendnetError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    check_label_range(labels, num_classes, labels_path)
    return torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64))


def check_label_range(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Raise MendnetError naming `path` unless every label lies in [0, num_classes)."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise MendnetError(
            f"{path}: labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}"
        )


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 ("python version" pickles)
# ---------------------------------------------------------------------------------------------


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves no global except numpy's array reconstruction.

    Plain containers and scalars (dict, list, tuple, bytes, str, int) need no globals; every other
    global (os.system, builtins.eval, copyreg extensions, ...) is refused before it is looked up.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def load_pickle(path: Path) -> dict[Any, Any]:
    """A CIFAR pickle (Python 2, protocol 2, bytes keys) as a dict, via RestrictedUnpickler."""
    try:
        with path.open("rb") as f:
            obj = RestrictedUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise MendnetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
    ) as exc:
        raise MendnetError(f"{path}: not a valid CIFAR pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise MendnetError(f"{path}: CIFAR pickle holds a {type(obj).__name__}, expected a dict")
    return obj


def pickle_field(obj: dict[Any, Any], key: str, path: Path) -> Any:
    """obj[key], accepting the bytes key of the official Python 2 files or a str key."""
    for k in (key.encode(), key):
        if k in obj:
            return obj[k]
    raise MendnetError(f"{path}: CIFAR pickle has no '{key}' entry")


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file: images uint8 N×3×32×32 and labels int64 N (from `label_key`)."""
    obj = load_pickle(path)
    data = pickle_field(obj, "data", path)
    if not isinstance(data, np.ndarray):
        raise MendnetError(f"{path}: 'data' must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        raise MendnetError(
            f"{path}: 'data' must be a uint8 N×{CIFAR_ROW} array, got {data.dtype} {data.shape}"
        )
    labels = np.asarray(pickle_field(obj, label_key, path))
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise MendnetError(
            f"{path}: '{label_key}' must be {len(data)} integers, got {labels.dtype} of shape {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar_names(path: Path, key: str) -> tuple[str, ...]:
    """Class names from a CIFAR meta file (`key`: label_names or fine_label_names)."""
    names = pickle_field(load_pickle(path), key, path)
    if not isinstance(names, list) or not names or not all(isinstance(n, bytes | str) for n in names):
        raise MendnetError(f"{path}: '{key}' must be a non-empty list of names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def read_cifar_split(
    batch_paths: Sequence[Path], meta_path: Path, label_key: str, names_key: str
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Images (uint8 N×3×32×32), labels (int64 N) and class names of the given CIFAR batches."""
    classes = read_cifar_names(meta_path, names_key)
    images, labels = [], []
    for path in batch_paths:
        batch_images, batch_labels = read_cifar_batch(path, label_key)
        check_label_range(batch_labels, len(classes), path)
        images.append(batch_images)
        labels.append(batch_labels)
    return (
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels)),
        classes,
    )


# ---------------------------------------------------------------------------------------------
# Image folders (root/<split>/<class>/*.png, ...)
# ---------------------------------------------------------------------------------------------


def folder_classes(split_dir: Path) -> tuple[str, ...]:
    """Sorted names of the class subfolders of `split_dir`."""
    if not split_dir.is_dir():
        raise MendnetError(f"image folder {split_dir} does not exist")
    classes = tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir()))
    if not classes:
        raise MendnetError(f"image folder {split_dir} has no class subfolders")
    return classes


def folder_files(split_dir: Path, classes: tuple[str, ...]) -> tuple[list[Path], list[int]]:
    """Image files under split_dir/<class>/ (sorted) and their class indices into `classes`.

    Every class subfolder of `split_dir` must be one of `classes` (those of the train split).
    """
    unknown = sorted(set(folder_classes(split_dir)) - set(classes))
    if unknown:
        raise MendnetError(
            f"{split_dir}: class folders {', '.join(unknown)} are not classes of the train split"
        )
    files, labels = [], []
    for index, name in enumerate(classes):
        class_dir = split_dir / name
        found = sorted(p for p in class_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [index] * len(found)
    if not files:
        raise MendnetError(f"image folder {split_dir} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return files, labels


def open_image(path: Path) -> Image.Image:
    """An image opened lazily (header only) with Pillow."""
    try:
        return Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MendnetError(f"cannot read image {path}: {exc}") from exc


def folder_mode(files: Sequence[Path]) -> str:
    """'L' when every image is greyscale, else 'RGB' (reads image headers only)."""
    for path in files:
        with open_image(path) as img:
            if img.mode not in GREY_MODES:
                return "RGB"
    return "L"


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) of the image at `path`, in pixels."""
    with open_image(path) as img:
        return img.size


def load_image(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """The image at `path` in `mode` ('L' or 'RGB'), resized to `size` (width, height) if needed,
    as a uint8 C×H×W array."""
    try:
        with open_image(path) as img:
            img = img.convert(mode)
            if img.size != size:
                img = img.resize(size, Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MendnetError(f"cannot read image {path}: {exc}") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def folder_image_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """`image_size` as Pillow's (width, height): an int n is n×n, a pair is (height, width);
    None stays None. MendnetError unless every size is a whole number ≥ 1."""
    if image_size is None:
        return None
    pair = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise MendnetError(
            f"image size must be a whole number of pixels ≥ 1 or a (height, width) pair, got {image_size!r}"
        )
    height, width = pair
    return (width, height)


def read_image_folder(
    root: Path, split: str, image_size: int | tuple[int, int] | None = FOLDER_IMAGE_SIZE
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Images, labels and classes of root/<split>/<class>/*.{png,jpg,jpeg,ppm,bmp}.

    Classes are the sorted subfolder names of root/train, for both splits. Images become RGB, or
    single-channel L when every train image is greyscale. They are resized (bilinear) to
    image_size×image_size pixels (a pair: (height, width)), or with image_size=None to the size of
    the first train image.
    """
    size = folder_image_size(image_size)
    train_dir = root / "train"
    classes = folder_classes(train_dir)
    train_files, train_labels = folder_files(train_dir, classes)
    files, labels = (train_files, train_labels) if split == "train" else folder_files(root / split, classes)
    mode = folder_mode(train_files)
    size = size if size is not None else image_size_of(train_files[0])
    images = np.stack([load_image(path, mode, size) for path in files])
    return torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64), classes


def channel_mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 N×C×H×W images, in pixel
    space [0, 1]; computed exactly from per-channel histograms, without a float copy."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).double()
        p = counts / counts.sum()
        mean = float((p * values).sum())
        means.append(mean)
        stds.append(max(float((p * values.square()).sum()) - mean**2, 0.0) ** 0.5)
    return tuple(means), tuple(stds)
