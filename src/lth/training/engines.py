"""Which engine trains one model: the one-model engines by name, and the automatic choice.

`autograd` trains any module; `fused` trains fully connected ReLU networks (`fused.mlp_layers`)
with a hand-written step, the same numbers bit for bit on a CPU (tests/test_fused.py) in less
time (benchmarks/RESULTS.md); `sparse` makes that step's cost fall with the ticket, equal within
rounding, and leaves a mask it would not speed up to `fused` (`engine_for`); `channels-last` runs
a conv net's autograd step in NHWC layout, faster on a CPU and also equal within rounding. "auto"
takes the first exact engine that applies. Each also names the engine of its replica groups
(`FusedReplicas`, or `ReplicaGroup`'s vmap for autograd). Which one trained a result is recorded
with it (`describe`). Replica groups have their own engine (replicas.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from lth.config import TrainingConfig
from lth.data import Splits
from lth.errors import ConfigError
from lth.pruning import Mask
from lth.training.autograd import ChannelsLast, OneModel
from lth.training.engine import Engine, OneModelEngine
from lth.training.fused import FusedMLP, mlp_layers, sparse_pays
from lth.training.fused_replicas import FusedReplicas


@dataclass(frozen=True)
class Choice:
    description: str
    needs: str  # what a model must be for it, for the error where it is not
    applies: Callable[[nn.Module], bool]
    build: Callable[..., OneModelEngine]  # (model, data, config, *, seed, mask, augment)
    exact: bool  # the autograd engine's numbers bit for bit; "auto" picks only these
    build_replicas: Callable[..., Engine]  # (models, data, config, *, seeds, masks, augment)
    replicas_name: str  # what result.json calls a replica group's engine
    replicas_exact: bool  # its groups give separate trainings' numbers bit for bit
    # The engine that trains a mask this one would not make faster: (mask) → its name, or None to
    # train it here. The sparse engine leaves masks with no layer sparse enough to the fused one,
    # which is faster there and exact (benchmarks/RESULTS.md, "Engines").
    defer: Callable[[Mask | None], str | None] = lambda mask: None


def _vmap_replicas(*args, **kwargs) -> Engine:
    # Imported here: replicas.py imports the training loop, which imports this module.
    from lth.training.replicas import ReplicaGroup

    return ReplicaGroup(*args, **kwargs)


def _is_mlp(model: nn.Module) -> bool:
    return mlp_layers(model) is not None


def _unless_sparse(mask: Mask | None) -> str | None:
    """ "fused" for a mask with no layer whose sparse products pay (`fused.sparse_pays`)."""
    return None if mask is not None and any(sparse_pays(m) for m in mask.values()) else "fused"


# In order of preference for "auto": the first exact one that applies.
ONE_MODEL: dict[str, Choice] = {
    "fused": Choice(
        "a hand-written step over flat buffers",
        "flatten → (Linear → ReLU)* → Linear network",
        _is_mlp,
        FusedMLP,
        exact=True,
        build_replicas=FusedReplicas,
        replicas_name="fused replicas",
        replicas_exact=True,
    ),
    "sparse": Choice(
        "the fused step over surviving weights only, sparse products in large layers at ≤ 10% density; "
        "masks without such a layer go to fused",
        "flatten → (Linear → ReLU)* → Linear network",
        _is_mlp,
        functools.partial(FusedMLP, survivors=True, sparse=True),
        exact=False,
        build_replicas=FusedReplicas,  # dense: replicas of different masks share no sparsity
        replicas_name="fused replicas",
        replicas_exact=True,
        defer=_unless_sparse,
    ),
    "channels-last": Choice(
        "autograd and torch.optim with convolution weights in channels-last layout",
        "network with 2-d convolutions",
        lambda model: any(isinstance(m, nn.Conv2d) for m in model.modules()),
        ChannelsLast,
        exact=False,
        build_replicas=lambda *args, **kwargs: _vmap_replicas(*args, **kwargs),
        replicas_name="vmap replicas",
        replicas_exact=False,
    ),
    "autograd": Choice(
        "autograd and torch.optim",
        "module",
        lambda model: True,
        OneModel,
        exact=True,
        build_replicas=lambda *args, **kwargs: _vmap_replicas(*args, **kwargs),
        replicas_name="vmap replicas",
        replicas_exact=False,
    ),
}
CHOICES = ("auto", *ONE_MODEL)


def check_choice(choice: str) -> None:
    """Refuse an engine name that is neither "auto" nor one of `ONE_MODEL`."""
    if choice not in CHOICES:
        raise ConfigError(f"unknown engine {choice!r}; choose one of: {', '.join(CHOICES)}")


def engine_name(choice: str, model: nn.Module) -> str:
    """The engine `choice` ("auto" or a name) trains `model` with; a clear error if it cannot."""
    if choice == "auto":
        return next(name for name, e in ONE_MODEL.items() if e.exact and e.applies(model))
    check_choice(choice)
    if not ONE_MODEL[choice].applies(model):
        raise ConfigError(
            f"the {choice} engine cannot train {type(model).__name__} (it needs a "
            f"{ONE_MODEL[choice].needs}); use --engine auto"
        )
    return choice


def engine_for(choice: str, model: nn.Module, mask: Mask | None) -> str:
    """The engine that trains `model` under `mask`: `engine_name`'s, unless it defers that mask to
    another (`Choice.defer`). What result.json records as the trainer."""
    name = engine_name(choice, model)
    return ONE_MODEL[name].defer(mask) or name


def describe(name: str) -> dict[str, str | bool]:
    """What result.json records of the engine `name` (a one-model engine, or a replica engine's
    `replicas_name`): its name, and whether its numbers are those of one model trained alone by
    the autograd engine, bit for bit (`environment.signature` tells results apart where not)."""
    exact = {n: c.exact for n, c in ONE_MODEL.items()} | {
        c.replicas_name: c.replicas_exact for c in ONE_MODEL.values()
    }
    return {"trainer": name, "trainer_exact": exact[name]}


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
    """The engine that trains `model` alone under `mask` (see `engine_for`)."""
    engine = ONE_MODEL[engine_for(choice, model, mask)]
    return engine.build(model, data, config, seed=seed, mask=mask, augment=augment)
