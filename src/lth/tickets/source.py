"""A ticket as tensors, read from a finished level of a run directory: its weights with zeros where
pruned, its mask, and what it is (`About`: enough to rebuild the network and say where it came
from, which every export file carries in its metadata).

Reading only: the run may still be training other levels. Each refusal is one line naming what
to choose instead (an `LthError`, which the CLI prints as it is).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lth import layout
from lth._version import __version__
from lth.config import Config
from lth.data.registry import get as data_source
from lth.errors import ConfigError, LthError, StoreError
from lth.pruning import Mask
from lth.store import LevelDir

WEIGHTS = ("final", "init")  # a level's trained weights, or its start weights m ⊙ θ


@dataclass(frozen=True)
class About:
    """What a ticket is. `model` is the run's `[model]` config (name and options); `input_shape` and
    `num_classes` come from the data set's registry entry, and are None for a run of
    `lth.find_tickets`, whose network is the user's own module."""

    model: dict[str, Any]
    dataset: str
    input_shape: tuple[int, ...] | None
    num_classes: int | None
    run: str
    trial: int
    variant: str
    level: int
    weights: str
    percent_remaining: float
    percent_remaining_all: float

    def metadata(self, format: str) -> dict[str, str]:
        """The safetensors metadata of an export in `format` (strings only, as the format wants)."""
        fields = dataclasses.asdict(self)
        text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        return {"format": format, "lth_version": __version__, **text}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> About:
        """The inverse of `metadata`; a KeyError or ValueError where a field is missing or bad."""
        values = {}
        for f in dataclasses.fields(cls):
            raw = meta[f.name]
            values[f.name] = raw if f.type == "str" else json.loads(raw)
        if values["input_shape"] is not None:
            values["input_shape"] = tuple(values["input_shape"])
        return cls(**values)


@dataclass(frozen=True)
class Ticket:
    """`weights`: the network's whole state dict, pruned weights exactly zero; `mask`: 1 where a
    weight survives, over the pruned layers only (the pattern, also where a survivor is zero)."""

    weights: dict[str, torch.Tensor]
    mask: Mask
    about: About


def read_level(
    run_dir: str | Path, level: int, *, trial: int = 0, variant: str = layout.TICKET, weights: str = "final"
) -> Ticket:
    """The ticket stored at (trial, variant, level) of a run directory; `weights` "final" (trained)
    or "init" (the start weights m ⊙ θ the level trained from)."""
    run = Path(run_dir)
    if weights not in WEIGHTS:
        raise ConfigError(f"unknown weights {weights!r}: choose final (trained) or init (start)")
    if not run.is_dir():
        raise StoreError(f"{run} is not a directory; give a run directory that `lth run` printed")
    if layout.read_record(run) is not None:
        raise StoreError(
            f"{run} is a record, which keeps no weights; give the run directory it was made from"
        )
    config = layout.read_config(run)
    _check_choice(run, config, trial, variant, level)
    stored = LevelDir(layout.level_dir(run, trial, variant, level))
    if not stored.done:
        done = finished_levels(run, trial, variant)
        raise StoreError(
            f"level {level} of trial {trial} ({variant}) is not finished: {stored.path} has no "
            f"{layout.RESULT}; choose a finished level ({_listed(done)}) or let the run finish it"
        )
    tensors, mask = stored.load_tensors(weights), stored.load_mask()
    for name, m in mask.items():
        if name not in tensors or tensors[name].shape != m.shape:
            path = stored.path / layout.tensors(weights)
            raise StoreError(
                f"run file {path} does not match the level's mask at {name}; recompute the level"
            )
    result = stored.load_result()
    return Ticket(
        weights={k: v * mask[k].to(v.dtype) if k in mask else v for k, v in tensors.items()},
        mask=mask,
        about=About(
            model=dataclasses.asdict(config.model),
            dataset=config.data.dataset,
            input_shape=_input_shape(config),
            num_classes=_num_classes(config),
            run=run.resolve().name,
            trial=trial,
            variant=variant if level else layout.TICKET,
            level=level,
            weights=weights,
            percent_remaining=float(result["percent_remaining"]),
            percent_remaining_all=float(result.get("percent_remaining_all", result["percent_remaining"])),
        ),
    )


def finished_levels(run: Path, trial: int, variant: str) -> list[int]:
    """The levels of (trial, variant) with a result.json, level 0 (the shared dense one) included."""
    found = {
        int(p.parent.name.removeprefix("level_"))
        for p in layout.stored_results(run, trial)
        if p.parent.parent.name == variant
    }
    if (layout.level_dir(run, trial, variant, 0) / layout.RESULT).exists():
        found.add(0)
    return sorted(found)


def _check_choice(run: Path, config: Config, trial: int, variant: str, level: int) -> None:
    trials = sorted(int(p.name.removeprefix("trial_")) for p in run.glob("trial_*") if p.name[6:].isdigit())
    if trial not in trials:
        raise ConfigError(f"unknown trial {trial}: {run} has trials {_listed(trials)}")
    here = layout.trial_dir(run, trial)
    known = set(config.lottery.variants) | {p.name for p in here.iterdir() if p.is_dir()}
    if variant not in known:
        raise ConfigError(f"unknown variant {variant!r}: this run has {', '.join(sorted(known))}")
    if not 0 <= level <= config.lottery.levels:
        raise ConfigError(f"level {level} is outside this run: its levels are 0 to {config.lottery.levels}")


def _listed(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) or "none"


def _input_shape(config: Config) -> tuple[int, ...] | None:
    try:
        return tuple(data_source(config.data.dataset).input_shape)
    except LthError:  # a run of find_tickets: its data were the user's tensors
        return None


def _num_classes(config: Config) -> int | None:
    try:
        return data_source(config.data.dataset).num_classes
    except LthError:
        return None
