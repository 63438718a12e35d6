"""Lottery experiments: for each trial, level 0 dense → [train → prune → rewind] × levels,
with the `reinit` and `random` controls at every level.

Every level is idempotent: a level whose results are stored is read back, not recomputed, and
a level under way continues from its checkpoint. What a level reports is its ticket: the
level's mask applied to θ0 (or θk), trained for the full schedule. The strategies differ only
in where the next mask comes from: the ticket's trained weights (`reset`) or a path of
continued training that never rewinds (`continue`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lth.config import Config
from lth.data import Split, Splits
from lth.errors import ConfigError, LthError
from lth.models import initialize
from lth.pruning import Mask, PruningPlan, random_like
from lth.seeds import derive_seed
from lth.steps import Step
from lth.store import SUMMARY_COLUMNS, LevelDir, RunStore
from lth.training import HISTORY_COLUMNS, iterations_per_epoch, train


@dataclass
class Runtime:
    """How to run (not what to compute): never part of the config hash."""

    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    checkpoint_interval_s: float = 60.0  # how often a level under way saves its progress


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


class Experiment:
    """One config's lottery experiment over all its trials, stored in `store`."""

    def __init__(
        self,
        config: Config,
        data: Splits,
        make_model: Callable[[], nn.Module],
        store: RunStore,
        runtime: Runtime | None = None,
    ):
        self.config, self.store = config, store
        self.runtime = runtime or Runtime()
        self.data = splits_to(data, self.runtime.device)
        self.make_model = make_model
        per_epoch = iterations_per_epoch(data, config.training.batch_size)
        self.total = Step.parse(config.training.steps).iterations(per_epoch)
        self.rewind = Step.parse(config.lottery.rewind_step).iterations(per_epoch)
        if self.rewind >= self.total:
            raise ConfigError(
                f"lottery.rewind_step ({self.rewind} iterations) must be less than "
                f"training.steps ({self.total} iterations)"
            )
        self.plan = PruningPlan.for_model(make_model(), config.pruning)
        self._bar: tqdm | None = None

    # --- driving -------------------------------------------------------------------------------

    def run(self, trials: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Run (or finish) every trial, or only `trials`; returns the summary rows of every
        stored trial, also written to summary.csv.

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
        with tqdm(
            total=self._planned_iterations(len(chosen)),
            disable=None if self.runtime.progress else True,
            unit="it",
            dynamic_ncols=True,
            smoothing=0.05,
        ) as self._bar:
            for trial in chosen:
                self._run_trial(trial, lot.seed + trial)
        self._bar = None
        return self.write_summary()

    def _planned_iterations(self, trials: int) -> int:
        lot = self.config.lottery
        per_level = sum(self.total - (0 if v == "reinit" else self.rewind) for v in lot.variants)
        path = self.total * max(lot.levels - 1, 0) if lot.strategy == "continue" else 0
        return trials * (self.total + lot.levels * per_level + path)

    def _run_trial(self, trial: int, seed: int) -> None:
        levels, variants = self.config.lottery.levels, self.config.lottery.variants
        theta0 = initialize(self.make_model(), seed).state_dict()
        dense = self._level(
            trial,
            seed,
            "imp",
            0,
            theta0,
            self.plan.dense_mask(self.make_model()),
            0,
            capture_at=self.rewind or None,
        )
        theta_k = dense.load_tensors("rewind") if self.rewind else theta0
        for level in range(1, levels + 1):
            mask = self._next_mask(trial, seed, level)
            self._level(trial, seed, "imp", level, theta_k, mask, self.rewind)
            if self.config.lottery.strategy == "continue" and level < levels:
                self._continue_path(trial, seed, level, mask)
            if "reinit" in variants:
                fresh = initialize(self.make_model(), derive_seed(seed, "reinit", level)).state_dict()
                self._level(trial, seed, "reinit", level, fresh, mask, 0)
            if "random" in variants:
                generator = torch.Generator().manual_seed(derive_seed(seed, "random", level))
                self._level(trial, seed, "random", level, theta_k, random_like(mask, generator), self.rewind)

    def _next_mask(self, trial: int, seed: int, level: int) -> Mask:
        """Level `level`'s mask, found by the strategy from level `level - 1`."""
        lot = self.config.lottery
        stored = self.store.level(trial, "imp", level)
        if (stored.path / "mask.safetensors").exists():
            return stored.load_mask()
        if lot.schedule == "oneshot":
            dense = self.store.level(trial, "imp", 0)
            return self.plan.prune(dense.load_mask(), dense.load_tensors("final"), rounds=level)
        source = "path" if lot.strategy == "continue" and level > 1 else "imp"
        previous = self.store.level(trial, source, level - 1)
        return self.plan.prune(previous.load_mask(), previous.load_tensors("final"))

    def _continue_path(self, trial: int, seed: int, level: int, mask: Mask) -> None:
        """Strategy 2: keep training the pruned network from where the previous round ended."""
        source = self.store.level(trial, "path" if level > 1 else "imp", level - 1)
        self._level(trial, seed, "path", level, source.load_tensors("final"), mask, 0)

    # --- one level -------------------------------------------------------------------------------

    def _level(
        self,
        trial: int,
        seed: int,
        variant: str,
        level: int,
        weights: dict[str, torch.Tensor],
        mask: Mask,
        start: int,
        capture_at: int | None = None,
    ) -> LevelDir:
        out = self.store.level(trial, variant, level)
        lot = self.config.lottery
        if self._bar is not None:
            self._bar.set_description(
                f"trial {trial + 1}/{lot.trials} {variant:>6} level {level}/{lot.levels} "
                f"Pm {100 * mask.fraction_remaining():.1f}%"
            )
        if out.done:
            if self._bar is not None:
                self._bar.update(self.total - start)
            return out
        began = time.perf_counter()
        model = self.make_model().to(self.runtime.device)
        model.load_state_dict(weights)
        mask.to(self.runtime.device).apply_(model)
        out.save_mask(mask)
        out.save_tensors("init", model.state_dict())
        result = train(
            model,
            self.data,
            self.config.training,
            seed=seed,
            mask=mask,
            start=start,
            augment=self.config.data.augment,
            capture_at=capture_at,
            checkpoint=out.checkpoint(self.runtime.checkpoint_interval_s),
            on_progress=self._bar.update if self._bar is not None else None,
        )
        out.save_tensors("final", model.state_dict())
        if result.captured is not None:
            out.save_tensors("rewind", result.captured)
        out.save_history(result.history, HISTORY_COLUMNS)
        out.save_result(
            {
                "trial": trial,
                "seed": seed,
                "variant": variant,
                "level": level,
                "percent_remaining": 100 * mask.fraction_remaining(),
                **result.record(),
                "start_iteration": start,
                "iterations": self.total,
                "remaining_per_layer": mask.remaining(),
                "wall_time_s": time.perf_counter() - began,
            }
        )
        self.write_summary()
        return out

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
                stored = store.level(trial, "imp" if level == 0 else variant, level)
                if stored.done:
                    result = stored.load_result()
                    rows.append({c: result[c] for c in SUMMARY_COLUMNS} | {"variant": variant})
    store.write_summary(rows, SUMMARY_COLUMNS)
    return rows
