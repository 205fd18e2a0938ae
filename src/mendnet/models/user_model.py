"""Import a user's model factory from "pkg.module:factory" or "/path/to/file.py:factory"."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from torch import nn

from mendnet.errors import MendnetError


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise MendnetError(f"model file {path} does not exist")
    name = f"_mendnet_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MendnetError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so dataclasses and pickling inside the file can find it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_factory(path: str) -> Callable[..., nn.Module]:
    """The callable named by "pkg.module:factory" or "/path/file.py:factory".

    The module part is imported normally (it must be on sys.path) unless it ends in ".py" or
    contains a path separator, in which case that file is executed as a fresh module. The part
    after the last ':' may be dotted ("module:Class.create"); a name inside a function
    ("module:f.<locals>.Net", as `mendnet.wrap` records such a class) cannot be imported. Any
    failure is a one-line MendnetError.
    """
    module_name, sep, attr = path.rpartition(":")
    if not sep or not module_name or not attr:
        raise MendnetError(f"a user model is 'module:factory' or 'path/file.py:factory', got {path!r}")
    if "<locals>" in attr:
        raise MendnetError(
            f"{path!r} is defined inside a function, so it cannot be imported to rebuild the model; define "
            "it at module level, or in Python load the weights into a fresh instance: "
            "mendnet.load(folder, net=...)"
        )
    try:
        if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
            module = _import_file(Path(module_name))
        else:
            module = importlib.import_module(module_name)
    except MendnetError:
        raise
    except Exception as error:  # user code: report any import-time failure on one line
        raise MendnetError(f"cannot import {module_name!r}: {_first_line(error)}") from error
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise MendnetError(f"{module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise MendnetError(f"{path!r} is not callable")
    return target
