"""Instability against the rewind iteration k (`lth instability`; Frankle et al., ICML 2020, the
central figure): for each trial, k and chosen level, two copies start from the level's mask on
θk, the trial's dense weights at iteration k, and train from k to the end with different noise.

Level 0 is the dense network; a pruned level uses the mask its lottery run stored (found with the
run's own rewind step, as `lth run` found it; the paper finds a mask per k, which is one lottery
run per k: `--set lottery.rewind_step=...`). θk is the dense training's weights after its first k
iterations: trained again from θ0 for k iterations with the trial's seed, which repeats the dense
level's training exactly, and stored; being short, it is not checkpointed. A start point that is
a training of the lottery run (the dense level at k = 0, the ticket at the run's own k) is
measured in that level's directory, as `lottery.instability` would measure it; the others in
`instability/trial_T/level_LL/k_K/` (layout.py). Every measurement is resumable (measure.py), and
rewind.csv keeps the rows of earlier sweeps over other k or levels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from lth import layout
from lth.analysis import measure
from lth.analysis.instability import Weights
from lth.errors import ConfigError, StoreError
from lth.lottery import Experiment
from lth.lottery.variants import TICKET
from lth.models import initialize
from lth.pruning import Mask
from lth.store import read_tensors, write_csv, write_tensors
from lth.training import train

# What names a row of rewind.csv: a start point (its variant is always the ticket).
KEY = ("trial", "level", "rewind_iteration")


def check_rewinds(rewinds: Sequence[int], total: int) -> list[int]:
    """The rewind iterations, sorted and unique, each inside the training of `total` iterations."""
    if not rewinds:
        raise ConfigError("--rewind needs at least one iteration, e.g. --rewind 0,100,500,2000")
    for k in rewinds:
        if not 0 <= k < total:
            raise ConfigError(
                f"rewind iteration {k} is outside the training (0 to {total - 1} iterations); "
                "give rewind iterations below training.steps"
            )
    return sorted(set(rewinds))


def check_levels(levels: Sequence[int]) -> list[int]:
    if not levels or any(level < 0 for level in levels):
        raise ConfigError(f"--levels takes levels 0 or more, e.g. 0,3,7; got {list(levels)}")
    return sorted(set(levels))


def sweep(
    experiment: Experiment, rewinds: Sequence[int], levels: Sequence[int], trials: Sequence[int]
) -> list[dict[str, Any]]:
    """Measure every (trial, level, k) of an experiment whose levels through max(levels) are
    trained; returns the rows measured now, and writes instability/rewind.csv."""
    config, store = experiment.config, experiment.store
    total = experiment.total
    planned = sum(k + sum(2 * (total - k) for _ in levels) for k in rewinds) * len(trials)
    rows = []
    with tqdm(
        total=planned,
        disable=None if experiment.runtime.progress else True,
        unit="it",
        dynamic_ncols=True,
        smoothing=0.05,
    ) as bar:
        for trial in trials:
            seed = config.lottery.seed + trial
            for k in rewinds:
                bar.set_description(f"trial {trial + 1}/{config.lottery.trials} θk at k={k}")
                theta = _theta(experiment, trial, seed, k, bar)
                bar.set_description(f"trial {trial + 1}/{config.lottery.trials} levels k={k}")
                expected = bar.n + 2 * (total - k) * len(levels)
                rows += _measure(experiment, trial, seed, levels, k, theta, bar)
                bar.update(expected - bar.n)  # work stored before is counted as done
                write_rows(store.path, rows)
    return rows


def _theta(experiment: Experiment, trial: int, seed: int, k: int, bar: tqdm) -> Weights:
    """θk of the trial: θ0 for k = 0, else the dense training's weights after k iterations."""
    theta0 = initialize(experiment.make_model(), seed).state_dict()
    if k == 0:
        return theta0
    path = layout.theta_file(experiment.store.path, trial, k)
    if path.exists():
        bar.update(k)
        return read_tensors(path)
    model = experiment.make_model().to(experiment.runtime.device)
    model.load_state_dict(theta0)
    # The dense level's own training, stopped after k iterations: its schedule (warmup,
    # milestones) and batches depend on the iteration alone, so they are the dense level's.
    first_k = dataclasses.replace(experiment.config.training, steps=f"{k}it")
    train(
        model,
        experiment.data,
        first_k,
        seed=seed,
        mask=experiment.plan.dense_mask(model),
        augment=experiment.config.data.augment,
        on_progress=bar.update,
    )
    weights = model.state_dict()
    write_tensors(path, weights)
    return read_tensors(path)  # as stored, so a resumed sweep starts from the same tensors


def _measure(
    experiment: Experiment,
    trial: int,
    seed: int,
    levels: Sequence[int],
    k: int,
    theta: Weights,
    bar: tqdm,
) -> list[dict[str, Any]]:
    """The levels' start points at k, measured together (their copies as replicas where
    `lottery.replicas` allows)."""
    points = [_point(experiment, trial, seed, level, k, theta) for level in levels]
    return [measure.row(record) for record in experiment.measure_points(points, bar.update)]


def _point(
    experiment: Experiment, trial: int, seed: int, level: int, k: int, theta: Weights
) -> tuple[Path, measure.StartPoint]:
    """The level's mask on θk, from iteration k, and the folder it is measured in."""
    store = experiment.store
    out = store.level(trial, TICKET, level)
    mask = experiment.plan.dense_mask(experiment.make_model()) if level == 0 else out.load_mask()
    weights = _masked(theta, mask)
    # A training of the lottery run is this start point's first copy: measure it where it is.
    same = measure.same_start(out, weights, k)
    folder = out.path if same else layout.rewind_point_dir(store.path, trial, level, k)
    point = measure.StartPoint(
        trial=trial,
        seed=seed,
        variant=TICKET,
        level=level,
        start=k,
        mask=mask,
        weights=lambda: weights,
        training=experiment.config.training,
        percent_remaining=100 * mask.fraction_remaining(),
    )
    return folder, point


def _masked(weights: Weights, mask: Mask) -> Weights:
    """m ⊙ θ: the pruned weights of `weights` zeroed, everything else as it is."""
    return {name: w * mask[name] if name in mask else w.clone() for name, w in weights.items()}


def write_rows(run: Path, rows: list[dict[str, Any]]) -> None:
    """rewind.csv: the rows of this sweep, and those of earlier sweeps over other points."""
    path = run / layout.INSTABILITY_DIR / layout.REWIND_CSV
    table = pd.DataFrame(rows, columns=layout.INSTABILITY_COLUMNS)
    if path.exists():
        earlier = pd.read_csv(path)
        table = pd.concat([earlier, table]).drop_duplicates(subset=list(KEY), keep="last")
    table = table.sort_values(list(KEY)).reset_index(drop=True)
    write_csv(path, table.to_dict(orient="records"), layout.INSTABILITY_COLUMNS)


def read(run: Path) -> pd.DataFrame | None:
    """A run's rewind.csv, or None if it has none."""
    path = run / layout.INSTABILITY_DIR / layout.REWIND_CSV
    return pd.read_csv(path) if path.exists() else None


def measured_folders(run: Path, trial: int) -> dict[tuple[int, int], Path]:
    """The folder of each start point of `trial` that rewind.csv lists, by (level, k): the
    level's, where its measurement starts at k (a training of the lottery run: see `_point`),
    else its own under instability/ (which may lack instability.json: the caller says so)."""
    table = read(run)
    if table is None:
        return {}
    points = table[table.trial == trial][["level", "rewind_iteration"]].itertuples(index=False)
    folders = {}
    for level, k in points:
        in_run = layout.level_dir(run, trial, TICKET, int(level))
        record = measure.stored(in_run)
        same = record is not None and record["rewind_iteration"] == k
        folders[int(level), int(k)] = (
            in_run if same else layout.rewind_point_dir(run, trial, int(level), int(k))
        )
    return folders


def rows_from(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """rewind.csv's rows of the start points measured in `folders`, from their instability.json."""
    rows = []
    for folder in folders:
        record = measure.stored(folder)
        if record is None:
            raise StoreError(f"{folder / layout.INSTABILITY} is missing; rewind.csv lists its measurement")
        rows.append(measure.row(record))
    return rows
