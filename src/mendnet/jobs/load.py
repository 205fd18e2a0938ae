"""The model a user names to `mendnet eval` or `mendnet audit`: an artefact folder (or a file inside
one), a weights file with its architecture, or a `module:factory` that returns the trained network."""

from __future__ import annotations

from pathlib import Path

from mendnet.artefact import META, Artefact, load_artefact, load_weights_into, read_weights
from mendnet.data.ref import DataRef
from mendnet.errors import MendnetError
from mendnet.models import ModelSpec, build_classifier, check_fits

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


def load_model(model: str | Path, arch: str | None = None, data: DataRef | None = None) -> Artefact:
    """An Artefact for `model`:

    - an artefact folder, or a file inside one when no `arch` is given (its recorded data set unless
      `data` is given);
    - a weights file (.safetensors, or .pt/.pth read with weights_only) with `arch` (a registered
      architecture or "module:factory") and `data`;
    - "module:factory" (or "path/file.py:factory") with `data`: the factory's network as it returns it
      (trained weights loaded by the factory), wrapped with the data set's normalisation.

    The returned artefact's `path` is None unless it is a folder on disk.
    """
    path = Path(model)
    if path.is_dir() or (arch is None and path.is_file() and (path.parent / META).is_file()):
        art = load_artefact(path)
        if data is not None:
            art.meta["data"] = data.to_json()
        return art
    if path.suffix in WEIGHT_SUFFIXES or path.is_file():
        if not path.is_file():
            raise MendnetError(f"weights file {path} is missing")
        if arch is None or data is None:
            raise MendnetError(f"a weights file ({path.name}) needs --arch and --data")
        net_arch, weights = arch, path
    elif ":" in str(model):
        if arch is not None:
            raise MendnetError("--arch is for a weights file; a module:factory names its own network")
        if data is None:
            raise MendnetError(f"the model {model} needs --data (the data set it classifies)")
        net_arch, weights = str(model), None
    else:
        raise MendnetError(f"{model} is not an artefact folder, a weights file or module:factory")
    test = data.split("test")
    classifier = build_classifier(ModelSpec(net_arch, test.num_classes, test.shape, test.mean, test.std))
    if weights is not None:
        load_weights_into(classifier, read_weights(weights), weights)
    check_fits(classifier, test)
    meta = {"data": data.to_json(), "threat": None, "source": str(model)}
    return Artefact(classifier.eval(), meta, {}, None)
