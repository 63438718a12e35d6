"""In-memory splits and the paper's held-out validation set."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lth.errors import DataError


# eq=False: a generated __eq__ would compare tensors element-wise and fail on `bool()`; two
# splits are the same only if they are the same object.
@dataclass(frozen=True, eq=False)
class Split:
    """One split in memory: `x` float32 N×C×H×W (already normalised), `y` int64 labels of length N."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"a split needs as many labels as examples, got {self.x.shape[0]} examples "
                f"and {self.y.shape[0]} labels"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, eq=False)
class Pixels:
    """A data set as read from its files: uint8 images N×C×H×W and int64 labels, not yet split.

    Splitting before normalising gathers a quarter of the bytes and never holds two float
    copies of the training set at once.
    """

    train: Split
    test: Split
    mean: tuple[float, ...]  # per channel, of pixel / 255
    std: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class Splits:
    """A data set ready for training: train, validation (for early stopping) and test."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one example."""
        return tuple(self.train.x.shape[1:])


def split_train_val(x: torch.Tensor, y: torch.Tensor, val_size: int, split_seed: int) -> tuple[Split, Split]:
    """Hold out `val_size` examples of (x, y), chosen by a permutation seeded with `split_seed`.

    The same seed always gives the same split, independent of the global RNG, so every trial
    and every level of a run validate on the same examples. Both index sets are sorted, so each
    split keeps the original order and the gathers read memory sequentially.
    """
    n = int(x.shape[0])
    if y.shape[0] != n:
        raise DataError(f"x has {n} examples but y has {y.shape[0]} labels; pass one label per example")
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < n:
        raise DataError(
            f"val_size must be an integer with 0 <= val_size < {n} (the number of training "
            f"examples), got {val_size!r}; choose a val_size in that range"
        )
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(n, generator=generator).to(x.device)
    val_idx = order[:val_size].sort().values
    train_idx = order[val_size:].sort().values
    return (
        Split(x[train_idx], y[train_idx.to(y.device)]),
        Split(x[val_idx], y[val_idx.to(y.device)]),
    )
