"""Named data sets: where their files are searched for, how they are read, class names, mean/std.

Files are searched, in order, in data_dir, in $MENDNET_DATA (each either the folder holding the
files or its <name> subfolder) and in /usr/share/datasets/<name> (Debian's layout). The CLI refuses
a --data-dir that does not exist (`check_data_dir`) rather than fall back silently to another copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from mendnet.data.download import download as download_dataset
from mendnet.data.imageset import ImageSet
from mendnet.data.readers import (
    FOLDER_IMAGE_SIZE,
    channel_mean_std,
    read_cifar_split,
    read_idx_split,
    read_image_folder,
)
from mendnet.errors import MendnetError

ENV_VAR = "MENDNET_DATA"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
SPLITS = ("train", "test")
DOWNLOAD_COMMANDS = "train, poison, eval, robustify, audit or demo"  # the commands with --download

SplitData = tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]


@dataclass(frozen=True)
class DatasetInfo:
    """How to find and read one named data set.

    read: reads a split from the paths of its split_files (None: an image folder tree in data_dir).
    split_files: file names each split needs, in the order `read` takes them.
    subfolder: folder the official files unpack to inside the data set folder ("" if none).
    suffixes: accepted endings of those names ("" and ".gz" for IDX files).
    classes: class names; empty when read from the files.
    mean, std: per-channel normalisation in pixel space [0, 1]; empty when computed from the
    train split.
    how_to_get: what the message for missing files suggests.
    """

    name: str
    summary: str
    read: Callable[[DatasetInfo, list[Path]], SplitData] | None
    split_files: Mapping[str, tuple[str, ...]]
    subfolder: str = ""
    suffixes: tuple[str, ...] = ("",)
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    how_to_get: str = (
        f"rerun with --download ({DOWNLOAD_COMMANDS}; saves into --data-dir or $MENDNET_DATA), or put "
        "the official files in --data-dir"
    )


def _read_idx(info: DatasetInfo, paths: list[Path]) -> SplitData:
    """[images, labels] IDX files → uint8 N×1×28×28 images, int64 labels, the fixed class names."""
    images, labels = read_idx_split(paths[0], paths[1], len(info.classes))
    return images, labels, info.classes


def _read_cifar(info: DatasetInfo, paths: list[Path], label_key: str, names_key: str) -> SplitData:
    """[batch files..., meta file] → uint8 N×3×32×32 images, int64 labels, class names."""
    return read_cifar_split(paths[:-1], paths[-1], label_key, names_key)


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        summary="Fashion-MNIST: 70000 greyscale 28×28 clothing images, 10 classes",
        read=_read_idx,
        split_files=IDX_FILES,
        suffixes=("", ".gz"),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mean=(0.2860,),
        std=(0.3530,),
        how_to_get=(
            "install it with `apt-get install dataset-fashion-mnist`, or rerun with --download "
            f"({DOWNLOAD_COMMANDS}; saves into --data-dir or $MENDNET_DATA)"
        ),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        summary="MNIST: 70000 greyscale 28×28 handwritten digits, 10 classes",
        read=_read_idx,
        split_files=IDX_FILES,
        suffixes=("", ".gz"),
        classes=tuple(str(d) for d in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        summary="CIFAR-10: 60000 colour 32×32 images, 10 classes",
        read=partial(_read_cifar, label_key="labels", names_key="label_names"),
        split_files={
            "train": (*(f"data_batch_{i}" for i in range(1, 6)), "batches.meta"),
            "test": ("test_batch", "batches.meta"),
        },
        subfolder="cifar-10-batches-py",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        summary="CIFAR-100: 60000 colour 32×32 images, 100 fine classes",
        read=partial(_read_cifar, label_key="fine_labels", names_key="fine_label_names"),
        split_files={"train": ("train", "meta"), "test": ("test", "meta")},
        subfolder="cifar-100-python",
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
    ),
    "imagefolder": DatasetInfo(
        name="imagefolder",
        summary="your own images: --data-dir/{train,test}/<class>/*.{png,jpg,jpeg,ppm,bmp}",
        read=None,
        split_files={},
    ),
}


def dataset_names() -> list[str]:
    """Names accepted by load_dataset."""
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The DatasetInfo called `name`; MendnetError listing the known names otherwise."""
    if name not in DATASETS:
        raise MendnetError(f"unknown data set '{name}'; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def check_data_dir(data_dir: str | Path | None) -> None:
    """A data folder the user names must exist (MendnetError otherwise; `--download` creates it)."""
    if data_dir is not None and not Path(data_dir).is_dir():
        what = "is not a folder" if Path(data_dir).exists() else "does not exist"
        raise MendnetError(f"data folder {data_dir} {what}")


def search_folders(info: DatasetInfo, data_dir: str | Path | None) -> list[Path]:
    """Folders searched for the files of `info`, in order, without repeats."""
    roots: list[Path] = []
    for base in (data_dir, os.environ.get(ENV_VAR)):
        if base:
            roots += [Path(base), Path(base) / info.name]
    roots.append(SYSTEM_DATA_DIR / info.name)
    folders: list[Path] = []
    for root in roots:
        for folder in (root, root / info.subfolder) if info.subfolder else (root,):
            if folder not in folders:
                folders.append(folder)
    return folders


def split_paths(info: DatasetInfo, folder: Path, split: str) -> list[Path] | None:
    """Paths of the files `split` needs in `folder` (any accepted suffix), or None if one lacks."""
    paths = []
    for stem in info.split_files[split]:
        found = [folder / (stem + s) for s in info.suffixes if (folder / (stem + s)).is_file()]
        if not found:
            return None
        paths.append(found[0])
    return paths


def find_split(info: DatasetInfo, split: str, data_dir: str | Path | None, download: bool) -> list[Path]:
    """Paths of the files of `split`: found in the search folders, or downloaded if allowed."""
    folders = search_folders(info, data_dir)
    for folder in folders:
        paths = split_paths(info, folder, split)
        if paths is not None:
            return paths
    if download:
        root = data_dir or os.environ.get(ENV_VAR)
        if not root:
            raise MendnetError(
                f"{info.name}: --download needs --data-dir or ${ENV_VAR} to say where to save it"
            )
        download_dataset(info.name, root)
        return find_split(info, split, data_dir, download=False)
    needed = info.split_files[split][0] + ("[.gz]" if ".gz" in info.suffixes else "")
    raise MendnetError(
        f"{info.name}: {split} files ({needed}, ...) not found; searched "
        f"{', '.join(map(str, folders))}; {info.how_to_get}"
    )


def load_image_folder(
    info: DatasetInfo, split: str, data_dir: str | Path | None, image_size: int | tuple[int, int] | None
) -> ImageSet:
    """A split of data_dir/{train,test}/<class>/ images, normalised with train-split mean/std."""
    if data_dir is None:
        raise MendnetError(
            f"{info.name} needs --data-dir: a folder holding train/<class>/ and test/<class>/ images"
        )
    root = Path(data_dir)
    images, labels, classes = read_image_folder(root, split, image_size)
    train_images = images if split == "train" else read_image_folder(root, "train", image_size)[0]
    mean, std = channel_mean_std(train_images)
    return ImageSet(images, labels, classes, mean, std, name=info.name)


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = False,
    *,
    image_size: int | tuple[int, int] | None = FOLDER_IMAGE_SIZE,
) -> ImageSet:
    """The `split` ("train" or "test") of data set `name` as an ImageSet of uint8 images.

    download: fetch the official files (MD5-checked) into data_dir or $MENDNET_DATA when absent.
    image_size: imagefolder only; resize every image (bilinear) to image_size×image_size pixels
    (default 32), to (height, width) for a pair, or with None to the size of the first train image.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise MendnetError(f"{name}: split must be one of {', '.join(SPLITS)}, got '{split}'")
    if info.read is None:
        if download:
            raise MendnetError(f"{name}: cannot be downloaded; it reads your own --data-dir")
        return load_image_folder(info, split, data_dir, image_size)
    images, labels, classes = info.read(info, find_split(info, split, data_dir, download))
    return ImageSet(images, labels, classes, info.mean, info.std, name=info.name)
