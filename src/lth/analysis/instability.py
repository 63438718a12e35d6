"""Instability analysis (Frankle, Dziugaite, Roy & Carbin, ICML 2020): is a network's training
outcome stable to SGD noise?

Two copies of one network start from the same weights under the same mask and train with
different noise seeds (the seed of `lth.training.train` fixes data order, augmentation and
dropout; nothing else differs). The test and train error are then measured at `POINTS` evenly
spaced α ∈ [0, 1] along the straight line (1 − α)·A + α·B between the two trained copies, the
mask applied at every point. *Instability* is the error barrier: the largest error on the path
minus the mean of the two endpoints' errors. Errors are fractions (1 − accuracy), as the run's
accuracies are. See docs/design.md, "Instability".

Batch norm: the interpolated network's running statistics are the interpolation of the two
copies' (`BN_INTERPOLATED`), or, with `BN_REESTIMATED`, are measured afresh on `BN_BATCHES`
training batches (of the fixed train subset below) at every α, the fairer choice where mean and
variance are far from linear along the path.

This module computes; it writes nothing. `measure.py` stores a measurement resumably.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lth.config import LotteryConfig, TrainingConfig
from lth.data import Split, Splits
from lth.errors import ConfigError
from lth.pruning import Mask
from lth.seeds import derive_seed
from lth.training import Checkpoint, evaluate, train

Weights = dict[str, torch.Tensor]

POINTS = LotteryConfig.instability_points  # α values on the path, 0 and 1 included: the paper's 30
# Train error is measured on a fixed subset of the training split (the same examples for every
# α, copy and run), so a path costs about what evaluating the test set does. Its seed is fixed.
TRAIN_EXAMPLES = 10_000
_SUBSET_SEED = derive_seed("instability", "train subset")
BN_INTERPOLATED, BN_REESTIMATED = LotteryConfig.instability_bn, "reestimated"
BN_MODES = (BN_INTERPOLATED, BN_REESTIMATED)
BN_BATCHES = 50  # training batches that re-estimate batch norm's statistics at each α


def noise_seed(seed: int, variant: str, level: int, start: int) -> int:
    """The second copy's seed, for the training with `seed` of (variant, level) started at
    iteration `start`: the first copy is that training itself, so the copies differ in noise
    alone, and a measurement of the same start point gets the same second copy wherever it is made."""
    return derive_seed(seed, "instability", variant, level, start)


@dataclass(frozen=True)
class PathSettings:
    """How a path is evaluated: recorded with it, since its numbers depend on them. The config
    sets the first and last (`of`); errors name its keys."""

    points: int = POINTS
    train_examples: int = TRAIN_EXAMPLES
    batch_norm: str = BN_INTERPOLATED

    def __post_init__(self) -> None:
        if self.points < 2:
            raise ConfigError(
                f"lottery.instability_points must be 2 or more (the path's two ends), got {self.points}"
            )
        if self.train_examples < 1:
            raise ConfigError(f"the train-error subset needs at least 1 example, got {self.train_examples}")
        if self.batch_norm not in BN_MODES:
            raise ConfigError(
                f"lottery.instability_bn must be one of {', '.join(BN_MODES)}; got {self.batch_norm!r}"
            )

    @classmethod
    def of(cls, lottery: LotteryConfig) -> PathSettings:
        return cls(points=lottery.instability_points, batch_norm=lottery.instability_bn)

    def to_dict(self) -> dict[str, Any]:
        return {"points": self.points, "train_examples": self.train_examples, "batch_norm": self.batch_norm}


@dataclass(frozen=True)
class ErrorPath:
    """Test and train error at each α of the path from copy A (α = 0) to copy B (α = 1)."""

    alpha: list[float]
    test_error: list[float]
    train_error: list[float]

    @property
    def instability(self) -> float:
        return barrier(self.test_error)

    @property
    def instability_train(self) -> float:
        return barrier(self.train_error)

    @property
    def endpoint_test_error(self) -> float:
        return _ends(self.test_error)

    @property
    def endpoint_train_error(self) -> float:
        return _ends(self.train_error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "instability": self.instability,
            "instability_train": self.instability_train,
            "endpoint_test_error": self.endpoint_test_error,
            "endpoint_train_error": self.endpoint_train_error,
            "alpha": self.alpha,
            "test_error": self.test_error,
            "train_error": self.train_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorPath:
        return cls(list(data["alpha"]), list(data["test_error"]), list(data["train_error"]))


def barrier(errors: list[float]) -> float:
    """The largest error on the path minus the mean of its two ends' (never below 0: the ends are
    on the path). Two identical ends give exactly 0: (e + e) / 2 is e in floating point."""
    return max(errors) - _ends(errors)


def _ends(errors: list[float]) -> float:
    return (errors[0] + errors[-1]) / 2


def alphas(points: int) -> list[float]:
    """`points` evenly spaced α from 0 to 1, both included."""
    return [i / (points - 1) for i in range(points)]


def interpolate(a: Weights, b: Weights, alpha: float) -> Weights:
    """(1 − α)·a + α·b for every floating-point tensor, batch norm's running statistics included;
    integer buffers (batch norm's step counts) are a's.

    `torch.lerp` is exact at both ends (α = 0 gives a, α = 1 gives b, bit for bit) and gives a
    where a equals b, so identical copies give one network all along the path; and a weight
    that is 0 in both stays exactly 0."""
    return {
        name: torch.lerp(t, b[name], alpha) if t.is_floating_point() else t.clone() for name, t in a.items()
    }


def train_subset(train: Split, examples: int) -> Split:
    """The fixed examples of `train` whose error the path reports: a seeded draw, the same for
    every α, copy and run on the same data."""
    if examples >= len(train):
        return train
    generator = torch.Generator().manual_seed(_SUBSET_SEED)
    idx = torch.randperm(len(train), generator=generator)[:examples].to(train.x.device)
    return Split(train.x[idx], train.y[idx])


def path_models(
    make_model: Callable[[], nn.Module],
    a: Weights,
    b: Weights,
    mask: Mask,
    points: list[float],
    device: torch.device | str = "cpu",
) -> Iterator[tuple[float, nn.Module]]:
    """The network at each α on `device`: one model, loaded with the interpolated weights in turn
    and masked (a no-op where both copies are masked alike, as trained copies are; said, not
    assumed)."""
    model = make_model().to(device)
    a, b = ({k: v.to(device) for k, v in w.items()} for w in (a, b))
    mask = mask.to(device)
    for alpha in points:
        model.load_state_dict(interpolate(a, b, alpha))
        mask.apply_(model)
        yield alpha, model


def error_path(
    make_model: Callable[[], nn.Module],
    a: Weights,
    b: Weights,
    mask: Mask,
    data: Splits,
    settings: PathSettings | None = None,
    batch_size: int = 60,
) -> ErrorPath:
    """Test error and train error (on `train_subset`) along the path from `a` to `b`.

    `batch_size`: the training's, for re-estimating batch norm (`settings.batch_norm`)."""
    settings = settings or PathSettings()
    subset = train_subset(data.train, settings.train_examples)
    test, trained = [], []
    points = alphas(settings.points)
    for _, model in path_models(make_model, a, b, mask, points, data.test.x.device):
        if settings.batch_norm == BN_REESTIMATED:
            reestimate_batch_norm(model, subset.x, batch_size)
        test.append(1.0 - evaluate(model, data.test.x, data.test.y)[1])
        trained.append(1.0 - evaluate(model, subset.x, subset.y)[1])
    return ErrorPath(points, test, trained)


@torch.no_grad()
def reestimate_batch_norm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace every batch norm layer's running statistics by their plain average over the first
    `BN_BATCHES` batches of `x`, the rest of the network in eval mode (no dropout while measuring)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = model.training
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
        m.train()
    batches = min(BN_BATCHES, math.ceil(len(x) / batch_size))
    for i in range(batches):
        model(x[i * batch_size : (i + 1) * batch_size])
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


def train_copy(
    make_model: Callable[[], nn.Module],
    start_weights: Weights,
    mask: Mask,
    data: Splits,
    training: TrainingConfig,
    *,
    start: int,
    seed: int,
    augment: bool = False,
    checkpoint: Checkpoint | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Weights:
    """One copy: `start_weights` under `mask`, trained from iteration `start` to the end of
    `training` with noise `seed`. A copy starts with fresh optimiser state, as a rewound ticket
    does (the runner's variants)."""
    model = make_model().to(data.train.x.device)
    model.load_state_dict(start_weights)
    train(
        model,
        data,
        training,
        seed=seed,
        mask=mask,
        start=start,
        augment=augment,
        checkpoint=checkpoint,
        on_progress=on_progress,
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def measure(
    make_model: Callable[[], nn.Module],
    start_weights: Weights,
    mask: Mask,
    data: Splits,
    training: TrainingConfig,
    *,
    start: int,
    seeds: tuple[int, int],
    augment: bool = False,
    settings: PathSettings | None = None,
) -> ErrorPath:
    """Train two copies from `start_weights` (under `mask`, from iteration `start`) with noise
    `seeds`, and the error path between them. Nothing is stored: see `measure.py` for that."""
    a, b = (
        train_copy(make_model, start_weights, mask, data, training, start=start, seed=s, augment=augment)
        for s in seeds
    )
    return error_path(make_model, a, b, mask, data, settings, training.batch_size)
