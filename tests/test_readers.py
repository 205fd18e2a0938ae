"""Format readers, data set lookup and checked downloads, on small files in the official layouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
import torch
from PIL import Image

from mendnet.data import catalog, download
from mendnet.data.catalog import DATASETS, dataset_names, load_dataset
from mendnet.data.download import Remote, Source, safe_extract
from mendnet.data.readers import channel_mean_std, read_idx
from mendnet.errors import MendnetError

FMNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
RNG = np.random.default_rng(0)


def no_network(url: str, out: BinaryIO) -> None:
    raise AssertionError(f"test tried to download {url}")


@pytest.fixture(autouse=True)
def isolated_search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No $MENDNET_DATA, an empty system folder (only the files a test writes are found) and no
    network: download.fetch fails unless a test replaces it."""
    monkeypatch.delenv(catalog.ENV_VAR, raising=False)
    monkeypatch.setattr(catalog, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setattr(download, "fetch", no_network)


# ---------------------------------------------------------------------------------------------
# writers for the official layouts
# ---------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    """An IDX file: big-endian magic, one uint32 per dimension, then the uint8 payload."""
    return struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def write_idx_set(
    folder: Path, n: int = 6, *, compress: bool = True, suffix: str = ".gz", label_max: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test IDX files for `n` random 28×28 images each; returns the train arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, label_max + 1, n, dtype=np.uint8)
    labels[0] = label_max
    for prefix in ("train", "t10k"):
        for name, arr, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
            data = idx_bytes(arr, magic)
            (folder / f"{prefix}-{name}-ubyte{suffix}").write_bytes(gzip.compress(data) if compress else data)
    return images, labels


class Py2Pickler(pickle._Pickler):
    """Pickles like Python 2's cPickle: every bytes and str value as a (byte) STRING opcode."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj: bytes | str) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def py2_pickle(obj: Any, numpy1_names: bool = True) -> bytes:
    """Protocol-2 pickle as the official CIFAR files are (numpy 1 global names by default)."""
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    data = buf.getvalue()
    if numpy1_names:
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    return data


def cifar_batch(n: int, label_key: bytes, num_classes: int) -> dict[bytes, Any]:
    return {
        b"batch_label": b"training batch 1 of 5",
        label_key: [int(v) for v in RNG.integers(0, num_classes, n)],
        b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar10(root: Path, n: int = 4, numpy1_names: bool = True) -> dict[str, dict]:
    """An official-layout cifar-10-batches-py folder under `root`; returns the batch dicts."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {
        name: cifar_batch(n, b"labels", 10)
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    }
    meta = {
        b"label_names": [s.encode() for s in CIFAR10_NAMES],
        b"num_cases_per_batch": n,
        b"num_vis": 3072,
    }
    for name, obj in [*batches.items(), ("batches.meta", meta)]:
        (folder / name).write_bytes(py2_pickle(obj, numpy1_names))
    return batches


def write_cifar100(root: Path, n: int = 5) -> dict[str, dict]:
    """An official-layout cifar-100-python folder under `root`; returns the train/test dicts."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    splits = {}
    for name in ("train", "test"):
        obj = cifar_batch(n, b"fine_labels", 100)
        obj[b"coarse_labels"] = [v // 5 for v in obj[b"fine_labels"]]
        splits[name] = obj
        (folder / name).write_bytes(py2_pickle(obj))
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(py2_pickle(meta))
    return splits


def write_png(path: Path, size: tuple[int, int], mode: str = "RGB") -> np.ndarray:
    """A random PNG of `size` (width, height); returns its pixels as H×W[×C] uint8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = (3,) if mode == "RGB" else ()
    pixels = RNG.integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return pixels


# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compress", "suffix"), [(True, ".gz"), (False, ""), (True, "")], ids=["gz", "raw", "gz-noext"]
)
def test_idx_reads_back(tmp_path: Path, compress: bool, suffix: str) -> None:
    images, labels = write_idx_set(tmp_path, compress=compress, suffix=suffix)
    for split in ("train", "test"):
        ds = load_dataset("mnist", split, data_dir=tmp_path)
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (6, 1, 28, 28)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == labels.tolist()
        assert ds.classes == tuple("0123456789") and ds.mean == (0.1307,) and ds.std == (0.3081,)


def test_search_order_name_subfolder_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_images, _ = write_idx_set(tmp_path / "env" / "fashion-mnist", n=3)
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path / "env"))
    ds = load_dataset("fashion-mnist", "test")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(env_images))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    dir_images, _ = write_idx_set(tmp_path / "given", n=2)
    assert torch.equal(
        load_dataset("fashion-mnist", "test", tmp_path / "given").images[:, 0],
        torch.from_numpy(dir_images),
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: struct.pack(">I", 0x801) + d[4:], "not an IDX images file"),
        (lambda d: d[:-5], "truncated"),
        (lambda d: d + b"\0", "trailing bytes"),
        (lambda d: d[:10], "too short for an IDX images header"),
        (lambda d: gzip.compress(d)[:-30], "corrupt or truncated gzip"),
    ],
    ids=["bad-magic", "truncated", "trailing", "short-header", "bad-gzip"],
)
def test_corrupt_idx_raises_naming_file(tmp_path: Path, damage: Any, message: str) -> None:
    write_idx_set(tmp_path, compress=False, suffix="")
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(MendnetError, match=message) as err:
        load_dataset("mnist", "train", data_dir=tmp_path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_idx_labels_out_of_range(tmp_path: Path) -> None:
    write_idx_set(tmp_path, label_max=10)
    with pytest.raises(MendnetError, match=r"train-labels-idx1-ubyte\.gz: labels must lie in"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(idx_bytes(np.zeros(2, np.uint8), 0x801))
    with pytest.raises(MendnetError, match=r"6 images but .* 2 labels"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_read_idx_rejects_zero_size_images(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(struct.pack(">IIII", 0x803, 2, 0, 28))
    with pytest.raises(MendnetError, match="empty image size"):
        read_idx(path, "images")


# ---------------------------------------------------------------------------------------------
# CIFAR
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("numpy1_names", [True, False], ids=["numpy.core", "numpy._core"])
def test_cifar10_reads_back(tmp_path: Path, numpy1_names: bool) -> None:
    batches = write_cifar10(tmp_path, numpy1_names=numpy1_names)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    assert train.images.dtype == torch.uint8 and train.images.shape == (20, 3, 32, 32)
    first = batches["data_batch_1"][b"data"][0]
    for channel in range(3):  # rows are the R plane, then G, then B, each 32×32 row-major
        expected = first[1024 * channel : 1024 * (channel + 1)].reshape(32, 32)
        assert np.array_equal(train.images[0, channel].numpy(), expected)
    expected_labels = [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"]]
    assert train.labels.tolist() == expected_labels
    assert train.classes == tuple(CIFAR10_NAMES) and train.mean == (0.4914, 0.4822, 0.4465)
    test = load_dataset("cifar10", "test", data_dir=tmp_path / "cifar-10-batches-py")
    assert torch.equal(test.images.reshape(4, -1), torch.from_numpy(batches["test_batch"][b"data"]))


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    splits = write_cifar100(tmp_path / "cifar100")
    ds = load_dataset("cifar100", "test", data_dir=tmp_path)
    assert ds.images.shape == (5, 3, 32, 32) and ds.num_classes == 100
    assert ds.labels.tolist() == splits["test"][b"fine_labels"]
    assert ds.classes[7] == "fine7" and ds.std == (0.2673, 0.2564, 0.2762)
    assert torch.equal(ds.images.reshape(5, -1), torch.from_numpy(splits["test"][b"data"]))


class RunsCommand:
    """Unpickling this calls os.system(command): what the restricted unpickler must refuse."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def test_cifar_pickle_with_forbidden_global_is_refused_unrun(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": RunsCommand(f"touch {marker}"), b"labels": [0]}
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(MendnetError, match="forbidden global") as err:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert str(batch) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (b"labels", [0, 1, 2, 10], "labels must lie in"),
        (b"labels", [0, 1], "'labels' must be 4 integers"),
        (b"data", np.zeros((4, 3072), np.float32), "'data' must be a uint8"),
        (b"data", [0] * 3072, "'data' must be a numpy array"),
    ],
    ids=["label-range", "label-count", "data-dtype", "data-type"],
)
def test_bad_cifar_batch_raises(tmp_path: Path, field: bytes, value: Any, message: str) -> None:
    batches = write_cifar10(tmp_path)
    batch = batches["test_batch"] | {field: value}
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(py2_pickle(batch))
    with pytest.raises(MendnetError, match=message) as err:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert str(path) in str(err.value)


def test_cifar_pickle_not_a_dict_or_garbage(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(py2_pickle([b"a", b"b"]))
    with pytest.raises(MendnetError, match="holds a list, expected a dict"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    meta.write_bytes(b"\x80\x02garbage")
    with pytest.raises(MendnetError, match="not a valid CIFAR pickle"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------------------------


def write_folder_tree(root: Path, mode: str = "RGB") -> dict[str, np.ndarray]:
    """train/{cat,dog} and test/{cat} PNGs of two sizes; returns pixels by relative path."""
    sizes = {
        "train/cat/a.png": (8, 6),
        "train/cat/b.png": (12, 10),
        "train/dog/c.png": (8, 6),
        "test/cat/d.png": (12, 10),
    }
    return {rel: write_png(root / rel, size, mode) for rel, size in sizes.items()}


def test_image_folder_resizes_to_first_image(tmp_path: Path) -> None:
    pixels = write_folder_tree(tmp_path)
    train = load_dataset("imagefolder", "train", data_dir=tmp_path, image_size=None)
    assert train.images.shape == (3, 3, 6, 8) and train.classes == ("cat", "dog")
    assert train.labels.tolist() == [0, 0, 1]
    assert np.array_equal(train.images[0].numpy(), pixels["train/cat/a.png"].transpose(2, 0, 1))
    mean, std = channel_mean_std(train.images)
    assert train.mean == mean and train.std == std
    test = load_dataset("imagefolder", "test", data_dir=tmp_path, image_size=None)
    assert test.images.shape == (1, 3, 6, 8) and test.labels.tolist() == [0]
    assert test.classes == train.classes and test.mean == train.mean


def test_image_folder_default_size_and_greyscale(tmp_path: Path) -> None:
    write_folder_tree(tmp_path, mode="L")
    ds = load_dataset("imagefolder", "test", data_dir=tmp_path)
    assert ds.images.shape == (1, 1, 32, 32) and len(ds.mean) == 1


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(MendnetError, match="needs --data-dir"):
        load_dataset("imagefolder")
    write_folder_tree(tmp_path)
    bad = tmp_path / "train" / "dog" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MendnetError, match="cannot read image") as err:
        load_dataset("imagefolder", data_dir=tmp_path)
    assert str(bad) in str(err.value)
    bad.unlink()
    write_png(tmp_path / "test" / "bird" / "e.png", (8, 6))
    with pytest.raises(MendnetError, match="bird are not classes of the train split"):
        load_dataset("imagefolder", "test", data_dir=tmp_path)


def test_channel_mean_std_matches_float_computation() -> None:
    images = torch.from_numpy(RNG.integers(0, 256, (7, 3, 5, 4), dtype=np.uint8))
    mean, std = channel_mean_std(images)
    x = images.double() / 255
    assert np.allclose(mean, x.mean(dim=(0, 2, 3)).numpy(), atol=1e-12)
    assert np.allclose(std, x.std(dim=(0, 2, 3), correction=0).numpy(), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# catalog
# ---------------------------------------------------------------------------------------------


def test_names_and_bad_arguments() -> None:
    assert dataset_names() == ["fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder"]
    assert set(DATASETS) == set(dataset_names())
    with pytest.raises(MendnetError, match="unknown data set 'svhn'; choose one of fashion-mnist"):
        load_dataset("svhn")
    with pytest.raises(MendnetError, match="split must be one of train, test"):
        load_dataset("mnist", "val")


def test_missing_data_set_lists_searched_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(MendnetError) as err:
        load_dataset("fashion-mnist", "test", data_dir=tmp_path / "given")
    message = str(err.value)
    for folder in (
        "given",
        "given/fashion-mnist",
        "env",
        "env/fashion-mnist",
        "system/fashion-mnist",
    ):
        assert str(tmp_path / folder) in message
    assert "apt-get install dataset-fashion-mnist" in message and "--download" in message
    with pytest.raises(MendnetError, match=r"cifar-10-batches-py.*put the official files") as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "\n" not in str(err.value)
    monkeypatch.delenv(catalog.ENV_VAR)
    with pytest.raises(MendnetError, match=r"--download needs --data-dir or \$MENDNET_DATA"):
        load_dataset("mnist", download=True)


@pytest.mark.skipif(not FMNIST_SYSTEM.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "SYSTEM_DATA_DIR", FMNIST_SYSTEM.parent)
    ds = load_dataset("fashion-mnist", "test")
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.min() == 0 and ds.labels.max() == 9
    assert torch.bincount(ds.labels).tolist() == [1000] * 10


# ---------------------------------------------------------------------------------------------
# downloads (the network is never touched: `fetch` is replaced)
# ---------------------------------------------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Replace download.fetch by one answering from `files` (by URL file name); returns the log."""
    asked: list[str] = []

    def fake_fetch(url: str, out: BinaryIO) -> None:
        asked.append(url)
        out.write(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(download, "fetch", fake_fetch)
    return asked


def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(
        monkeypatch,
        {n: b"not the real file" for n in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")},
    )
    with pytest.raises(MendnetError, match=r"failed its checksum.*expected 8d4fb7e6c68d591d4c"):
        download.download("fashion-mnist", tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_verified_idx_download_then_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source_dir = tmp_path / "published"
    images, _ = write_idx_set(source_dir, n=3)
    files = {p.name: p.read_bytes() for p in source_dir.iterdir()}
    remotes = tuple(
        Remote(name, md5(data), ("https://a.invalid/", "https://b.invalid/")) for name, data in files.items()
    )
    monkeypatch.setitem(download.SOURCES, "mnist", Source(remotes))
    asked = serve(monkeypatch, files)
    ds = load_dataset("mnist", "test", data_dir=tmp_path / "data", download=True)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images)) and len(asked) == 4
    load_dataset("mnist", "train", data_dir=tmp_path / "data", download=True)
    assert len(asked) == 4  # already there: nothing fetched again
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(files)


def test_network_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(url: str, out: BinaryIO) -> None:
        raise urllib.error.URLError("Name or service\nnot known")

    monkeypatch.setattr(download, "fetch", unreachable)
    with pytest.raises(MendnetError, match=r"could not download train-images-idx3-ub") as err:
        download.download("fashion-mnist", tmp_path)
    assert "\n" not in str(err.value) and "raw.githubusercontent.com" in str(err.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_cifar_archive_download_then_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = write_cifar10(tmp_path / "published")
    folder = tmp_path / "published" / "cifar-10-batches-py"
    contents = {p.name: p.read_bytes() for p in folder.iterdir()}
    archive = tar_gz(
        [(tarfile.TarInfo(f"cifar-10-batches-py/{name}"), data) for name, data in contents.items()]
    )
    remote = Remote("cifar-10-python.tar.gz", md5(archive), ("https://c.invalid/",))
    members = {name: md5(data) for name, data in contents.items()}
    monkeypatch.setitem(download.SOURCES, "cifar10", Source((remote,), "cifar-10-batches-py", members))
    serve(monkeypatch, {remote.filename: archive})
    ds = load_dataset("cifar10", "test", data_dir=tmp_path / "data", download=True)
    assert ds.labels.tolist() == batches["test_batch"][b"labels"]
    assert sorted(p.name for p in (tmp_path / "data" / "cifar10").iterdir()) == ["cifar-10-batches-py"]


def test_cifar_archive_with_bad_member_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tar_gz([(tarfile.TarInfo("cifar-100-python/train"), b"tampered")])
    remote = Remote("cifar-100-python.tar.gz", md5(archive), ("https://c.invalid/",))
    members = {"train": md5(b"original"), "meta": md5(b"meta")}
    source = Source((remote,), "cifar-100-python", members)
    monkeypatch.setitem(download.SOURCES, "cifar100", source)
    serve(monkeypatch, {remote.filename: archive})
    with pytest.raises(MendnetError, match="members train, meta are missing or fail"):
        download.download("cifar100", tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def symlink_member(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ((tarfile.TarInfo("../evil"), b"x"), "unsafe path '../evil'"),
        ((tarfile.TarInfo("ok/../../evil"), b"x"), "unsafe path"),
        ((tarfile.TarInfo("/tmp/evil"), b"x"), "unsafe path '/tmp/evil'"),
        ((symlink_member("link", "/etc/passwd"), None), "not a plain file"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_safe_extract_refuses_unsafe_members(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], message: str
) -> None:
    archive = tmp_path / "a" / "x.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(tar_gz([member]))
    with pytest.raises(MendnetError, match=message):
        safe_extract(archive, tmp_path / "a" / "out")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "a" / "out" / "link").exists()
