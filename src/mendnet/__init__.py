"""mendnet: find and repair what is wrong inside trained image classifiers.

The Python API (`mendnet.api`, loaded on first use so that `import mendnet` stays cheap):

- `wrap(net, input_shape, mean=None, std=None, num_classes=None)`: your nn.Module as a Classifier;
- `ImageSet` (`.from_numpy`, `.from_dataset`, `.from_folder`): your data;
- `repair(model, config, clean, *, test=None, ...)` → (repaired model, metrics): the config's type
  picks the method (`nad.Config()` → NAD);
- `robust_accuracy(model, images, labels=None, attacks=None)`, `attack(model, images, labels, attack)`;
- `audit(model, clean, test, **settings)` → the audit's report dict;
- `mend(model, clean, *, config=None, test=None)` → (kept model, record): repair without knowing the
  attack (scan, candidate repairs, selection on clean validation images);
- `save(model, folder)`, `load(folder, net=None)`, `load_artefact(folder, net=None)`; `accuracy`.

`mendnet.repair`, `mendnet.audit` and `mendnet.mend` are also the names of sub-packages. Those names
are callable entries that run the API function when called and give the sub-package's attributes otherwise, so
`mendnet.repair(model, ...)`, `from mendnet.repair import nad` and `mendnet.repair.nad.Config` all work.
"""

import importlib as _importlib
import inspect as _inspect
import sys as _sys
import types as _types
from typing import Any as _Any

__version__ = "0.1.0"

_API = {
    "wrap": "mendnet.api",
    "save": "mendnet.api",
    "load": "mendnet.api",
    "load_artefact": "mendnet.api",
    "accuracy": "mendnet.api",
    "robust_accuracy": "mendnet.api",
    "attack": "mendnet.api",
    "ImageSet": "mendnet.data.imageset",
    "Classifier": "mendnet.models.classifier",
    "MendnetError": "mendnet.errors",
}


class _Entry:
    # A name that is both an API function (call it) and a sub-package (its other attributes); its
    # __doc__ and __signature__ are the function's.

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _function(self) -> _Any:
        return getattr(_importlib.import_module("mendnet.api"), self._name)

    def _package(self) -> _types.ModuleType:
        return _importlib.import_module(f"mendnet.{self._name}")

    def __call__(self, *args: _Any, **kwargs: _Any) -> _Any:
        return self._function()(*args, **kwargs)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._function().__doc__

    @property
    def __signature__(self) -> _inspect.Signature:
        return _inspect.signature(self._function())

    def __getattr__(self, attr: str) -> _Any:
        return getattr(self._package(), attr)

    def __setattr__(self, attr: str, value: _Any) -> None:  # e.g. unittest.mock.patch
        setattr(self._package(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._package(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._package())

    def __repr__(self) -> str:
        return f"<mendnet.{self._name}: the API function (call it) and the mendnet.{self._name} package>"


_ENTRIES = {"repair": _Entry("repair"), "audit": _Entry("audit"), "mend": _Entry("mend")}
globals().update(_ENTRIES)

__all__ = sorted([*_API, *_ENTRIES, "__version__"])


class _Package(_types.ModuleType):
    """mendnet's module type: importing the `repair` or `audit` sub-package does not replace the entry
    of the same name (the import system binds a sub-package as an attribute of its parent)."""

    def __setattr__(self, name: str, value: _Any) -> None:
        if name in _ENTRIES and isinstance(value, _types.ModuleType):
            return  # the entry already gives the sub-package's attributes
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> _Any:
    if name in _API:
        value = getattr(_importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mendnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*(name for name in globals() if not name.startswith("_")), *_API, "__version__"})
