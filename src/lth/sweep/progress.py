"""What a sweep has done, read from the store: levels finished per unit, failures, time left.

The store is the only record: a unit's level is finished when every training it needs
(`imp`, the controls, and for strategy `continue` the path) has its result.json, and its
instability.json where the config measures that training's instability. A failed
unit also leaves `failed-trial_T.json` in its run directory, removed when the unit runs again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth import layout
from lth.config import Config
from lth.lottery import variants
from lth.store import write_atomic
from lth.sweep.spec import Sweep, Unit


@dataclass(frozen=True)
class UnitState:
    unit: Unit
    levels_done: int
    levels: int  # levels 0 (dense) to L
    trainings_done: int
    trainings: int
    wall_time_s: float  # of its stored trainings (read only when asked for)
    started: bool  # something of it is stored (a finished level or a level under way)
    failure: dict[str, Any] | None  # the record of its last failure, if it has not run since

    @property
    def done(self) -> bool:
        return self.trainings_done == self.trainings

    @property
    def state(self) -> str:
        if self.done:
            return "done"
        if self.failure is not None:
            return "failed"
        return "started" if self.started else "left"


def trainings_by_level(config: Config) -> list[list[tuple[str, int]]]:
    """The (variant, level) trainings each level of a trial needs, as the runner stores them."""
    return [trainings_at(config, level) for level in range(config.lottery.levels + 1)]


def trainings_at(config: Config, level: int) -> list[tuple[str, int]]:
    """The (variant, level) trainings of one level of a trial (level 0: the dense network)."""
    return [(name, level) for name in variants.stored_at(config, level)]


def stored(unit: Unit, variant: str, level: int) -> bool:
    """Whether `unit`'s training (variant, level) has its result stored."""
    return _result(unit.run.path, unit.trial, variant, level).exists()


def training_done(unit: Unit, variant: str, level: int) -> bool:
    """Whether `unit`'s training (variant, level) is stored and, where the config measures its
    instability (`variants.measured_at`), measured. A piece whose worker died between the two is
    run again: its training is skipped, its measurement made."""
    if not stored(unit, variant, level):
        return False
    if variant not in {v.name for v in variants.measured_at(unit.run.config, level)}:
        return True
    return (layout.level_dir(unit.run.path, unit.trial, variant, level) / layout.INSTABILITY).exists()


def _result(path: Path, trial: int, variant: str, level: int) -> Path:
    # `layout`, not `RunStore.level`: opening the store would write the run directory.
    return layout.level_dir(path, trial, variant, level) / layout.RESULT


def unit_state(unit: Unit, *, timings: bool = False) -> UnitState:
    path, trial = unit.run.path, unit.trial
    levels_done = trainings_done = trainings = 0
    wall = 0.0
    complete = True
    for needed in trainings_by_level(unit.run.config):
        finished = [_result(path, trial, v, lv) for v, lv in needed if training_done(unit, v, lv)]
        trainings += len(needed)
        trainings_done += len(finished)
        complete = complete and len(finished) == len(needed)
        levels_done += complete
        if timings:
            wall += sum(_wall_time(f) for f in finished)
    started = layout.trial_dir(path, trial).exists()
    return UnitState(
        unit,
        levels_done,
        len(trainings_by_level(unit.run.config)),
        trainings_done,
        trainings,
        wall,
        started,
        read_failure(unit),
    )


def sweep_states(sweep: Sweep, *, timings: bool = False) -> list[UnitState]:
    return [unit_state(unit, timings=timings) for unit in sweep.units]


# --- failure records -------------------------------------------------------------------------


def failure_path(unit: Unit) -> Path:
    return layout.failure_file(unit.run.path, unit.trial)


def record_failure(unit: Unit, error: str, detail: str, attempts: int) -> None:
    record = {
        "trial": unit.trial,
        "error": error,
        "detail": detail,
        "attempts": attempts,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_atomic(failure_path(unit), json.dumps(record, indent=2).encode())


def clear_failure(unit: Unit) -> None:
    failure_path(unit).unlink(missing_ok=True)


def read_failure(unit: Unit) -> dict[str, Any] | None:
    try:
        return json.loads(failure_path(unit).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"error": "(its failure record is unreadable)"}


# --- telling ---------------------------------------------------------------------------------


def counts(states: list[UnitState]) -> dict[str, int]:
    tally = {"done": 0, "started": 0, "failed": 0, "left": 0}
    for s in states:
        tally[s.state] += 1
    return tally


def time_left_s(states: list[UnitState], parallel: int) -> float | None:
    """A rough estimate: the trainings still to do at the mean stored time of a training of the
    same run (or of the sweep), spread over `parallel` workers. None before any has finished."""
    per_run: dict[Path, list[float]] = {}
    for s in states:
        entry = per_run.setdefault(s.unit.run.path, [0.0, 0])
        entry[0] += s.wall_time_s
        entry[1] += s.trainings_done
    total_wall = sum(w for w, _ in per_run.values())
    total_done = sum(n for _, n in per_run.values())
    if total_done == 0:
        return None
    overall = total_wall / total_done
    seconds = 0.0
    for s in states:
        if s.done or s.failure is not None:
            continue
        wall, done = per_run[s.unit.run.path]
        seconds += (s.trainings - s.trainings_done) * (wall / done if done else overall)
    return seconds / max(parallel, 1)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_tally(states: list[UnitState]) -> str:
    tally = counts(states)
    levels = sum(s.levels_done for s in states), sum(s.levels for s in states)
    return (
        f"{len(states)} units: {tally['done']} done, {tally['started']} started, {tally['failed']} failed, "
        f"{tally['left']} not started; {levels[0]}/{levels[1]} levels"
    )


def format_runs(sweep: Sweep, states: list[UnitState]) -> list[str]:
    """One line per run: its directory, its grid values, and levels done per trial."""
    by_run: dict[Path, list[UnitState]] = {}
    for s in states:
        by_run.setdefault(s.unit.run.path, []).append(s)
    names = [str(run.path) for run in sweep.runs]
    labels = [run.label for run in sweep.runs]
    width_name = max(map(len, ["RUN DIRECTORY", *names]))
    width_label = max(map(len, ["SETTINGS", *labels]))
    lines = [
        f"{'RUN DIRECTORY':<{width_name}}  {'SETTINGS':<{width_label}}  LEVELS DONE PER TRIAL (! failed)"
    ]
    for run, name, label in zip(sweep.runs, names, labels, strict=True):
        cells = [_cell(s) for s in by_run.get(run.path, [])]
        lines.append(f"{name:<{width_name}}  {label:<{width_label}}  {' '.join(cells)}")
    return lines


def _cell(state: UnitState) -> str:
    return f"{state.levels_done}/{state.levels}" + ("!" if state.state == "failed" else "")


def _wall_time(path: Path) -> float:
    try:
        return float(json.loads(path.read_text()).get("wall_time_s", 0.0))
    except (OSError, ValueError, TypeError):
        return 0.0
