"""Where a data set comes from (`DataRef`): saved in every artefact so later commands reload the same
data, at the same image size."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mendnet.data.catalog import load_dataset
from mendnet.data.imageset import ImageSet
from mendnet.data.readers import FOLDER_IMAGE_SIZE
from mendnet.errors import MendnetError


@dataclass(frozen=True)
class DataRef:
    """A named data set, the folder it is read from (None: the usual search) and, for image folders,
    the size every image is resized to: n for n×n pixels, (height, width), or None for the size of
    the first training image (`load_dataset`). Other data sets have a fixed size and ignore it."""

    name: str = "fashion-mnist"
    data_dir: str | None = None
    image_size: int | tuple[int, int] | None = FOLDER_IMAGE_SIZE

    def split(self, split: str) -> ImageSet:
        """One split ("train" or "test") of the data set."""
        return load_dataset(self.name, split, self.data_dir, image_size=self.image_size)

    def load(self) -> tuple[ImageSet, ImageSet]:
        """The (train, test) splits."""
        return self.split("train"), self.split("test")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DataRef:
        """The reference saved by `to_json` ({"name", "data_dir", "image_size"}); an artefact written
        before image sizes were recorded was read at the default size."""
        size = d.get("image_size", FOLDER_IMAGE_SIZE)
        return cls(d["name"], d.get("data_dir"), tuple(size) if isinstance(size, list) else size)


def data_of(meta: dict[str, Any]) -> DataRef:
    """The data set an artefact's metadata records; MendnetError when it records none."""
    d = meta.get("data") or {}
    if "name" not in d:
        raise MendnetError("the artefact records no data set; pass --data")
    return DataRef.from_json(d)
