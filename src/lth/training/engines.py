"""Which engine trains one model: the one-model engines by name, and the automatic choice.

`autograd` trains any module; `fused` trains fully connected ReLU networks (`fused.mlp_layers`)
with a hand-written step, the same numbers bit for bit on a CPU (tests/test_fused.py) in less
time (benchmarks/RESULTS.md). "auto" takes the fastest that applies. Which one trained a result is
recorded with it (`environment.engine`). Replica groups have their own engine (replicas.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from lth.config import TrainingConfig
from lth.data import Splits
from lth.errors import ConfigError
from lth.pruning import Mask
from lth.training.autograd import OneModel
from lth.training.engine import OneModelEngine
from lth.training.fused import FusedMLP, mlp_layers


@dataclass(frozen=True)
class Choice:
    description: str
    applies: Callable[[nn.Module], bool]
    build: Callable[..., OneModelEngine]  # (model, data, config, *, seed, mask, augment)


# In order of preference for "auto": the first that applies.
ONE_MODEL: dict[str, Choice] = {
    "fused": Choice(
        "hand-written step over flat buffers, for flatten → (Linear → ReLU)* → Linear networks",
        lambda model: mlp_layers(model) is not None,
        FusedMLP,
    ),
    "autograd": Choice("autograd and torch.optim: any module", lambda model: True, OneModel),
}
CHOICES = ("auto", *ONE_MODEL)


def engine_name(choice: str, model: nn.Module) -> str:
    """The engine `choice` ("auto" or a name) trains `model` with; a clear error if it cannot."""
    if choice == "auto":
        return next(name for name, engine in ONE_MODEL.items() if engine.applies(model))
    if choice not in ONE_MODEL:
        raise ConfigError(f"unknown engine {choice!r}; choose one of: {', '.join(CHOICES)}")
    if not ONE_MODEL[choice].applies(model):
        raise ConfigError(
            f"the {choice} engine cannot train {type(model).__name__} "
            f"(it needs a {ONE_MODEL[choice].description.split(', for ')[-1]}); use --engine auto"
        )
    return choice


def one_model(
    choice: str,
    model: nn.Module,
    data: Splits,
    config: TrainingConfig,
    *,
    seed: int,
    mask: Mask | None,
    augment: bool,
) -> OneModelEngine:
    """The engine that trains `model` alone (see `engine_name`)."""
    engine = ONE_MODEL[engine_name(choice, model)]
    return engine.build(model, data, config, seed=seed, mask=mask, augment=augment)
