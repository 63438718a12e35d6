"""A stored, resumable instability measurement: one start point, its two trained copies and the
error path between them, in one folder (a level's directory, or one of `lth instability`'s).

The folder's `final.safetensors` is the first copy: in a level's directory, the level's own
training, which is one copy already, so a lottery run pays for one more training per
measurement; elsewhere it is trained here. `copy.safetensors` is the second, trained with the
noise seed `instability.noise_seed` gives. Each training saves its progress in a checkpoint
(`store.FileCheckpoint`), so a process killed anywhere continues where it stopped and ends with
the numbers of an unbroken one; `instability.json`, written last, marks the measurement done.
Its path is evaluated again (no training) when asked for with other settings (`PathSettings`).

`measure_all` measures several start points; where `lottery.replicas` allows (on a GPU by
default), the copies they still lack train together as replicas, a group per start iteration, up
to that many at a time, checkpointed as one (`copies-*.pt` in the first member's folder) so an
interrupted group resumes as the same group.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
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
from lth.store import FileCheckpoint, GroupCheckpoint, LevelDir, RunStore, damaged, write_atomic, write_csv
from lth.training.replicas import train_replicas


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
    replicas: int = 1,
) -> dict[str, Any]:
    """Measure `point` in `folder`, or read back what is stored there; `iterations` is the
    training's budget, recorded, and so is `replicas`, the size of the group its copies trained
    in (1: one at a time). Returns instability.json's contents."""
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
        "replicas": replicas,
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


@dataclass(frozen=True)
class _Copy:
    """A copy a measurement still lacks: `name` ("final" or layout.COPY) in `files`."""

    files: LevelDir
    name: str
    point: StartPoint
    seed: int

    def id(self, base: Path) -> str:
        """The copy's name relative to `base`, a group checkpoint's folder: the run moves whole."""
        return f"{os.path.relpath(self.files.path, base)}/{self.name}"


def measure_all(
    points: Sequence[tuple[Path, StartPoint]],
    *,
    make_model: Callable[[], nn.Module],
    data: Splits,
    augment: bool,
    settings: PathSettings,
    iterations: int,
    replicas: int = 1,
    checkpoint_interval_s: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """`measure_in` for each (folder, point), in order; with `replicas` above 1, the copies still
    to train first train together, grouped by start iteration and training, up to `replicas` a
    group. A copy that began alone (its own checkpoint exists) finishes alone. `replicas` is the
    experiment's (`Experiment.replicas`), which is 1 for a model `train_replicas` cannot take."""
    together: dict[Path, int] = {}
    if replicas > 1:
        todo = [(f, p) for f, p in points if stored(f, settings) is None]
        _write_trained({f for f, _ in todo})
        for group in _groups(_missing(todo), replicas):
            _train_group(group, make_model, data, augment, checkpoint_interval_s, on_progress)
            for copy in group:
                together[copy.files.path] = len(group)
    return [
        measure_in(
            folder,
            point,
            make_model=make_model,
            data=data,
            augment=augment,
            settings=settings,
            iterations=iterations,
            checkpoint_interval_s=checkpoint_interval_s,
            on_progress=on_progress,
            replicas=together.get(folder, 1),
        )
        for folder, point in points
    ]


def _missing(todo: list[tuple[Path, StartPoint]]) -> list[_Copy]:
    """The copies of these measurements that are neither stored nor under way alone."""
    copies = []
    for folder, point in todo:
        files = LevelDir(folder)
        names = (("final", layout.CHECKPOINT), (layout.COPY, layout.COPY_CHECKPOINT))
        for (name, alone), seed in zip(names, point.seeds, strict=True):
            if not (folder / layout.tensors(name)).exists() and not (folder / alone).exists():
                copies.append(_Copy(files, name, point, seed))
    return copies


def _groups(copies: list[_Copy], size: int) -> list[list[_Copy]]:
    """Groups that stopped part-way first, as they were; then the rest in order, by start
    iteration and training, `size` at most. Single copies are left to `measure_in`."""
    groups, waiting = [], {_key(c.files.path / c.name): c for c in copies}
    for folder in dict.fromkeys(c.files.path for c in copies):
        for path in sorted(folder.glob(f"{layout.COPIES_CHECKPOINT}-*.pt")):
            members = [_key(folder / m) for m in FileCheckpoint(path, 0.0).load()["members"]]
            if all(m in waiting for m in members):
                groups.append([waiting.pop(m) for m in members])
    by_start: dict[tuple[int, str], list[_Copy]] = {}
    for copy in waiting.values():
        by_start.setdefault((copy.point.start, repr(copy.point.training)), []).append(copy)
    for same in by_start.values():
        groups += [same[i : i + size] for i in range(0, len(same), size)]
    return [g for g in groups if len(g) > 1]


def _key(path: Path) -> str:
    return os.path.normpath(path)


def _train_group(
    group: list[_Copy],
    make_model: Callable[[], nn.Module],
    data: Splits,
    augment: bool,
    interval_s: float,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Train `group` as replicas and store each copy's weights (then drop the group checkpoint)."""
    base = group[0].files.path
    members = [c.id(base) for c in group]
    digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:16]
    checkpoint = GroupCheckpoint(base / f"{layout.COPIES_CHECKPOINT}-{digest}.pt", interval_s, members)
    models = []
    for copy in group:
        model = make_model().to(data.train.x.device)
        model.load_state_dict(copy.point.weights())
        models.append(model)
    first = group[0].point
    train_replicas(
        models,
        data,
        first.training,
        seeds=[c.seed for c in group],
        masks=[c.point.mask for c in group],
        start=first.start,
        augment=augment,
        checkpoint=checkpoint,
        on_progress=on_progress,
    )
    # Every copy is in the checkpoint before any is written: a process stopped in between
    # writes the rest from there (`_write_trained`) rather than training them again.
    checkpoint.save({"weights": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in models]})
    _write_trained({base})


def _write_trained(folders: set[Path]) -> None:
    """Store the copies of every group in `folders` that finished training, and drop its checkpoint."""
    for folder in folders:
        for path in sorted(folder.glob(f"{layout.COPIES_CHECKPOINT}-*.pt")):
            saved = FileCheckpoint(path, 0.0).load()
            if "weights" not in saved:
                continue
            for member, weights in zip(saved["members"], saved["weights"], strict=True):
                target = Path(_key(folder / member))
                if not (target.parent / layout.tensors(target.name)).exists():
                    LevelDir(target.parent).save_tensors(target.name, weights)
            path.unlink()


def row(record: dict[str, Any], variant: str | None = None) -> dict[str, Any]:
    """A measurement as a row of instability.csv or rewind.csv (`variant`: the name to list it
    under, where that differs from the training's own, as the dense level's does)."""
    return {c: record[c] for c in layout.INSTABILITY_COLUMNS} | ({"variant": variant} if variant else {})


def instability_rows(config: Config, store: RunStore) -> list[dict[str, Any]]:
    """instability.csv's rows: the stored measurements of the run's levels, ordered as
    summary.csv (the dense level listed under every variant, as there)."""
    rows = []
    lot = config.lottery
    for trial in range(lot.trials):
        for variant in lot.variants:
            for level in range(lot.levels + 1):
                record = stored(store.level(trial, variant, level).path)
                if record is not None:
                    rows.append(row(record, variant))
    return rows


def write_instability(config: Config, store: RunStore) -> list[dict[str, Any]]:
    """instability.csv from `instability_rows`; a run with none writes no file."""
    rows = instability_rows(config, store)
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
