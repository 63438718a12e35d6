"""One piece of work, run inside a worker (a local process or a Ray task): trainings of one level
of trial t of one config (sweep/pieces.py).

The same function serves both backends. It never raises: the outcome says whether the piece
finished, failed for a reason of its own (an `LthError`: fix the input and run again), or hit a
bug. A worker that dies (killed, node lost) returns nothing at all; its backend reports that.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from lth.config import Config


def _driver_tensorboard() -> str | None:
    """$LTH_TENSORBOARD as an absolute path, where set: a task's default, read in the driver."""
    from lth.lottery.tensorboard import from_env

    where = from_env()
    return str(Path(where).resolve()) if where else None


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one piece; plain data, pickled to the worker."""

    config: Config
    out: str  # the results root, as the worker sees it
    trial: int
    level: int  # the piece of the trial it trains (sweep/pieces.py): one level's trainings
    variants: tuple[str, ...]
    data_dir: str | None = None  # None: the worker's own $LTH_DATA_DIR or cache
    device: str = "auto"
    threads: int | None = None  # PyTorch threads in this worker; None leaves PyTorch's default
    checkpoint_interval_s: float = 60.0
    engine: str = "auto"  # which engine trains one model (training/engines.py)
    # Where TensorBoard streams go: the driver's $LTH_TENSORBOARD, read where the task is made,
    # since a Ray worker on another node does not inherit the driver's environment.
    tensorboard: str | None = field(default_factory=_driver_tensorboard)


@dataclass(frozen=True)
class Outcome:
    error: str | None = None  # one line: why the unit failed; None when it finished
    detail: str = ""  # a traceback, for errors that are bugs in lth
    died: bool = False  # the worker was lost (killed, out of memory, node gone): worth a retry

    @property
    def ok(self) -> bool:
        return self.error is None


# One data set stays in memory per worker, so a worker's next unit of the same data starts at once.
_cached: tuple[tuple, object] | None = None


def run_unit(task: Task) -> Outcome:
    """Run (or finish) the trainings `task.variants` of level `task.level` of trial `task.trial` of
    `task.config`, under `task.out`."""
    from lth.errors import LthError

    try:
        _run(task)
    except LthError as err:
        return Outcome(error=str(err))
    except Exception as err:
        return Outcome(
            error=f"{type(err).__name__}: {err} (a bug in lth; please report it with the traceback)",
            detail=traceback.format_exc(),
        )
    return Outcome()


def _run(task: Task) -> None:
    import torch

    from lth.compose import model_factory, open_experiment
    from lth.lottery import Runtime, resolve_device

    if task.threads:
        torch.set_num_threads(task.threads)
    config = task.config
    splits = _load(config, task.data_dir)
    make_model = model_factory(config, splits)
    runtime = Runtime(
        device=resolve_device(task.device),
        progress=False,
        checkpoint_interval_s=task.checkpoint_interval_s,
        engine=task.engine,
        tensorboard=task.tensorboard,
    )
    experiment = open_experiment(config, splits, make_model, task.out, runtime)
    experiment.run_trainings(task.trial, task.level, task.variants)


def _load(config: Config, data_dir: str | None):
    global _cached
    from lth import data as datasets

    d = config.data
    key = (
        d.dataset,
        str(Path(data_dir).resolve()) if data_dir else os.environ.get("LTH_DATA_DIR"),
        d.val_size,
        d.split_seed,
    )
    if _cached is None or _cached[0] != key:
        _cached = None  # let the old tensors go before the new ones load
        _cached = (key, datasets.load(d.dataset, data_dir, val_size=d.val_size, split_seed=d.split_seed))
    return _cached[1]
