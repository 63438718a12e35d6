"""The networks, data and masks both implementations train: identical inputs for a fair race.

A workload fixes θ0 (one seeded initialisation, copied into every fresh model) and one mask, so
the plain loop and `lth` start every repeat from the same weights and prune the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from lth import data as lth_data
from lth.config import PruningConfig
from lth.data import Split, Splits
from lth.lottery.runner import splits_to
from lth.models import build, initialize
from lth.pruning import Mask, PruningPlan

MASK_ROUNDS = 3  # level 3 of IMP at the paper's rates: a real mask, well past the 20%-pruned level


@dataclass(frozen=True)
class Workload:
    name: str
    model_name: str
    splits: Splits
    batch_size: int
    lr: float
    level_steps: int  # one level's training budget in the paper (for amortising per-level costs)
    eval_every: int  # the paper's evaluation interval
    real_sizes: dict[str, int]  # the paper's train/val/test sizes, when `splits` are smaller
    description: str
    theta0: dict[str, torch.Tensor] = field(repr=False)
    rates: dict[str, float]  # the paper's per-layer pruning rates, which `mask` applies
    mask_rounds: int  # the mask is `rounds` of pruning at `rates` (by |θ0|)
    mask: Mask = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # of splits and models

    def fresh_model(self) -> nn.Module:
        """A new model holding θ0 (dense: each implementation applies the mask its own way)."""
        model = build(self.model_name, self.splits.input_shape, self.splits.num_classes)
        model.load_state_dict(self.theta0)
        return model.to(self.device)

    def masked_at(self, rounds: int) -> Workload:
        """This workload with the mask of IMP level `rounds` at its rates instead."""
        mask = magnitude_mask(self.fresh_model(), self.rates, rounds)
        return replace(self, mask=mask, mask_rounds=rounds)

    def fresh_masked(self) -> nn.Module:
        """A new model holding m ⊙ θ0, for timing pieces of lth's step directly."""
        return self.mask.to(self.device).apply_(self.fresh_model())

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "data": self.splits.name,
            "sizes": {name: len(getattr(self.splits, name)) for name in ("train", "val", "test")},
            "paper_sizes": self.real_sizes,
            "batch_size": self.batch_size,
            "optimizer": f"Adam lr={self.lr}",
            "mask_rounds": self.mask_rounds,
            "mask_fraction_remaining": self.mask.fraction_remaining(),
            "mask_layer_fractions": self.mask.layer_fractions(),
            "description": self.description,
        }


def _with_mask(
    name: str,
    model_name: str,
    splits: Splits,
    rates: dict[str, float],
    seed: int,
    device: torch.device,
    **fields: Any,
) -> Workload:
    model = initialize(build(model_name, splits.input_shape, splits.num_classes), seed)
    mask = magnitude_mask(model, rates, MASK_ROUNDS)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    on_device = splits_to(splits, device)
    return Workload(
        name=name,
        model_name=model_name,
        splits=on_device,
        theta0=theta0,
        rates=rates,
        mask_rounds=MASK_ROUNDS,
        mask=mask,
        device=device,
        **fields,
    )


def magnitude_mask(model: nn.Module, rates: dict[str, float], rounds: int) -> Mask:
    """The mask of `rounds` rounds of pruning at `rates`, by the magnitude of `model`'s weights.

    Magnitude of θ0 rather than of trained weights: the mask's pattern does not change the
    (dense) work, and this keeps the benchmark free of a training run to build it. Each layer's
    fraction left is the paper's at that level, which is what sparse kernels' speed depends on.
    """
    plan = PruningPlan.for_model(model, PruningConfig(rates=rates))
    return plan.prune(plan.dense_mask(model), dict(model.named_parameters()), rounds=rounds)


def lenet_mnist(seed: int = 0, device: torch.device | str = "cpu") -> Workload:
    """LeNet-300-100 on MNIST exactly as the paper runs it: 55K train, 5K validation, 10K test."""
    splits = lth_data.load("mnist")  # the same loader and validation split `lth run` uses
    return _with_mask(
        "lenet300-mnist",
        "lenet300",
        splits,
        {"fc": 0.2, "output": 0.1},
        seed,
        torch.device(device),
        batch_size=60,
        lr=1.2e-3,
        level_steps=50_000,
        eval_every=100,
        real_sizes={"train": 55_000, "val": 5_000, "test": 10_000},
        description="LeNet-300-100 on MNIST (real data), Adam 1.2e-3, batch 60",
    )


def random_cifar_splits(n_train: int, n_val: int, n_test: int, seed: int = 0) -> Splits:
    """Random tensors of CIFAR-10's shape (N×3×32×32, labels 0–9): CIFAR-10 cannot be fetched
    offline here, and speed does not depend on what the pixels are."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        return Split(
            torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, 10, (n,), generator=generator)
        )

    return Splits(
        name="random-cifar10-shaped",
        train=split(n_train),
        val=split(n_val),
        test=split(n_test),
        num_classes=10,
    )


def conv2_random(
    n_train: int, n_val: int, n_test: int, seed: int = 0, device: torch.device | str = "cpu"
) -> Workload:
    """Conv-2 at the paper's CIFAR-10 settings (Adam 2e-4, batch 60) on CIFAR-shaped random data."""
    return _with_mask(
        "conv2-cifar10-shaped",
        "conv2",
        random_cifar_splits(n_train, n_val, n_test, seed),
        {"conv": 0.1, "fc": 0.2, "output": 0.1},
        seed,
        torch.device(device),
        batch_size=60,
        lr=2e-4,
        level_steps=20_000,
        eval_every=100,
        real_sizes={"train": 45_000, "val": 5_000, "test": 10_000},
        description="Conv-2 on random CIFAR-10-shaped tensors (timing only), Adam 2e-4, batch 60",
    )


def head(splits: Splits, train: int | None = None, val: int | None = None, test: int | None = None) -> Splits:
    """`splits` cut to the first `train`/`val`/`test` examples (None keeps a split whole)."""

    def cut(split: Split, n: int | None) -> Split:
        return split if n is None else Split(split.x[:n], split.y[:n])

    return Splits(
        name=splits.name,
        train=cut(splits.train, train),
        val=cut(splits.val, val),
        test=cut(splits.test, test),
        num_classes=splits.num_classes,
    )
