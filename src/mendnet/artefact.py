"""Artefact folders (design.md): `model.safetensors` (weights only), `model.json` (how to rebuild the
model and what made it), `metrics.json`, and the files a person looks at (report.md, PNGs).

Writes are atomic: everything goes into a hidden temporary folder beside the target, which is renamed
into place only when complete. Loading never unpickles: weights come through safetensors, or
`torch.load(weights_only=True)` for imported `.pt` files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mendnet import __version__
from mendnet.errors import MendnetError
from mendnet.models import Classifier, ModelSpec, build_classifier

FORMAT = "mendnet-artefact/1"
WEIGHTS = "model.safetensors"
META = "model.json"
METRICS = "metrics.json"


def check_writable(path: str | Path, *, is_file: bool = False) -> None:
    """Refuse, before any work, an output that could not be written: a folder where a file is to go (or
    the reverse), a file whose folder does not exist, a folder under a file, or a place where this
    process cannot create files (probed by creating and removing a hidden file where the output's
    temporary copy will be made; nothing is left behind). An output folder's missing parents are fine:
    they are created when it is written."""
    path = Path(path)
    if path.exists() and path.is_dir() == is_file:
        kind = "a folder" if is_file else "not a folder"
        raise MendnetError(f"output {path} exists and is {kind}")
    place = path.parent
    if is_file and not place.is_dir():
        raise MendnetError(f"cannot write {path}: folder {place} does not exist")
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise MendnetError(f"cannot write {path}: {place} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mendnet-write-check-", dir=place)
    except OSError as e:
        raise MendnetError(f"cannot write {path}: cannot create files in {place} ({e.strerror or e})") from e
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `out`, on any error it is removed.

    An existing `out` is refused unless `force` (then it is replaced only after the new one is complete).
    """
    out = Path(out)
    if out.exists() and not force:
        raise MendnetError(f"output folder {out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise MendnetError(f"output path {out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def provenance(seed: int | None) -> dict[str, Any]:
    """The command line, seed, versions and time that made an artefact."""
    return {
        "command": " ".join(["mendnet", *sys.argv[1:]]) if sys.argv else "",
        "seed": seed,
        "mendnet": __version__,
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a single file via a temporary sibling and a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_artefact(
    folder: Path,
    model: Classifier,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    files: dict[str, bytes | str] | None = None,
) -> None:
    """Write an artefact's files into `folder` (created if missing; callers pass a temporary folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    write_json(folder / META, {"format": FORMAT, "model": model.spec.to_json(), **meta})
    write_json(folder / METRICS, metrics)
    write_files(folder, files or {})


def write_files(folder: Path, files: dict[str, bytes | str]) -> None:
    """Write each named file (text or bytes) into `folder`, creating sub-folders as needed."""
    for name, content in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content)
        else:
            target.write_bytes(content)


def save_artefact(
    out: str | Path,
    model: Classifier,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    files: dict[str, bytes | str] | None = None,
    force: bool = False,
) -> Path:
    """Atomically write an artefact folder at `out` and return its path."""
    with atomic_output_dir(out, force) as tmp:
        write_artefact(tmp, model, meta, metrics, files)
    return Path(out)


@dataclass
class Artefact:
    """A loaded artefact: the model (eval mode, on CPU), its metadata and metrics."""

    model: Classifier
    meta: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise MendnetError(f"{path} is missing") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MendnetError(f"{path} is not valid JSON: {e}") from e


def check_finite(state: dict[str, torch.Tensor], source: Path) -> None:
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise MendnetError(f"{source}: weight {name} contains NaN or infinite values")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Weights from a .safetensors file, or a .pt/.pth state dict through torch.load(weights_only=True)."""
    if not path.is_file():
        raise MendnetError(f"weights file {path} is missing")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError) as e:
        raise MendnetError(f"{path} is not a readable weights file: {str(e).splitlines()[0]}") from e
    except Exception as e:  # torch.load's weights-only unpickler raises pickle.UnpicklingError and others
        raise MendnetError(f"{path} refused: not a plain weights file ({type(e).__name__})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MendnetError(f"{path} does not hold a state dict of tensors")
    check_finite(state, path)
    return state


def load_weights_into(model: Classifier, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load a state dict of the raw network (a `net.` prefix is accepted); mismatches name the keys."""
    if state and all(k.startswith("net.") for k in state):
        state = {k[len("net.") :]: v for k, v in state.items()}
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "mismatch"
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise MendnetError(f"{source}: weights do not fit {model.spec.arch}: {first} {detail}".strip()) from e


def artefact_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The folder of an artefact (given as the folder or a file inside it) and its checked model.json."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise MendnetError(f"artefact {path} does not exist")
    meta = read_json(folder / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model" not in meta:
        raise MendnetError(f"{folder / META} is not a mendnet artefact description ({FORMAT})")
    return folder, meta


def load_artefact(path: str | Path) -> Artefact:
    """Load an artefact folder (or a model.safetensors inside one)."""
    folder, meta = artefact_meta(path)
    try:
        spec = ModelSpec.from_json(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise MendnetError(f"{folder / META}: malformed model description: {e}") from e
    model = build_classifier(spec)
    load_weights_into(model, read_weights(folder / WEIGHTS), folder / WEIGHTS)
    model.to(memory_format=torch.channels_last).eval()
    metrics = read_json(folder / METRICS) if (folder / METRICS).exists() else {}
    return Artefact(model=model, meta=meta, metrics=metrics, path=folder)
