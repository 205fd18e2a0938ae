"""Optional download of the official data set files, each verified against its published MD5 sum.

Files are written to a temporary name inside the destination folder, checked, then renamed into
place, so an interrupted or corrupt download never leaves a file under its final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mendnet.errors import MendnetError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
FMNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",)
CIFAR_HOST = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class Remote:
    """One published file: its name, MD5 (hex) and the base URLs (mirrors) to try in order."""

    filename: str
    md5: str
    mirrors: tuple[str, ...]

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(base + self.filename for base in self.mirrors)


@dataclass(frozen=True)
class Source:
    """Everything to fetch for one data set.

    archive_dir: for a .tar.gz, the folder it unpacks to; members: MD5 of each file in that folder.
    """

    files: tuple[Remote, ...]
    archive_dir: str | None = None
    members: dict[str, str] = field(default_factory=dict)


def _idx_files(md5s: dict[str, str], mirrors: tuple[str, ...]) -> tuple[Remote, ...]:
    return tuple(Remote(name, md5, mirrors) for name, md5 in md5s.items())


# MD5 sums as published by the data set authors (Fashion-MNIST README; the torchvision resource
# lists for the MNIST mirror and for the CIFAR archives and their members).
SOURCES: dict[str, Source] = {
    "fashion-mnist": Source(
        _idx_files(
            {
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            FMNIST_MIRRORS,
        )
    ),
    "mnist": Source(
        _idx_files(
            {
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            MNIST_MIRRORS,
        )
    ),
    "cifar10": Source(
        (Remote("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", (CIFAR_HOST,)),),
        archive_dir="cifar-10-batches-py",
        members={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    ),
    "cifar100": Source(
        (Remote("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", (CIFAR_HOST,)),),
        archive_dir="cifar-100-python",
        members={
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    ),
}


def fetch(url: str, out: BinaryIO) -> None:
    """Stream the body of `url` into `out` (times out after TIMEOUT_S seconds without data)."""
    request = urllib.request.Request(url, headers={"User-Agent": "mendnet"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        shutil.copyfileobj(response, out, CHUNK_BYTES)


def md5_of(path: Path) -> str:
    """Hex MD5 of the file at `path`."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fetch_to_temp(remote: Remote, folder: Path) -> tuple[Path, str]:
    """Download `remote` (first mirror that answers) to a temporary file in `folder`.

    Returns the temporary path and the URL it came from; leaves nothing behind on failure.
    """
    failures = []
    for url in remote.urls:
        fd, name = tempfile.mkstemp(prefix=f".{remote.filename}.", suffix=".part", dir=folder)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                fetch(url, out)
            return tmp, url
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{url}: {_one_line(exc)}")
            tmp.unlink(missing_ok=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    raise MendnetError(f"could not download {remote.filename} ({'; '.join(failures)})")


def fetch_verified(remote: Remote, dest: Path) -> Path:
    """Download `remote` to `dest`, atomically, after checking its MD5; returns `dest`.

    A checksum mismatch deletes the download and raises MendnetError.
    """
    tmp, url = _fetch_to_temp(remote, dest.parent)
    try:
        got = md5_of(tmp)
        if got != remote.md5:
            raise MendnetError(
                f"{remote.filename} from {url} failed its checksum (md5 {got}, expected "
                f"{remote.md5}); the download was deleted"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _member_target(member: tarfile.TarInfo, dest: Path, archive: Path) -> Path:
    """Where `member` unpacks under `dest`; refuses absolute paths, '..', links and devices."""
    parts = member.name.replace("\\", "/").split("/")
    if member.name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
        raise MendnetError(f"{archive}: refusing archive member with unsafe path '{member.name}'")
    if not (member.isfile() or member.isdir()):
        raise MendnetError(f"{archive}: refusing archive member '{member.name}' (not a plain file)")
    return dest.joinpath(*(part for part in parts if part not in ("", ".")))


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack the .tar.gz `archive` into `dest`, writing plain files and folders only."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                target = _member_target(member, dest, archive)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise MendnetError(f"{archive}: cannot read archive member '{member.name}'")
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise MendnetError(f"{archive}: corrupt archive ({_one_line(exc)})") from exc


def _bad_members(folder: Path, members: dict[str, str]) -> list[str]:
    """Names in `members` that are missing from `folder` or differ from their MD5 sum."""
    return [n for n, m in members.items() if not (folder / n).is_file() or md5_of(folder / n) != m]


def _download_archive(source: Source, archive_dir: str, target: Path) -> None:
    """Fetch, verify and unpack a .tar.gz into target/<archive_dir>, checking every member."""
    final = target / archive_dir
    if not _bad_members(final, source.members):
        return
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target) as tmp:
        (remote,) = source.files
        archive = fetch_verified(remote, Path(tmp) / remote.filename)
        unpacked = Path(tmp) / "unpacked"
        safe_extract(archive, unpacked)
        bad = _bad_members(unpacked / archive_dir, source.members)
        if bad:
            raise MendnetError(
                f"{remote.filename}: archive members {', '.join(bad)} are missing or fail their checksums"
            )
        if final.exists():
            shutil.rmtree(final)
        os.replace(unpacked / archive_dir, final)


def download(name: str, dest_dir: str | Path) -> Path:
    """Download data set `name` into dest_dir/<name>/ (skipping files already verified there).

    Returns dest_dir/<name>. Every file is checked against its published MD5 sum.
    """
    if name not in SOURCES:
        raise MendnetError(f"no download for data set '{name}'; downloadable: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    target = Path(dest_dir) / name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MendnetError(f"cannot create download folder {target}: {exc.strerror}") from exc
    if source.archive_dir is not None:
        _download_archive(source, source.archive_dir, target)
        return target
    for remote in source.files:
        dest = target / remote.filename
        if not (dest.is_file() and md5_of(dest) == remote.md5):
            fetch_verified(remote, dest)
    return target
