"""Lottery experiments: per trial, level 0 dense → [train → prune → rewind] × levels, with the
`reinit` and `random` controls at every level.

Every level is idempotent: a level whose results are stored is read back, not recomputed, and
a level under way continues from its checkpoint. What a level reports is its ticket: the
level's mask applied to θ0 (or θk), trained for the full schedule. The strategies differ only
in where the next mask comes from: the ticket's trained weights (`reset`) or a path of
continued training that never rewinds (`continue`).

Levels run in order, each across all the chosen trials: a level's trainings (each trial's
ticket, controls and continued path) depend only on the levels before it, so where
`lottery.replicas` allows they train together as one vectorised model (`training.replicas`).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lth import layout
from lth.analysis import measure
from lth.analysis.instability import PathSettings
from lth.config import Config, TrainingConfig
from lth.data import Split, Splits
from lth.environment import engine, signature
from lth.errors import ConfigError, LthError
from lth.lottery import variants
from lth.lottery.schedules import SCHEDULES
from lth.models import initialize
from lth.pruning import Mask, PruningPlan, ScoreContext, criteria
from lth.pruning.criteria import Scores
from lth.seeds import derive_seed
from lth.steps import Step
from lth.store import LevelDir, RunStore
from lth.training import HISTORY_COLUMNS, TrainResult, iterations_per_epoch, train
from lth.training.engines import ONE_MODEL, describe, engine_for, engine_name
from lth.training.loop import TrainingSteps, make_schedule
from lth.training.replicas import replicable, train_replicas


@dataclass
class Runtime:
    """How to run (not what to compute): never part of the config hash."""

    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    checkpoint_interval_s: float = 60.0  # how often a level under way saves its progress
    engine: str = "auto"  # which engine trains one model (training/engines.py); same numbers
    # Where to write TensorBoard streams of finished levels (lottery/tensorboard.py), by default
    # $LTH_TENSORBOARD, so sweep workers inherit it; None: none.
    tensorboard: str | None = dataclasses.field(default_factory=lambda: _tensorboard().from_env())

    def __post_init__(self) -> None:
        if self.tensorboard is not None:
            _tensorboard().require()  # a missing package is one line before anything trains


def _tensorboard():
    from lth.lottery import tensorboard

    return tensorboard


# Replicas per vectorised group on a GPU when `lottery.replicas` is 0 (auto). On a CPU auto
# trains one model at a time: replicas measured ≤ 1.12× faster for LeNet and slower for Conv-2 on
# 2 cores (benchmarks/RESULTS.md), and one model at a time gives `lth run` and `lth sweep` (which
# groups only within a trial) the same numbers to the last digit.
AUTO_REPLICAS_CUDA = 64


@dataclass
class Unit:
    """One training of a level: a (trial, variant, level), its start weights (before the mask),
    mask and start iteration."""

    trial: int
    seed: int
    variant: str
    level: int
    weights: Callable[[], dict[str, torch.Tensor]]  # called only when the unit is trained
    mask: Mask
    start: int
    training: TrainingConfig  # the configured training, or fine-tuning's at its final rate
    capture_at: int | None = None  # θk for rewinding, captured from the dense level

    @property
    def id(self) -> str:
        return layout.unit_id(self.trial, self.variant, self.level)


@dataclass
class Outcome:
    """What a unit's training produced, before it is written to its level directory."""

    weights: dict[str, torch.Tensor]
    result: TrainResult
    wall_time_s: float
    replicas: int
    trainer: str = "replicas"  # the engine's name (training/engines.py: a one-model or replica engine)
    # The engine that computed it, where the chosen one left this mask to another (`engine_for`):
    # the results' signature is the choice's, as running that choice again gives these numbers.
    computed_by: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """From `dataclasses.asdict`: plain dicts, which checkpoints load without unpickling code."""
        return cls(**(data | {"result": TrainResult(**data["result"])}))


def resolve_device(name: str) -> torch.device:
    """`auto` (a CUDA GPU if there is one), `cpu` or `cuda[:N]`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LthError("--device cuda was asked for, but no CUDA GPU is available; use cpu or auto")
        # Same config and seed → same numbers, and a resumed run equal to an unbroken one, also
        # on a GPU: cuDNN must not pick kernels by timing or use non-deterministic ones.
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return device


def splits_to(data: Splits, device: torch.device) -> Splits:
    def move(split: Split) -> Split:
        return dataclasses.replace(split, x=split.x.to(device), y=split.y.to(device))

    return dataclasses.replace(data, train=move(data.train), val=move(data.val), test=move(data.test))


@dataclass(frozen=True)
class LevelIterations:
    """A config's step strings resolved on its data: what `open_experiment` checks before the run
    directory is written is what the experiment then runs with, resolved once."""

    per_epoch: int  # iterations per epoch of the training split at the configured batch size
    total: int  # iterations of a level's training
    rewind: int  # the rewind iteration k


def level_iterations(config: Config, data: Splits) -> LevelIterations:
    """`config`'s training and rewind steps in iterations on `data`; a rewind step that is not
    inside the training is refused."""
    per_epoch = iterations_per_epoch(data, config.training.batch_size)
    total = TrainingSteps.of(config.training, per_epoch).total
    rewind = Step.parse(config.lottery.rewind_step).iterations(per_epoch)
    if rewind >= total:
        raise ConfigError(
            f"lottery.rewind_step ({rewind} iterations) must be less than training.steps ({total} iterations)"
        )
    return LevelIterations(per_epoch, total, rewind)


class Experiment:
    """One config's lottery experiment over all its trials, stored in `store`."""

    def __init__(
        self,
        config: Config,
        data: Splits,
        make_model: Callable[[], nn.Module],
        store: RunStore,
        runtime: Runtime | None = None,
        iterations: LevelIterations | None = None,
    ):
        """`iterations`: `level_iterations(config, data)`, where the caller has resolved it already."""
        self.config, self.store = config, store
        self.runtime = runtime or Runtime()
        self.data = splits_to(data, self.runtime.device)
        self.make_model = make_model
        iterations = iterations or level_iterations(config, data)
        self.total, self.rewind = iterations.total, iterations.rewind
        # Fine-tuning's training: the configured one held at the schedule's last learning rate.
        last_lr = make_schedule(config.training, iterations.per_epoch)(self.total - 1)
        self._final_lr = dataclasses.replace(config.training, lr=last_lr, warmup="0it", lr_milestones=[])
        model = make_model()
        self.plan = PruningPlan.for_model(model, config.pruning)
        self.replicas = self._replicas(model)
        self._trainer = engine_name(self.runtime.engine, model)  # a clear error before any training
        self._bar: tqdm | None = None

    # --- driving -------------------------------------------------------------------------------

    def run(self, trials: Iterable[int] | None = None, last_level: int | None = None) -> list[dict[str, Any]]:
        """Run (or finish) every trial, or only `trials`, through level `last_level` (default:
        every level); returns the summary rows of every stored trial, also written to summary.csv.

        Trials share nothing but summary.csv, so processes may run different trials of one
        config in one run directory at once (`lth sweep` does). Each rewrites summary.csv
        atomically from what is stored when it finishes a level, so the file is always whole,
        but the last writer may not have seen another's last level: whoever runs trials
        concurrently calls `write_summary` once they have all finished.
        """
        lot = self.config.lottery
        chosen = list(range(lot.trials)) if trials is None else list(trials)
        if any(not 0 <= t < lot.trials for t in chosen):
            raise ConfigError(f"trials {chosen} are not all among the config's 0..{lot.trials - 1}")
        self._chosen, self._noticed = chosen, False
        last = lot.levels if last_level is None else min(last_level, lot.levels)
        with tqdm(
            total=self._planned_iterations(len(chosen), last),
            disable=None if self.runtime.progress else True,
            unit="it",
            dynamic_ncols=True,
            smoothing=0.05,
        ) as self._bar:
            # Level by level across the chosen trials: a level's trainings (every trial's ticket
            # and controls) depend only on the level before, so they can train together.
            for level in range(last + 1):
                self._run_units([unit for trial in chosen for unit in self._units(trial, level)])
        self._bar = None
        return self.write_summary()

    def run_trainings(self, trial: int, level: int, names: Iterable[str]) -> None:
        """Train the trainings `names` (variants) of one level of one trial, with their
        instability where measured, once the trainings it reads are stored (the chain of tickets
        before it: `variants.read_by_next`): a sweep's piece of work (sweep/pieces.py), so that
        one trial's trainings can run in several processes."""
        lot, names = self.config.lottery, set(names)
        if not (0 <= trial < lot.trials and 0 <= level <= lot.levels):
            raise ConfigError(
                f"the config has no trial {trial}, level {level} (trials {lot.trials}, levels {lot.levels})"
            )
        trained = variants.stored_at(self.config, level)
        if not names <= set(trained):
            raise ConfigError(
                f"level {level} trains {', '.join(trained)}; not {', '.join(sorted(names - set(trained)))}"
            )
        self._chosen, self._noticed = [trial], False
        self._run_units(self._units(trial, level, names))

    def _run_units(self, units: list[Unit]) -> None:
        """Train one level's units (of one or several trials), then what is written once they are."""
        self._train_level(units)
        self._write_tensorboard(units)
        self._measure_instability(units)

    def _planned_iterations(self, trials: int, last: int) -> int:
        per_trial = self.total + sum(
            self.total - (self.rewind if v.from_rewind else 0)
            for level in range(1, last + 1)
            for v in variants.trained_at(self.config, level)
        )
        measured = sum(self.total - start for level in range(last + 1) for _, start in self._measured(level))
        return trials * (per_trial + measured)

    # --- what a level trains ---------------------------------------------------------------------

    def _units(self, trial: int, level: int, only: set[str] | None = None) -> list[Unit]:
        """Level `level` of one trial: every training it needs (or those of the variants `only`),
        given the levels before it, as the table of variants (`lottery/variants.py`) declares them."""
        seed = self.config.lottery.seed + trial

        def theta0() -> dict[str, torch.Tensor]:
            return initialize(self.make_model(), seed).state_dict()

        if level == 0:
            if only is not None and variants.TICKET not in only:
                return []
            dense = self.plan.dense_mask(self.make_model())
            return [
                Unit(
                    trial,
                    seed,
                    variants.TICKET,
                    0,
                    theta0,
                    dense,
                    0,
                    self.config.training,
                    capture_at=self.rewind or None,
                )
            ]

        def theta_k() -> dict[str, torch.Tensor]:
            return (
                self.store.level(trial, variants.TICKET, 0).load_tensors("rewind")
                if self.rewind
                else theta0()
            )

        mask = self._next_mask(trial, level)
        retrain = variants.RETRAIN[self.config.lottery.retrain]
        units = []
        for v in variants.trained_at(self.config, level):
            if only is not None and v.name not in only:
                continue
            ctx = variants.LevelContext(
                trial=trial,
                seed=seed,
                level=level,
                mask=mask,
                own_seed=derive_seed(seed, v.salt, level),
                theta0=theta0,
                theta_k=theta_k,
                fresh=lambda s: initialize(self.make_model(), s).state_dict(),
                trained=functools.partial(self._trained, trial, level, v.name),
                retrain=retrain,
                scores=functools.partial(self._level_scores, trial, level),
            )
            start = self.rewind if v.from_rewind else 0
            weights = functools.partial(v.weights, ctx)
            training = self._final_lr if v.retrains and retrain.final_lr else self.config.training
            units.append(Unit(trial, seed, v.name, level, weights, v.mask(ctx), start, training))
        return units

    def _trained(self, trial: int, level: int, reader: str, name: str) -> dict[str, torch.Tensor]:
        """`name`'s final weights at the level before `level`, for variant `reader`'s rules: only
        the trainings that level's successor waits for (`variants.read_by_next`), as the sweep
        may train `level` while the level before's others are still running."""
        readable = variants.read_by_next(self.config, level - 1)
        if level > 1 and name not in readable:
            raise LthError(
                f"variant {reader!r} reads the trained weights of {name!r} at level {level - 1}, but a "
                f"level may read only {', '.join(readable)} there (variants that declare next_mask; "
                "docs/design.md, 'Contracts')"
            )
        return self.store.level(trial, name, level - 1).load_tensors("final")

    def _next_mask(self, trial: int, level: int) -> Mask:
        """Level `level`'s mask, found by the schedule and strategy from the level before."""
        stored = self.store.level(trial, variants.TICKET, level)
        if (stored.path / layout.tensors("mask")).exists():
            return stored.load_mask()
        mask, weights, rounds = self._pruned_from(trial, level)
        return self.plan.prune(mask, weights, rounds, self._score_context(mask, weights, trial, level))

    def _pruned_from(self, trial: int, level: int) -> tuple[Mask, dict[str, torch.Tensor], int]:
        """What level `level`'s mask is pruned from, as the schedule (lottery/schedules.py) says:
        a mask, the weights scored under it, and the number of rounds pruned at once."""
        schedule = SCHEDULES[self.config.lottery.schedule]
        if schedule.from_dense:
            source, rounds = self.store.level(trial, variants.TICKET, 0), level
            return source.load_mask(), source.load_tensors(schedule.scored), rounds
        source = self.store.level(trial, variants.mask_source(self.config, level - 1), level - 1)
        return source.load_mask(), source.load_tensors("final"), 1

    def _level_scores(self, trial: int, level: int) -> tuple[Mask, Scores]:
        """The mask that level `level`'s mask was pruned from and the criterion's scores that
        chose it, computed again (the `invert` variant ranks by them the other way round)."""
        mask, weights, rounds = self._pruned_from(trial, level)
        return mask, self.plan.score(mask, weights, rounds, self._score_context(mask, weights, trial, level))

    def _score_context(
        self, mask: Mask, weights: dict[str, torch.Tensor], trial: int, level: int
    ) -> ScoreContext:
        """What the configured criterion scores with (see `lth criteria`): a criterion that needs
        data gets the network at `weights` under `mask` and seeded training batches."""
        seed = derive_seed(self.config.lottery.seed + trial, "criterion", level)
        model = batches = None
        if criteria.get(self.config.pruning.criterion).needs_data:
            model = self.make_model().to(self.runtime.device)
            model.load_state_dict(weights)
            mask.to(self.runtime.device).apply_(model)
            batches = functools.partial(self._batches, seed)
        return ScoreContext(model=model, mask=mask, weights=weights, batches=batches, seed=seed)

    def _batches(self, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n training batches drawn without replacement by `seed`, as one (inputs, labels) pair."""
        train = self.data.train
        count = min(n * self.config.training.batch_size, len(train))
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count]
        idx = idx.to(train.x.device)
        return train.x[idx], train.y[idx]

    # --- training a level's units ----------------------------------------------------------------

    def _train_level(self, units: list[Unit]) -> None:
        """Train the units not yet done: together as replicas where the model allows it (see
        `lottery.replicas`), else one at a time. Groups are a function of the units alone, and a
        group under way resumes as that group, so interrupting changes no number."""
        pending = []
        for unit in units:
            if self._out(unit).done:
                self._describe(unit)
                if self._bar is not None:
                    self._bar.update(self.total - unit.start)
            else:
                pending.append(unit)
        if pending and not self._noticed:
            self._notice_engines()
        for group in self._groups(units, pending):
            if len(group) == 1:
                self._train_one(group[0])
            else:
                self._train_group(group)

    def _notice_engines(self) -> None:
        """Say so, once, when this process extends trials whose stored levels another engine
        trained: their numbers are then not comparable to the last digit (environment.py)."""
        self._noticed = True
        this = engine(self.runtime.device, self.replicas)
        groups = {ONE_MODEL[self._trainer].replicas_name} if self.replicas > 1 else set()
        trainers = {self._trainer} | groups
        here = {signature(this | describe(t)) for t in trainers}
        stored = {signature(r.get("engine")) for r in self.store.stored_results(self._chosen)} - here
        if stored:
            tqdm.write(
                f"lth: note: this run's stored levels were trained by {'; '.join(sorted(stored))}; "
                f"new levels train with {'; '.join(sorted(here))}, so the two may differ beyond rounding "
                "(see the README: which settings change numbers)",
                file=sys.stderr,
            )

    def _groups(self, units: list[Unit], pending: list[Unit]) -> list[list[Unit]]:
        if self.replicas <= 1 or not pending:
            return [[u] for u in pending]
        # A group that stopped part-way resumes as itself: its members may be done already if it
        # stopped while writing their results, which it then finishes from its checkpoint.
        by_id, waiting = {u.id: u for u in units}, {u.id for u in pending}
        groups = []
        for members in self.store.replica_groups(pending[0].level):
            if set(members) <= by_id.keys() and set(members) & waiting:
                groups.append([by_id[m] for m in members])
                waiting -= set(members)
        by_start: dict[tuple[int, int | None, str], list[Unit]] = {}
        for unit in pending:
            if unit.id in waiting:
                key = (unit.start, unit.capture_at, repr(unit.training))  # a group trains one way
                by_start.setdefault(key, []).append(unit)
        for same in by_start.values():
            groups += [same[i : i + self.replicas] for i in range(0, len(same), self.replicas)]
        return groups

    def _replicas(self, model: nn.Module) -> int:
        """How many units may train as one vectorised model: `lottery.replicas`, or for 0 (auto)
        what pays on the device (see AUTO_REPLICAS_CUDA)."""
        wanted = self.config.lottery.replicas
        if wanted == 1 or not replicable(model):
            return 1
        if wanted > 1:
            return wanted
        if not type(model).__module__.startswith("lth.models"):
            return 1  # a user's own module may do what vmap cannot (.item(), in-place updates): opt in
        return AUTO_REPLICAS_CUDA if self.runtime.device.type == "cuda" else 1

    def _describe(self, unit: Unit, replicas: int = 1) -> None:
        if self._bar is not None:
            lot = self.config.lottery
            together = f" ×{replicas} replicas" if replicas > 1 else ""
            self._bar.set_description(
                f"trial {unit.trial + 1}/{lot.trials} {unit.variant:>6} level {unit.level}/{lot.levels} "
                f"Pm {100 * unit.mask.fraction_remaining():.1f}%{together}"
            )

    def _out(self, unit: Unit) -> LevelDir:
        return self.store.level(unit.trial, unit.variant, unit.level)

    def _prepare(self, unit: Unit) -> tuple[LevelDir, nn.Module]:
        """The unit's model at its start weights (mask ⊙ weights), with both stored."""
        out = self._out(unit)
        model = self.make_model().to(self.runtime.device)
        model.load_state_dict(unit.weights())
        unit.mask.to(self.runtime.device).apply_(model)
        out.save_mask(unit.mask)
        out.save_tensors("init", model.state_dict())
        return out, model

    def _train_one(self, unit: Unit) -> None:
        self._describe(unit)
        began = time.perf_counter()
        out, model = self._prepare(unit)
        computed_by = engine_for(self._trainer, model, unit.mask)
        result = train(
            model,
            self.data,
            unit.training,
            seed=unit.seed,
            mask=unit.mask,
            start=unit.start,
            augment=self.config.data.augment,
            capture_at=unit.capture_at,
            checkpoint=out.checkpoint(self.runtime.checkpoint_interval_s),
            on_progress=self._bar.update if self._bar is not None else None,
            engine=computed_by,
        )
        wall = time.perf_counter() - began
        outcome = Outcome(model.state_dict(), result, wall, 1, self._trainer, computed_by)
        self._finish(unit, out, outcome)

    def _train_group(self, group: list[Unit]) -> None:
        self._describe(group[0], len(group))
        began = time.perf_counter()
        checkpoint = self.store.replica_checkpoint(
            group[0].level, [u.id for u in group], self.runtime.checkpoint_interval_s
        )
        saved = checkpoint.load()
        if saved is None or "outcomes" not in saved:  # else training ended; only writing was cut off
            prepared = [self._prepare(unit) for unit in group]
            models = [model for _, model in prepared]
            results = train_replicas(
                models,
                self.data,
                group[0].training,
                seeds=[u.seed for u in group],
                masks=[u.mask for u in group],
                start=group[0].start,
                augment=self.config.data.augment,
                capture_at=group[0].capture_at,
                checkpoint=checkpoint,
                on_progress=self._bar.update if self._bar is not None else None,
                engine=self._trainer,
            )
            wall = (time.perf_counter() - began) / len(group)
            trainer = ONE_MODEL[self._trainer].replicas_name
            outcomes = [
                Outcome(m.state_dict(), r, wall, len(group), trainer)
                for m, r in zip(models, results, strict=True)
            ]
            # Every outcome is saved before any is written out: a process stopped in between
            # writes the rest from here, rather than recomputing them in another group.
            checkpoint.save({"outcomes": [dataclasses.asdict(o) for o in outcomes]})
        else:
            outcomes = [Outcome.from_dict(o) for o in saved["outcomes"]]
            if self._bar is not None:  # members already written were counted as done
                self._bar.update(sum(self.total - u.start for u in group if not self._out(u).done))
        for unit, outcome in zip(group, outcomes, strict=True):
            if not self._out(unit).done:
                self._finish(unit, self._out(unit), outcome)
        checkpoint.remove()

    def _finish(self, unit: Unit, out: LevelDir, outcome: Outcome) -> None:
        result = outcome.result
        out.save_tensors("final", outcome.weights)
        if result.captured is not None:
            out.save_tensors("rewind", result.captured)
        out.save_history(result.history, HISTORY_COLUMNS)
        shapes = {name: w.shape for name, w in outcome.weights.items()}
        out.save_result(
            {
                "trial": unit.trial,
                "seed": unit.seed,
                "variant": unit.variant,
                "level": unit.level,
                "percent_remaining": 100 * unit.mask.fraction_remaining(),
                "percent_remaining_all": 100 * unit.mask.fraction_remaining_all(shapes),
                **result.record(),
                "start_iteration": unit.start,
                "iterations": self.total,
                "remaining_per_layer": unit.mask.remaining(),
                "wall_time_s": outcome.wall_time_s,
                "replicas": outcome.replicas,
                "engine": engine(self.runtime.device, self.replicas)
                | describe(outcome.trainer)
                | {"computed_by": outcome.computed_by or outcome.trainer},
            }
        )
        self.write_summary()

    # --- instability (docs/design.md, "Instability") ---------------------------------------------

    def _measured(self, level: int) -> list[tuple[str, int]]:
        """The (variant, start iteration) of each training whose instability `level` measures
        (`variants.measured_at`)."""
        measured = variants.measured_at(self.config, level)
        return [(v.name, self.rewind if v.from_rewind and level else 0) for v in measured]

    def _measure_instability(self, units: list[Unit]) -> None:
        """Once a level's units are trained, measure the instability of those `_measured` names:
        each is its own first copy, so one more training each (analysis/measure.py), the level's
        second copies together as replicas where `lottery.replicas` allows, resumable like the
        units and changing none of their numbers."""
        wanted = {variant for variant, _ in self._measured(units[0].level)} if units else set()
        settings = PathSettings.of(self.config.lottery)
        points = []
        for unit in (u for u in units if u.variant in wanted):
            folder = self._out(unit).path
            if self._bar is not None and measure.stored(folder, settings) is not None:
                self._bar.update(self.total - unit.start)
            point = measure.start_point(
                self.store, unit.trial, unit.seed, unit.variant, unit.level, unit.training, unit.start
            )
            points.append((folder, point))
        if not points:
            return
        if self._bar is not None:
            self._bar.set_description(
                f"trial {units[0].trial + 1}/{self.config.lottery.trials} "
                f"level {units[0].level}/{self.config.lottery.levels} instability"
            )
        self.measure_points(points, self._bar.update if self._bar is not None else None)
        measure.write_instability(self.config, self.store)

    def measure_points(
        self, points: list[tuple[Path, measure.StartPoint]], on_progress: Callable[[int], None] | None
    ) -> list[dict[str, Any]]:
        """`measure.measure_all` of (folder, start point)s with this experiment's model, data,
        settings and replicas: instability.json's contents for each."""
        return measure.measure_all(
            points,
            make_model=self.make_model,
            data=self.data,
            augment=self.config.data.augment,
            settings=PathSettings.of(self.config.lottery),
            iterations=self.total,
            replicas=self.replicas,
            checkpoint_interval_s=self.runtime.checkpoint_interval_s,
            on_progress=on_progress,
        )

    # --- TensorBoard -----------------------------------------------------------------------------

    def _write_tensorboard(self, units: list[Unit]) -> None:
        """Each finished unit's TensorBoard stream, once (lottery/tensorboard.py): from its stored
        history, so a resumed level logs each iteration once."""
        if self.runtime.tensorboard is None:
            return
        from lth.training.loop import lr_schedule

        for unit in units:
            if self._out(unit).done:
                steps = TrainingSteps.of(
                    unit.training, iterations_per_epoch(self.data, unit.training.batch_size)
                )
                schedule = lr_schedule(unit.training, steps)
                _tensorboard().write_level(
                    self.runtime.tensorboard, self.store.path, unit.trial, unit.variant, unit.level, schedule
                )

    # --- summary ---------------------------------------------------------------------------------

    def write_summary(self) -> list[dict[str, Any]]:
        return write_summary(self.config, self.store)


def write_summary(config: Config, store: RunStore) -> list[dict[str, Any]]:
    """summary.csv from the stored results; levels not yet done are simply absent.

    Needs no data or model, so a sweep's driver can rewrite it once its workers are done.
    """
    rows = []
    lot = config.lottery
    for trial in range(lot.trials):
        for variant in lot.variants:
            for level in range(lot.levels + 1):
                stored = store.level(trial, variant, level)  # level 0: the dense level, under the ticket
                if stored.done:
                    result = stored.load_result()
                    if "percent_remaining_all" not in result:  # written before lth recorded it
                        result["percent_remaining_all"] = stored.percent_remaining_all()
                    rows.append({c: result[c] for c in layout.SUMMARY_COLUMNS} | {"variant": variant})
    store.write_summary(rows, layout.SUMMARY_COLUMNS)
    return rows
