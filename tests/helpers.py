"""Small data and models for tests that need training but not a real data set."""

import torch

from lth.config import Config, with_overrides
from lth.data import Split, Splits


def tiny_splits(
    n_train: int = 600,
    n_val: int = 200,
    n_test: int = 200,
    seed: int = 0,
    shape: tuple[int, ...] = (1, 8, 8),
    classes: int = 4,
) -> Splits:
    """A learnable toy problem: the class is which quarter of the pixels is brightest."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        y = torch.randint(0, classes, (n,), generator=g)
        x = torch.randn(n, *shape, generator=g)
        flat = x.view(n, -1)
        width = flat.shape[1] // classes
        for c in range(classes):
            flat[y == c, c * width : (c + 1) * width] += 1.5
        return Split(x, y)

    return Splits(
        name="tiny", train=split(n_train), val=split(n_val), test=split(n_test), num_classes=classes
    )


def overfitting_splits() -> Splits:
    """`tiny_splits` with few, partly (30%) mislabelled training examples: a network overfits
    them, so its validation loss turns up after a minimum."""
    data = tiny_splits(n_train=120)
    g = torch.Generator().manual_seed(1)
    noisy = torch.rand(120, generator=g) < 0.3
    data.train.y[noisy] = torch.randint(0, data.num_classes, (int(noisy.sum()),), generator=g)
    return data


class RecordingCheckpoint:
    """A training checkpoint that saves every evaluation into `saved` and has nothing to load."""

    interval_s = 0.0

    def __init__(self) -> None:
        self.saved: list[dict] = []

    def load(self) -> None:
        return None

    def save(self, state: dict) -> None:
        self.saved.append(state)


def tiny_config(*overrides: str, trials: int = 1) -> Config:
    """A LeNet config small enough for `tiny_splits`: 40 iterations per level, 3 levels."""
    base = [
        "training.steps='40it'",
        "training.eval_every='10it'",
        "training.batch_size=30",
        "lottery.levels=3",
        f"lottery.trials={trials}",
    ]
    return with_overrides(Config(), [*base, *overrides])
