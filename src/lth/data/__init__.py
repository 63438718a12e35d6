"""Data sets as in-memory tensors: fetch once, verify, load into train / val / test splits.

    >>> from lth import data
    >>> data.fetch("mnist")                  # downloads and verifies, once; same as `lth data fetch mnist`
    >>> splits = data.load("mnist")          # 55K train, 5K validation (held out), 10K test
    >>> splits.train.x.shape, splits.input_shape
    (torch.Size([55000, 1, 28, 28]), (1, 28, 28))

Files live under a root folder: the `root` argument, else $LTH_DATA_DIR, else
$XDG_CACHE_HOME/lth/data (~/.cache/lth/data). Every problem with them is a `DataError` whose
one-line message names the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

from lth.data.augment import augment_batch
from lth.data.normalise import normalise
from lth.data.registry import default_root, get, names, resolve_root
from lth.data.splits import Split, Splits, split_train_val

__all__ = [
    "Split",
    "Splits",
    "augment_batch",
    "check",
    "default_root",
    "fetch",
    "load",
    "names",
    "split_train_val",
]


def fetch(name: str, root: str | Path | None = None, *, progress: bool = True) -> Path:
    """Download and verify data set `name` under `root` unless valid files are already there.

    Returns the folder holding the files. Nothing is downloaded when they are present and valid;
    a fetch that is interrupted leaves no partial file behind under a real name.
    """
    source = get(name)
    return source.fetch(resolve_root(root), progress)


def check(name: str, root: str | Path | None = None) -> None:
    """Raise the `DataError` that `load` would for a missing or damaged data set `name`, without
    keeping it in memory: `lth sweep` checks its data sets once before any worker starts."""
    get(name).read(resolve_root(root))


def load(name: str, root: str | Path | None = None, *, val_size: int = 5000, split_seed: int = 0) -> Splits:
    """Read data set `name` from `root` into memory, normalised, with `val_size` training
    examples held out for validation by a permutation seeded with `split_seed`."""
    source = get(name)
    pixels = source.read(resolve_root(root))
    train, val = split_train_val(pixels.train.x, pixels.train.y, val_size, split_seed)

    def normalised(split: Split) -> Split:
        return Split(normalise(split.x, pixels.mean, pixels.std), split.y)

    return Splits(
        name=name,
        train=normalised(train),
        val=normalised(val),
        test=normalised(pixels.test),
        num_classes=source.num_classes,
    )
