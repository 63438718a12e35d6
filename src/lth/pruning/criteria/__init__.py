"""Pruning criteria: what a weight is worth keeping, as a score per weight (higher = keep).

A criterion only scores; a scope (`lth.pruning.scopes`) turns scores into a mask at the
configured rates. Keeping the two apart is what lets a criterion that needs the network and
training data (SNIP, GraSP, SynFlow) prune layer-wise or globally like magnitude does, and
what lets a new criterion be one file in this package plus one line at the end of this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from lth.errors import ConfigError
from lth.pruning.mask import Mask

Scores = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ScoreContext:
    """Everything a criterion may score with; criteria that need less ignore the rest."""

    model: nn.Module | None  # the network at `weights`; None where the caller has only tensors
    mask: Mask  # the current mask: its layers are the ones to score
    weights: Mapping[str, torch.Tensor]  # the weights being scored, by parameter name
    # Draws n training batches, seeded, as one (inputs, labels) pair of n × batch size examples;
    # None where the caller has no data.
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None
    seed: int  # for criteria that draw random numbers, so a run is reproducible
    # For criteria that prune in rounds (SynFlow): step(mask, scores, t) prunes `mask`'s survivors
    # towards this pruning's target, t ∈ (0, 1] of the way on an exponential schedule, at t = 1
    # exactly (`lth.pruning.scopes.stepper`). `PruningPlan.prune` fills it in.
    step: Callable[[Mask, Scores, float], Mask] | None = None


ScoreFn = Callable[[ScoreContext], Scores]


@dataclass(frozen=True)
class Criterion:
    """A registered criterion. `score` gives, for every layer of `ctx.mask`, a tensor of that
    layer's shape; the lowest-scored survivors are pruned."""

    name: str
    description: str  # one line, shown by `lth criteria`
    needs_data: bool  # scores with `ctx.model` and `ctx.batches`, so a context must carry them
    score: ScoreFn


_CRITERIA: dict[str, Criterion] = {}


def register(name: str, description: str, *, needs_data: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator on a score function: make it the criterion `name` for `pruning.criterion`."""

    def add(score: ScoreFn) -> ScoreFn:
        if name in _CRITERIA:
            raise ValueError(f"pruning criterion {name!r} is registered twice")
        _CRITERIA[name] = Criterion(name, description, needs_data, score)
        return score

    return add


def unregister(name: str) -> None:
    """Remove a criterion, e.g. one a test registered for itself."""
    del _CRITERIA[name]


def names() -> list[str]:
    return sorted(_CRITERIA)


def get(name: str) -> Criterion:
    if name not in _CRITERIA:
        raise ConfigError(
            f"unknown pruning criterion {name!r}: choose one of {', '.join(names())} (see `lth criteria`)"
        )
    return _CRITERIA[name]


# One line per criterion: importing its module registers it.
from lth.pruning.criteria import grasp, magnitude, random, snip, synflow  # noqa: E402, F401
