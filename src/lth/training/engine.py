"""What the training loop drives: an `Engine` computes steps and evaluations; the loop decides when.

`loop.run` owns the cadence of every training (the budget, the evaluation points and the test-set
rule, θk capture, checkpoints, progress, the divergence error, the random state for dropout) and
asks an engine only for the work. One model (`autograd.OneModel`, or `fused.FusedMLP` where it
applies: `engines.py` chooses) and K replicas as one vectorised model (`replicas.ReplicaGroup`)
are the engines; another (compiled, CUDA graphs) is one more class, with no change to the loop.

The pieces every engine builds its step from are here too: the same optimiser, data order,
augmentation seeds and masked update, so that engines differ only in how they compute, and a
replica trains as the same run would alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from lth.config import TrainingConfig
from lth.data import Split, augment_batch
from lth.data.transfer import to_device
from lth.seeds import derive_seed


class Engine(Protocol):
    """One or more trainings advanced together, each with its own weights, mask, data order and
    optimiser state. Lists it returns have one entry per training ("replica"), in order."""

    replicas: int  # how many trainings: 1 for one model

    def step(self, iteration: int, lr: float) -> None:
        """One optimiser step at rate `lr` on each replica's batch of `iteration` (0-based)."""
        ...

    def evaluate(self, split: Split, which: Sequence[int] | None = None) -> list[tuple[float, float]]:
        """(mean loss, accuracy) on `split` of the replicas in `which` (all by default), leaving
        training undisturbed. The loop asks for a subset where only some replicas need the test set."""
        ...

    def copy_weights(self) -> list[dict[str, torch.Tensor]]:
        """Each replica's weights as its model's own state_dict, copied (θk for rewinding)."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Weights and optimiser state, for a checkpoint: what `restore` continues from exactly."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `snapshot` of an engine built the same way."""
        ...


class OneModelEngine(Engine, Protocol):
    """An engine of one model, which may train a copy of its weights (in flat buffers, say)."""

    def write_back(self) -> None:
        """Leave the trained weights in the model, as `train` promises."""
        ...


def make_optimizer(params: list[torch.Tensor], config: TrainingConfig) -> torch.optim.Optimizer:
    # Fused kernels: one pass over all parameters per step (measured ~25% faster per LeNet step
    # on 2 CPU cores than `foreach`), same arithmetic.
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=True
    )


class MaskedUpdate:
    """The end of every engine's step: backward, pruned weights' gradients zeroed, optimiser step.

    A pruned weight gets no gradient, so neither it nor the optimiser's state for it (Adam's
    moments, SGD's momentum) ever moves away from zero. `masked` pairs each pruned parameter with
    its mask, of the parameter's shape (stacked, for replicas).
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        masked: list[tuple[torch.Tensor, torch.Tensor]],
        config: TrainingConfig,
    ):
        self.optimizer = make_optimizer(params, config)
        self.masked = masked

    def __call__(self, loss: torch.Tensor, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for param, m in self.masked:
            param.grad.mul_(m)
        self.optimizer.step()


class BatchOrder:
    """The data order of a run: a fresh seeded permutation each epoch, batches as index slices.

    Iteration t's batch depends only on (seed, t), so a resumed run sees the same batches. The
    permutation is drawn on the CPU (the same on every device) and kept on `device`, where the
    data is: one copy an epoch, not one a step (see `to_device`).
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device | None = None):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.device = device or torch.device("cpu")
        self.per_epoch = max(n // batch_size, 1)
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, iteration: int) -> torch.Tensor:
        """Iteration `iteration`'s batch, as indices into the training split, on `device`."""
        epoch, offset = divmod(iteration, self.per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
            perm = torch.randperm(self.n, generator=generator)
            self._epoch, self._perm = epoch, to_device(perm, self.device)
        return self._perm[offset * self.batch_size : (offset + 1) * self.batch_size]


def augmented(x: torch.Tensor, seed: int, iteration: int) -> torch.Tensor:
    """Batch `x` of the run with `seed` at `iteration`, augmented: its draws depend only on (seed,
    iteration), never on the global generator, so replicas and resumed runs augment alike."""
    return augment_batch(x, torch.Generator().manual_seed(derive_seed(seed, "augment", iteration)))
