"""Running a sweep: every unit not yet done, on a backend, with one live view of the whole.

The driver hands the units' pieces (one level's trainings, sweep/pieces.py) to the backend
(worker processes here, or Ray tasks) as they become ready, watches the store for finished
levels, retries a piece whose worker died (it resumes from its checkpoint), records a unit that
failed for a reason of its own and carries on with the rest.
When every unit has ended it rewrites each run's summary.csv once from the stored results, as
workers running trials of one run side by side may each have written it last from an older view.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lth.errors import ConfigError
from lth.sweep import progress
from lth.sweep.pieces import Piece, order, pieces, ready
from lth.sweep.spec import Sweep, Unit
from lth.sweep.worker import Task
from lth.training.engines import check_choice

POLL_S = 0.5  # how often the live view looks at the store
DEFAULT_THREADS_PER_WORKER = 1  # measured: see README "Sweeps"


@dataclass
class SweepResult:
    done: list[Unit] = field(default_factory=list)  # finished in this sweep or before it
    failed: list[tuple[Unit, str]] = field(default_factory=list)
    ran: int = 0  # units this sweep ran (the rest were done already)

    @property
    def ok(self) -> bool:
        return not self.failed


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_sweep(
    sweep: Sweep,
    *,
    backend: str = "local",
    workers: int | None = None,
    threads_per_worker: int | None = None,
    address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    device: str = "auto",
    data_dir: str | Path | None = None,
    retries: int = 2,
    checkpoint_interval_s: float = 60.0,
    engine: str = "auto",
    progress_bar: bool = True,
    echo: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every unit of `sweep` that is not done yet; returns what finished and what failed.

    `backend` is "local" (`workers` processes, default: one per core, each with
    `threads_per_worker` PyTorch threads) or "ray" (tasks of `cpus_per_task` CPUs and
    `gpus_per_task` GPUs on the cluster at `address`, or on a local instance). `engine` is
    `lth run --engine`'s. A training whose worker dies is retried up to `retries` times.
    """
    say = echo or (lambda line: tqdm.write(line, file=sys.stdout))
    check_choice(engine)
    if retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {retries}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be 1 or more, got {workers}")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise ConfigError(f"--threads-per-worker must be 1 or more, got {threads_per_worker}")
    out = sweep.out
    if backend == "local":
        if address is not None or cpus_per_task != 1.0 or gpus_per_task != 0.0:
            raise ConfigError(
                "--address, --cpus-per-task and --gpus-per-task are for --backend ray; "
                "the local backend takes --workers and --threads-per-worker"
            )
        from lth.sweep.local import LocalBackend

        pool: Any = LocalBackend(
            workers or cores(),
            threads_per_worker or DEFAULT_THREADS_PER_WORKER,
        )
    elif backend == "ray":
        from lth.sweep.ray_backend import RayBackend

        out = out.resolve()  # tasks do not run where this command does
        data_dir = Path(data_dir).resolve() if data_dir is not None else None
        pool = RayBackend(
            address=address,
            cpus_per_task=cpus_per_task,
            gpus_per_task=gpus_per_task,
            threads=threads_per_worker,
            max_in_flight=workers,
        )
    else:
        raise ConfigError(f"--backend must be local or ray; got {backend!r}")

    result = SweepResult()
    try:
        if backend == "ray":
            pool.check_root(out)
        else:  # Ray nodes may each read their own data folder: only a local sweep can check it here
            _check_data(sweep, data_dir)
        _open_stores(sweep)
        apart = _apart(sweep, backend, device, gpus_per_task)

        def task(piece: Piece) -> Task:
            return Task(
                config=piece.unit.run.config,
                out=str(out),
                trial=piece.unit.trial,
                level=piece.level,
                variants=piece.variants,
                data_dir=str(data_dir) if data_dir is not None else None,
                device=device,
                threads=pool.task_threads(),
                checkpoint_interval_s=checkpoint_interval_s,
                engine=engine,
            )

        drive(sweep, pool, task, retries, progress_bar, say, result, apart)
    finally:
        pool.close()
    rewrite_summaries(sweep)
    return result


def rewrite_summaries(sweep: Sweep) -> None:
    """Each run's summary.csv (and instability.csv, where it measures some), written once by one
    process from everything stored."""
    from lth.analysis.measure import write_instability
    from lth.lottery import write_summary
    from lth.store import RunStore

    for run in sweep.runs:
        store = RunStore(sweep.out, run.config)
        write_summary(run.config, store)
        write_instability(run.config, store)


def _apart(sweep: Sweep, backend: str, device: str, gpus_per_task: float) -> bool:
    """Whether a level's trainings go to workers one by one (sweep/pieces.py): unless some run may
    train them together as replicas (`lottery.replicas` above 1, or 0 on a GPU: lottery/runner.py)."""
    if backend == "ray":
        gpu = gpus_per_task > 0
    else:
        from lth.lottery import resolve_device

        gpu = device != "cpu" and resolve_device(device).type == "cuda"
    return all(
        run.config.lottery.replicas == 1 or (run.config.lottery.replicas == 0 and not gpu)
        for run in sweep.runs
    )


def _check_data(sweep: Sweep, data_dir: str | Path | None) -> None:
    """A missing or damaged data set stops the sweep before it starts, with the error every unit
    would otherwise fail with."""
    from lth import data as datasets

    for name in sorted({run.config.data.dataset for run in sweep.runs}):
        datasets.check(name, data_dir)


def _open_stores(sweep: Sweep) -> None:
    """Create (or check) every run directory before any unit runs: an unwritable root, or a
    directory holding another config's results, stops the sweep before it starts."""
    from lth.store import RunStore

    for run in sweep.runs:
        RunStore(sweep.out, run.config)


def drive(
    sweep: Sweep,
    pool: Any,
    task: Callable[[Piece], Task],
    retries: int,
    progress_bar: bool,
    say: Callable[[str], None],
    result: SweepResult,
    apart: bool,
) -> None:
    """The sweep's loop: hand `pool` (a backend: `capacity`, `submit`, `wait`) each piece as it
    becomes ready, as `task(piece)`; retry a piece whose worker died up to `retries` times; fill
    `result`. Any pool will do: benchmarks/packing.py drives it on a virtual clock."""
    units = sweep.units  # a unit is known by its index here, a piece by its index in `todo`
    states = [progress.unit_state(unit) for unit in units]
    levels = [state.levels_done for state in states]
    result.done = [unit for unit, state in zip(units, states, strict=True) if state.done]
    todo = [
        (i, piece)
        for i, unit in enumerate(units)
        if not states[i].done
        for piece in pieces(unit, apart=apart)
    ]
    left = list(range(len(todo)))
    running: set[int] = set()
    attempts: dict[int, int] = {}
    failed: set[int] = set()  # units
    begun: set[int] = set()  # units with a piece handed out

    bar = tqdm(
        total=sum(s.levels for s in states),
        initial=sum(levels),
        unit="level",
        desc="sweep",
        disable=None if progress_bar else True,
        dynamic_ncols=True,
        smoothing=0.1,
    )

    def show() -> None:
        units_left = len({todo[j][0] for j in left} | {todo[j][0] for j in running})
        bar.set_postfix_str(
            f"units {len(result.done)} done · {len(result.failed)} failed · {units_left} to finish; "
            f"{len(running)} trainings running",
            refresh=True,
        )

    def look(i: int) -> None:
        now = progress.unit_state(units[i]).levels_done
        if now != levels[i]:
            bar.update(now - levels[i])
            levels[i] = now

    def fail(i: int, error: str, detail: str, tries: int) -> None:
        nonlocal left
        failed.add(i)
        left = [j for j in left if todo[j][0] != i]  # its running pieces finish, unwatched
        result.failed.append((units[i], error))
        progress.record_failure(units[i], error, detail, tries)
        bar.total -= states[i].levels - levels[i]
        say(f"failed: {units[i].name}: {error}")

    with bar:
        while left or running:
            # Ready pieces in `order` (stable: then in unit order): see sweep/pieces.py.
            free = pool.capacity - len(running)
            startable = [j for j in left if ready(todo[j][1])] if free > 0 else []
            for j in sorted(startable, key=lambda j: order(todo[j][1]))[:free]:
                i, piece = todo[j]
                if i not in begun:
                    progress.clear_failure(units[i])
                    begun.add(i)
                attempts[j] = attempts.get(j, 0) + 1
                pool.submit(j, task(piece))
                running.add(j)
                left.remove(j)
            if left and not running:  # nothing runs and nothing can start: a level is incomplete
                for i in sorted({todo[j][0] for j in left}):
                    level = min(todo[j][1].level for j in left if todo[j][0] == i) - 1
                    fail(i, f"level {level} is incomplete after its trainings ran (a bug in lth)", "", 1)
                break
            show()
            for j, outcome in pool.wait(POLL_S):
                i, piece = todo[j]
                running.discard(j)
                look(i)
                if i in failed:
                    continue
                if outcome.ok:
                    if not any(todo[k][0] == i for k in [*left, *running]):
                        result.done.append(units[i])
                elif outcome.died and attempts[j] <= retries:
                    say(
                        f"{piece.name}: {outcome.error}; retrying from its stored progress "
                        f"(attempt {attempts[j] + 1} of {retries + 1})"
                    )
                    left.insert(0, j)
                else:
                    error = outcome.error or "failed"
                    if outcome.died:
                        error += f" ({attempts[j]} times)"
                    fail(i, error, outcome.detail, attempts[j])
            for i in {todo[j][0] for j in running}:
                look(i)
        show()
    result.ran = len(begun)
