"""The composition root: a config and its data → the `make_model` a run builds every network with,
and the experiment in its run directory.

`lth run` (`api.run`; `find_tickets` opens its experiment here too) and a sweep's workers build
models here, and everything that would otherwise fail in the middle of a run (an option the
model does not take, an input it cannot handle, too few outputs for the labels, a pruning kind
it lacks, a rewind step past the training) fails here, with one line, before a run directory is
written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lth.config import Config, ModelConfig, PruningConfig
from lth.data import Splits
from lth.errors import ConfigError
from lth.lottery import Experiment, Runtime, level_iterations
from lth.models import build
from lth.pruning import PruningPlan
from lth.store import RunStore


def model_factory(config: Config, splits: Splits) -> Callable[[], nn.Module]:
    """`make_model` for `config.model` on `splits`, after building and checking one model."""
    options = model_options(config.model)

    def make_model() -> nn.Module:
        return build(config.model.name, splits.input_shape, splits.num_classes, **options)

    check_model(make_model(), splits, config.pruning)
    return make_model


def open_experiment(
    config: Config, splits: Splits, make_model: Callable[[], nn.Module], out: str | Path, runtime: Runtime
) -> Experiment:
    """The experiment of `config` in its run directory under `out`, after the checks that need the
    data (the rewind step inside the training) and before the directory is written."""
    iterations = level_iterations(config, splits)  # refuses a bad rewind step before RunStore writes
    return Experiment(config, splits, make_model, RunStore(out, config), runtime, iterations)


def model_options(model: ModelConfig) -> dict[str, object]:
    """The constructor options that `model` sets: those that differ from their defaults, so
    every model builds with the default config whether or not its constructor takes them."""
    defaults = ModelConfig()
    return {
        f.name: getattr(model, f.name)
        for f in dataclasses.fields(model)
        if f.name != "name" and getattr(model, f.name) != getattr(defaults, f.name)
    }


@torch.no_grad()
def check_model(model: nn.Module, splits: Splits, pruning: PruningConfig) -> None:
    """Refuse a model that cannot run on `splits` under `pruning`. `model` is a throwaway copy on
    the CPU: it is put in eval mode (batch norm then takes a batch of one)."""
    PruningPlan.for_model(model, pruning)
    model.eval()
    x = splits.train.x[:2].cpu()
    try:
        out = model(x)
    except Exception as err:  # whatever the model raises, the cause is the input it was given
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"the model cannot take inputs of shape {tuple(x.shape[1:])} ({type(err).__name__}: {reason}); "
            "give it inputs of the shape its first layer expects"
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"the model must return logits of shape (batch, classes), got {shape}")
    if out.shape[1] < splits.num_classes:
        raise ConfigError(
            f"the labels go up to {splits.num_classes - 1} but the model has {out.shape[1]} outputs: "
            f"give its output layer {splits.num_classes} outputs, or use labels 0 to {out.shape[1] - 1}"
        )
