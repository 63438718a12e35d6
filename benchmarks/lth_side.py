"""`lth`'s side of the race: its public trainer, configured to do the plain loop's work.

The one difference in work that `lth` may choose by config is how often it evaluates the test
set: with `training.test_curve = false` (its default) only where the
validation loss reaches a new minimum. The like-for-like comparison turns the full test curve on,
as the plain loop evaluates the test set at every evaluation; `lth`'s default is timed beside it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lth.config import TrainingConfig
from lth.data import Splits
from lth.pruning import Mask
from lth.training import TrainResult, train


def config(steps: int, eval_every: int, batch_size: int, lr: float, *, like_for_like: bool) -> TrainingConfig:
    """Adam at `lr` and batch `batch_size` for `steps` iterations, metrics every `eval_every`."""
    return TrainingConfig(
        optimizer="adam",
        lr=lr,
        batch_size=batch_size,
        steps=f"{steps}it",
        eval_every=f"{eval_every}it",
        test_curve=like_for_like,
    )


def run(
    model: nn.Module,
    splits: Splits,
    mask: Mask,
    *,
    steps: int,
    eval_every: int,
    batch_size: int,
    lr: float,
    seed: int,
    like_for_like: bool = True,
    on_progress: Callable[[int], None] | None = None,
    engine: str = "auto",
) -> TrainResult:
    cfg = config(steps, eval_every, batch_size, lr, like_for_like=like_for_like)
    return train(model, splits, cfg, seed=seed, mask=mask, on_progress=on_progress, engine=engine)
