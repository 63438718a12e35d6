"""The autograd engine: one model, its own forward, autograd's backward and a `torch.optim` step.

It trains any `nn.Module`: dropout, batch norm, convolutions, a user's own layers. Faster engines
for particular architectures (fused.py) compute what it computes; it is their reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lth.config import TrainingConfig
from lth.data import Split, Splits
from lth.pruning import Mask
from lth.training.engine import BatchOrder, MaskedUpdate, augmented
from lth.training.evaluate import evaluate


class OneModel:
    """The engine of one model, trained in place: its own forward and backward each step."""

    replicas = 1

    def __init__(
        self,
        model: nn.Module,
        data: Splits,
        config: TrainingConfig,
        *,
        seed: int,
        mask: Mask | None,
        augment: bool,
    ):
        params = dict(model.named_parameters())
        if mask is not None:
            mask = mask.to(data.train.x.device)
            mask.apply_(model)
        masked = [(params[name], m) for name, m in (mask or {}).items()]
        self.update = MaskedUpdate(list(model.parameters()), masked, config)
        self.order = BatchOrder(len(data.train), config.batch_size, seed, data.train.x.device)
        self.model, self.train_split, self.seed, self.augment = model, data.train, seed, augment
        model.train()  # `evaluate` puts back the mode it finds

    def step(self, iteration: int, lr: float) -> None:
        idx = self.order.indices(iteration)
        x, y = self.train_split.x[idx], self.train_split.y[idx]
        if self.augment:
            x = augmented(x, self.seed, iteration)
        self.update(F.cross_entropy(self.model(x), y), lr)

    def evaluate(self, split: Split, which: Sequence[int] | None = None) -> list[tuple[float, float]]:
        """The one model's (loss, accuracy): `which` can only be all of one."""
        return [evaluate(self.model, split.x, split.y)]

    def copy_weights(self) -> list[dict[str, torch.Tensor]]:
        return [{k: v.detach().clone() for k, v in self.model.state_dict().items()}]

    def snapshot(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.update.optimizer.state_dict()}

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.update.optimizer.load_state_dict(state["optimizer"])

    def write_back(self) -> None:
        """Nothing to do: the model itself was trained."""


# Evaluation batch of the channels-last engine on a CPU: Conv-2 on 1,000 CIFAR-shaped examples,
# 1 thread, best of 3: 1.09 s at 50 against 1.15 s at 20 and 1.50 s at 100 (the default layout:
# 1.49–1.77 s at 50–100); benchmarks/RESULTS.md, "Conv-2 profile".
CHANNELS_LAST_CPU_EVAL_BATCH = 50


class ChannelsLast(OneModel):
    """The autograd engine with the model's 4-d weights in channels-last (NHWC) layout, which
    oneDNN's CPU convolutions run faster (Conv-2, 1 thread: steps 1.03–1.12× and evaluation 1.35–1.7×, in
    benchmarks/RESULTS.md, "Conv-2 profile"). The sums run in another order, so its numbers equal
    the autograd engine's up to float rounding, not bit for bit: it is chosen only on request."""

    def __init__(self, model: nn.Module, data: Splits, config: TrainingConfig, **kwargs: Any):
        # Before the optimiser holds the parameters: `to` swaps each one's storage in place.
        super().__init__(model.to(memory_format=torch.channels_last), data, config, **kwargs)

    def evaluate(self, split: Split, which: Sequence[int] | None = None) -> list[tuple[float, float]]:
        batch = CHANNELS_LAST_CPU_EVAL_BATCH if split.x.device.type == "cpu" else None
        return [evaluate(self.model, split.x, split.y, batch=batch)]
