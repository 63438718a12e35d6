"""The data set registry: a name in a config → how to fetch it and how to read it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lth.data import cifar, mnist
from lth.data.splits import Pixels
from lth.errors import DataError


@dataclass(frozen=True)
class DataSource:
    name: str
    num_classes: int
    fetch: Callable[[Path, bool], Path]  # (root, progress) → folder holding the files
    read: Callable[[Path], Pixels]  # root → full training set and test set, as uint8 pixels
    # One example's shape (C, H, W), known without reading the files: what a mask's first layer
    # sees, so `lth masks` can draw it as an image of a run whose data is not at hand.
    input_shape: tuple[int, ...]


def _idx_source(ds: mnist.IdxDataset) -> DataSource:
    return DataSource(
        name=ds.key,
        num_classes=10,
        fetch=lambda root, progress: mnist.fetch_files(ds, root, progress=progress),
        read=lambda root: mnist.read(ds, root),
        input_shape=(1, 28, 28),
    )


_SOURCES: dict[str, DataSource] = {
    source.name: source
    for source in (
        DataSource(
            name="cifar10",
            num_classes=cifar.NUM_CLASSES,
            fetch=lambda root, progress: cifar.fetch_files(root, progress=progress),
            read=cifar.read,
            input_shape=(3, 32, 32),
        ),
        _idx_source(mnist.FASHION_MNIST),
        _idx_source(mnist.MNIST),
    )
}


def names() -> list[str]:
    """The data sets `lth` knows, by the names configs and the CLI use."""
    return sorted(_SOURCES)


def get(name: str) -> DataSource:
    if name not in _SOURCES:
        raise DataError(f"unknown data set {name!r}: choose one of {', '.join(names())}")
    return _SOURCES[name]


def default_root() -> Path:
    """$LTH_DATA_DIR if set, else $XDG_CACHE_HOME/lth/data, else ~/.cache/lth/data."""
    if explicit := os.environ.get("LTH_DATA_DIR"):
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "lth" / "data"


def resolve_root(root: str | Path | None) -> Path:
    return default_root() if root is None else Path(root).expanduser()
