"""The model registry: a name in a config → a constructor.

A registered model is an `nn.Module` built as `cls(input_shape, num_classes, **options)` that
also provides:
- `init_weights()`: its paper initialisation (called under a seeded RNG by `initialize`);
- `prunable()`: a dict from weight-parameter name to layer kind (`"conv"`, `"fc"`, `"output"`,
  `"shortcut"`, …), so pruning configs can give a rate per kind. Biases and batch-norm
  parameters are never listed: they are not pruned.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

from torch import nn

from lth.errors import ConfigError

_MODELS: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a model available to configs under `name`."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        _MODELS[name] = cls
        return cls

    return add


def names() -> list[str]:
    return sorted(_MODELS)


def check_options(name: str, options: Iterable[str]) -> None:
    """Refuse an unknown model, or an option its constructor does not take, naming the models
    that do take it (so a config fails with one line, not a TypeError from deep inside a run)."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(names())}")
    for option in options:
        if not _takes(_MODELS[name], option):
            takers = ", ".join(n for n in names() if _takes(_MODELS[n], option)) or "none"
            raise ConfigError(f"model.{option}: {name} takes no {option}; models with {option}: {takers}")


def build(name: str, input_shape: tuple[int, ...], num_classes: int, **options: object) -> nn.Module:
    """Build the registered model `name` for data of `input_shape` (C, H, W) and `num_classes`."""
    check_options(name, options)
    return _MODELS[name](tuple(input_shape), num_classes, **options)


def _takes(cls: type[nn.Module], option: str) -> bool:
    parameters = inspect.signature(cls).parameters
    return option in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
