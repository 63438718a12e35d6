"""The one training loop: iteration-based, masked, evaluated every N iterations, resumable.

`run` owns the cadence of every training: the budget, the evaluation points (the first, every
`eval_every` iterations and the last) and which of them also evaluate the test set, the capture
of θk, periodic checkpoints, progress, the divergence error and the random state for dropout. An
`Engine` (engine.py) does the work it asks for: one model (`engines.one_model` picks which, for
`train`), or K replicas at once (`replicas.train_replicas`). It knows nothing of levels or
variants: it trains what it is given, keeping the pruned weights of each mask at exactly zero,
and records the early-stopping point (the iteration of minimum validation loss and the test
accuracy there, the paper's protocol).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from lth.config import TrainingConfig
from lth.data import Splits
from lth.errors import LthError
from lth.pruning import Mask
from lth.seeds import derive_seed
from lth.steps import Step
from lth.training.engine import Engine
from lth.training.engines import one_model
from lth.training.schedule import LrSchedule

HISTORY_COLUMNS = ("iteration", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


class Checkpoint(Protocol):
    """Where a training run keeps its progress so a killed process can continue it."""

    interval_s: float

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    early_stop_iteration: int
    early_stop_val_loss: float
    early_stop_val_accuracy: float
    early_stop_test_accuracy: float
    final_test_accuracy: float
    final_train_accuracy: float
    final_train_loss: float
    captured: dict[str, torch.Tensor] | None = None  # the weights at `capture_at`, if asked

    @classmethod
    def from_history(
        cls,
        history: list[dict[str, float]],
        train_metrics: tuple[float, float],
        captured: dict[str, torch.Tensor] | None,
    ) -> TrainResult:
        """The early stop is the first minimum of validation loss (`min` keeps the earliest)."""
        best = min(history, key=lambda row: row["val_loss"])
        train_loss, train_acc = train_metrics
        return cls(
            history=history,
            early_stop_iteration=int(best["iteration"]),
            early_stop_val_loss=best["val_loss"],
            early_stop_val_accuracy=best["val_accuracy"],
            early_stop_test_accuracy=best["test_accuracy"],
            final_test_accuracy=history[-1]["test_accuracy"],
            final_train_accuracy=train_acc,
            final_train_loss=train_loss,
            captured=captured,
        )

    def record(self) -> dict[str, float | int]:
        """The scalar results, as stored and summarised."""
        return {
            "early_stop_iteration": self.early_stop_iteration,
            "early_stop_val_loss": self.early_stop_val_loss,
            "early_stop_val_accuracy": self.early_stop_val_accuracy,
            "early_stop_test_accuracy": self.early_stop_test_accuracy,
            "final_test_accuracy": self.final_test_accuracy,
            "final_train_accuracy": self.final_train_accuracy,
            "final_train_loss": self.final_train_loss,
        }


def iterations_per_epoch(data: Splits, batch_size: int) -> int:
    return max(len(data.train) // batch_size, 1)


@dataclass(frozen=True)
class TrainingSteps:
    """A training config's step strings (`"50000it"`, `"2ep"`) in iterations on its data.

    Resolved here and nowhere else, so the loop, its schedule and the runner count alike."""

    per_epoch: int
    total: int
    every: int  # iterations between evaluations
    warmup: int
    milestones: tuple[int, ...]

    @classmethod
    def of(cls, config: TrainingConfig, per_epoch: int) -> TrainingSteps:
        def its(step: str) -> int:
            return Step.parse(step).iterations(per_epoch)

        milestones = tuple(its(m) for m in config.lr_milestones)
        return cls(per_epoch, its(config.steps), its(config.eval_every), its(config.warmup), milestones)


def budget(data: Splits, config: TrainingConfig, start: int) -> TrainingSteps:
    """The steps of a run on `data` starting at iteration `start`, which must not be past the end."""
    steps = TrainingSteps.of(config, iterations_per_epoch(data, config.batch_size))
    if start > steps.total:
        raise LthError(f"cannot start training at iteration {start}: the budget is {steps.total} iterations")
    return steps


def make_schedule(config: TrainingConfig, per_epoch: int) -> LrSchedule:
    return lr_schedule(config, TrainingSteps.of(config, per_epoch))


def lr_schedule(config: TrainingConfig, steps: TrainingSteps) -> LrSchedule:
    return LrSchedule(config.lr, warmup=steps.warmup, milestones=steps.milestones, gamma=config.lr_gamma)


def run(
    engine: Engine,
    data: Splits,
    config: TrainingConfig,
    *,
    seed: int,
    start: int = 0,
    capture_at: int | None = None,
    checkpoint: Checkpoint | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[TrainResult]:
    """Train `engine`'s replicas from iteration `start` to the end of `config.steps`, one result
    per replica.

    `seed` seeds the global generator, which only a model's own random layers (dropout) draw
    from; the caller's generator is left as it was. `on_progress` counts iterations summed over
    replicas. A `checkpoint` holds the loop's state and the engine's `snapshot`, so a run resumed
    from it computes exactly what an unbroken one would.
    """
    device = data.train.x.device
    steps = budget(data, config, start)
    total, every = steps.total, steps.every
    schedule = lr_schedule(config, steps)
    k = engine.replicas
    histories: list[list[dict[str, float]]] = [[] for _ in range(k)]
    captured = engine.copy_weights() if capture_at == start else [None] * k
    iteration = start
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(seed, "dropout", start))
        state = checkpoint.load() if checkpoint is not None else None
        if state is not None and "engine" not in state:
            state = None  # written by lth before engines: training again from `start` gives the same numbers
        if state is not None:
            iteration, histories, captured = _restore(state, engine, device)
            if on_progress:
                on_progress(k * (iteration - start))
        else:
            _evaluate_point(engine, data, iteration, histories, last=iteration == total, config=config)
        last_save = time.monotonic()
        while iteration < total:
            stop = min(total, (iteration // every + 1) * every)
            for it in range(iteration, stop):
                engine.step(it, schedule(it))
                if capture_at == it + 1:
                    captured = engine.copy_weights()
            done, iteration = stop - iteration, stop
            _evaluate_point(engine, data, iteration, histories, last=iteration == total, config=config)
            if on_progress:
                on_progress(k * done)
            if (
                checkpoint is not None
                and iteration < total
                and time.monotonic() - last_save >= checkpoint.interval_s
            ):
                checkpoint.save(_snapshot(engine, iteration, histories, captured, device))
                last_save = time.monotonic()

    train_metrics = engine.evaluate(data.train)
    return [
        TrainResult.from_history(history, metrics, weights)
        for history, metrics, weights in zip(histories, train_metrics, captured, strict=True)
    ]


def needs_test(history: list[dict[str, float]], val_loss: float, last: bool, config: TrainingConfig) -> bool:
    """Whether an evaluation with this validation loss also evaluates the test set: the first and
    last evaluations, every one when keeping the full test curve, and otherwise only a new
    minimum. Strictly below the best so far, since the early stop is the *first* minimum and
    only its test accuracy is kept."""
    return last or config.test_curve or not history or val_loss < min(row["val_loss"] for row in history)


def history_row(
    iteration: int,
    val: tuple[float, float],
    test: tuple[float, float] = (math.nan, math.nan),
    replica: int | None = None,
) -> dict[str, float]:
    """One row of a history (HISTORY_COLUMNS) from (loss, accuracy) pairs; NaN test metrics
    where the test set was not evaluated. A NaN validation loss means training diverged."""
    if math.isnan(val[0]):
        where = "" if replica is None else f" in replica {replica}"
        raise LthError(
            f"training diverged (validation loss is NaN) by iteration {iteration}{where}; "
            "lower training.lr or add training.warmup"
        )
    return dict(zip(HISTORY_COLUMNS, (iteration, *val, *test), strict=True))


def _evaluate_point(
    engine: Engine,
    data: Splits,
    iteration: int,
    histories: list[list[dict[str, float]]],
    *,
    last: bool,
    config: TrainingConfig,
) -> None:
    """Append one row per replica, with the test set for the replicas where `needs_test` says,
    evaluated only for them."""
    val = engine.evaluate(data.val)
    need = [r for r, history in enumerate(histories) if needs_test(history, val[r][0], last, config)]
    test = dict(zip(need, engine.evaluate(data.test, need), strict=True)) if need else {}
    for r, history in enumerate(histories):
        replica = r if len(histories) > 1 else None
        history.append(history_row(iteration, val[r], test.get(r, (math.nan, math.nan)), replica))


def _snapshot(
    engine: Engine,
    iteration: int,
    histories: list[list[dict[str, float]]],
    captured: list[dict[str, torch.Tensor] | None],
    device: torch.device,
) -> dict[str, Any]:
    return {
        "iteration": iteration,
        "histories": histories,
        "captured": captured,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "engine": engine.snapshot(),
    }


def _restore(
    state: dict[str, Any], engine: Engine, device: torch.device
) -> tuple[int, list[list[dict[str, float]]], list[dict[str, torch.Tensor] | None]]:
    if len(state["histories"]) != engine.replicas:
        raise LthError(
            f"a checkpoint of {len(state['histories'])} trainings cannot resume {engine.replicas} at once"
        )
    engine.restore(state["engine"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return state["iteration"], state["histories"], state["captured"]


# --- one model: the engine of `train` ------------------------------------------------------------


def train(
    model: nn.Module,
    data: Splits,
    config: TrainingConfig,
    *,
    seed: int,
    mask: Mask | None = None,
    start: int = 0,
    augment: bool = False,
    capture_at: int | None = None,
    checkpoint: Checkpoint | None = None,
    on_progress: Callable[[int], None] | None = None,
    engine: str = "auto",
) -> TrainResult:
    """Train `model` in place from iteration `start` to the end of `config.steps`.

    `seed` fixes the data order, augmentation and dropout. With `mask`, pruned weights are
    zeroed first and their gradients are zeroed every step, so neither the weights nor the
    optimiser's state (moments, momentum) ever move away from zero. `capture_at` asks for a copy
    of the weights at that iteration (θk for rewinding). `checkpoint` makes the run resumable.
    `engine` names the engine that computes it (`engines.ONE_MODEL`), or "auto" for the fastest
    that applies; they give the same numbers.
    """
    trainer = one_model(engine, model, data, config, seed=seed, mask=mask, augment=augment)
    result = run(
        trainer,
        data,
        config,
        seed=seed,
        start=start,
        capture_at=capture_at,
        checkpoint=checkpoint,
        on_progress=on_progress,
    )[0]
    trainer.write_back()  # an engine that trains a copy of the weights leaves them in `model`
    return result
