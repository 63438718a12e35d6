"""A stored, resumable instability measurement: one start point, its two trained copies and the
error path between them, in one folder (a level's directory, or one of `lth instability`'s).

The folder's `final.safetensors` is the first copy: in a level's directory, the level's own
training, which is one copy already, so a lottery run pays for one more training per
measurement; elsewhere it is trained here. `copy.safetensors` is the second, trained with the
noise seed `instability.noise_seed` gives. Each training saves its progress in a checkpoint
(`store.FileCheckpoint`), so a process killed anywhere continues where it stopped and ends with
the numbers of an unbroken one; `instability.json`, written last, marks the measurement done.
Its path is evaluated again (no training) when asked for with other settings (`PathSettings`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lth import layout
from lth.analysis.instability import PathSettings, Weights, error_path, noise_seed, train_copy
from lth.config import Config, TrainingConfig
from lth.data import Splits
from lth.pruning import Mask
from lth.store import FileCheckpoint, LevelDir, RunStore, damaged, write_atomic, write_csv


@dataclass(frozen=True)
class StartPoint:
    """Where both copies start: a (trial, variant, level)'s weights under its mask at iteration
    `start`, trained with `training`. The first copy's seed is the trial's, as every training of
    the trial has; the second's is derived from it and the point."""

    trial: int
    seed: int  # the trial's
    variant: str
    level: int
    start: int  # the iteration the copies start at: k
    mask: Mask
    weights: Callable[[], Weights]  # the start weights, mask applied; called only if a copy trains
    training: TrainingConfig
    percent_remaining: float

    @property
    def seeds(self) -> tuple[int, int]:
        return self.seed, noise_seed(self.seed, self.variant, self.level, self.start)


def stored(folder: Path, settings: PathSettings | None = None) -> dict[str, Any] | None:
    """The folder's measurement, or None if it has none (or, given `settings`, none made with them)."""
    path = folder / layout.INSTABILITY
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise damaged(path, str(err)) from None
    if settings is not None and record.get("settings") != settings.to_dict():
        return None
    return record


def measure_in(
    folder: Path,
    point: StartPoint,
    *,
    make_model: Callable[[], nn.Module],
    data: Splits,
    augment: bool,
    settings: PathSettings,
    iterations: int,
    checkpoint_interval_s: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Measure `point` in `folder`, or read back what is stored there; `iterations` is the
    training's budget, recorded. Returns instability.json's contents."""
    done = stored(folder, settings)
    if done is not None:
        return done
    began = time.perf_counter()
    files = LevelDir(folder)
    copies = [
        _copy(
            files,
            name,
            checkpoint,
            point,
            seed,
            make_model,
            data,
            augment,
            checkpoint_interval_s,
            on_progress,
        )
        for name, checkpoint, seed in zip(
            ("final", layout.COPY), (layout.CHECKPOINT, layout.COPY_CHECKPOINT), point.seeds, strict=True
        )
    ]
    path = error_path(make_model, *copies, point.mask, data, settings, point.training.batch_size)
    record = {
        "trial": point.trial,
        "seed": point.seed,
        "variant": point.variant,
        "level": point.level,
        "percent_remaining": point.percent_remaining,
        "rewind_iteration": point.start,
        "iterations": iterations,
        "seeds": list(point.seeds),
        "settings": settings.to_dict(),
        **path.to_dict(),
        "wall_time_s": time.perf_counter() - began,  # of this measurement's work, not of reading back
    }
    write_atomic(folder / layout.INSTABILITY, json.dumps(record, indent=2).encode())
    return record


def _copy(
    files: LevelDir,
    name: str,
    checkpoint_name: str,
    point: StartPoint,
    seed: int,
    make_model: Callable[[], nn.Module],
    data: Splits,
    augment: bool,
    interval_s: float,
    on_progress: Callable[[int], None] | None,
) -> Weights:
    """A copy's trained weights: stored, or trained now (resuming its checkpoint) and stored."""
    if (files.path / layout.tensors(name)).exists():
        return {k: v.to(data.train.x.device) for k, v in files.load_tensors(name).items()}
    checkpoint = FileCheckpoint(files.path / checkpoint_name, interval_s)
    weights = train_copy(
        make_model,
        point.weights(),
        point.mask,
        data,
        point.training,
        start=point.start,
        seed=seed,
        augment=augment,
        checkpoint=checkpoint,
        on_progress=on_progress,
    )
    files.save_tensors(name, weights)
    checkpoint.remove()  # after the weights: a process stopped in between trains nothing again
    return weights


def row(record: dict[str, Any], variant: str | None = None) -> dict[str, Any]:
    """A measurement as a row of instability.csv or rewind.csv (`variant`: the name to list it
    under, where that differs from the training's own, as the dense level's does)."""
    return {c: record[c] for c in layout.INSTABILITY_COLUMNS} | ({"variant": variant} if variant else {})


def write_instability(config: Config, store: RunStore) -> list[dict[str, Any]]:
    """instability.csv from the stored measurements of the run's levels, ordered as summary.csv
    (the dense level listed under every variant, as there); a run with none writes no file."""
    rows = []
    lot = config.lottery
    for trial in range(lot.trials):
        for variant in lot.variants:
            for level in range(lot.levels + 1):
                record = stored(store.level(trial, variant, level).path)
                if record is not None:
                    rows.append(row(record, variant))
    if rows:
        write_csv(store.path / layout.INSTABILITY_CSV, rows, layout.INSTABILITY_COLUMNS)
    return rows


def start_point(
    store: RunStore, trial: int, seed: int, variant: str, level: int, training: TrainingConfig, start: int
) -> StartPoint:
    """The start point of a trained level: its stored mask and start weights (init.safetensors,
    mask applied), as the level's own training began from them."""
    out = store.level(trial, variant, level)
    mask = out.load_mask()
    return StartPoint(
        trial=trial,
        seed=seed,
        variant=variant,
        level=level,
        start=start,
        mask=mask,
        weights=lambda: out.load_tensors("init"),
        training=training,
        percent_remaining=100 * mask.fraction_remaining(),
    )


def same_start(out: LevelDir, weights: Weights, start: int) -> bool:
    """Whether the stored level `out` started at iteration `start` from exactly `weights`: then a
    start point with them is that level, and its training is the first copy."""
    if not out.done or out.load_result().get("start_iteration") != start:
        return False
    init = out.load_tensors("init")
    return init.keys() == weights.keys() and all(torch.equal(init[k], weights[k].cpu()) for k in init)
