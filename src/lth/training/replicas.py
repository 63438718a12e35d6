"""Many independent trainings as one vectorised model: K replicas, one set of kernels per step.

A small network trains far below the machine's limit one model at a time: LeNet-300-100's
matrix products at batch 60 are too small to keep a CPU's vector units (or a GPU) busy, and
every step pays Python and dispatch overhead. K replicas of one architecture (trials, or a
ticket with its `reinit` and `random` controls) train here as one model: their weights are
stacked along a new leading dimension and `torch.func.vmap` turns each layer into one batched
product. Every replica keeps its own weights, mask, data order and optimiser state, so the
results are those of K separate `train` calls, up to float rounding (batched products may sum
in a different order); tests compare them. `ReplicaGroup` is the engine `loop.run` drives, with
the cadence of `train` itself. Its checkpoints hold each replica's state as one model's engine
keeps it, gathered in one file per group: a group resumes as a whole, so a resumed group
computes exactly what an unbroken one would have.

Models with dropout or batch norm train one at a time (`replicable`): vectorised, their random
draws and running statistics could not equal separate runs'.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from lth.config import TrainingConfig
from lth.data import Split, Splits
from lth.errors import LthError
from lth.pruning import Mask
from lth.training.engine import BatchOrder, MaskedUpdate, augmented
from lth.training.engines import ONE_MODEL, engine_name
from lth.training.evaluate import eval_batch_size
from lth.training.loop import Checkpoint, TrainResult, run


def replicable(model: nn.Module) -> bool:
    """Whether replicas of `model` train exactly like separate copies (no dropout, no batch norm)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return False
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return False
    return True


class _Linear(torch.autograd.Function):
    """`F.linear` with a weight gradient computed as gᵀx, in the weight's own [out, in] layout.

    Under `vmap`, autograd's own rule for `F.linear` computes it as xᵀg, [in, out], then copies
    it transposed into place; for LeNet at batch 60 that copy and the slower product cost more
    than the rest of the step (measured: 0.78 vs 1.12 ms per replica-step, K = 16, 2 cores).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        flat_grad, flat_x = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_bias = flat_grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, flat_grad.T @ flat_x, grad_bias


def _vmap_friendly(model: nn.Module) -> nn.Module:
    """`model`'s architecture without storage, its linear layers computed through `_Linear`."""
    model = copy.deepcopy(model).to("meta")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.forward = types.MethodType(
                lambda self, x: _Linear.apply(x, self.weight, self.bias), module
            )
    return model


class Replicas:
    """K models of one architecture as stacked tensors, run as one through `vmap`."""

    def __init__(self, models: Sequence[nn.Module]):
        self.k = len(models)
        self.names = list(models[0].state_dict())  # state_dict order, as checkpoints keep it
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, torch.Tensor] = params  # leaves with requires_grad, [K, ...]
        self.buffers: dict[str, torch.Tensor] = buffers
        self.base = _vmap_friendly(models[0])

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Logits [K, B, classes] for inputs [B, ...] seen by every replica (`shared`), or [K, B, ...]."""

        def one(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor):
            return functional_call(self.base, (params, buffers), (x,))

        return vmap(one, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, x)

    def state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Replica k's weights as its own model's state_dict. Cloned: a slice would keep (and
        torch.save would write) the whole stack."""
        both = self.params | self.buffers
        return {name: both[name][k].detach().clone() for name in self.names}

    def load_state_dict(self, k: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, tensor in (self.params | self.buffers).items():
                tensor[k].copy_(state[name])

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy each replica's weights into its model, as `train` leaves a model trained."""
        for k, model in enumerate(models):
            model.load_state_dict(self.state_dict(k))


class ReplicaGroup:
    """The engine of K models trained as one `Replicas` stack, each with its own seed and mask."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        data: Splits,
        config: TrainingConfig,
        *,
        seeds: Sequence[int],
        masks: Sequence[Mask] | None,
        augment: bool,
    ):
        device = data.train.x.device
        if masks is not None:
            for model, mask in zip(models, masks, strict=True):
                mask.to(device).apply_(model)
        self.stack, self.models = Replicas(models), list(models)
        self.replicas = self.stack.k
        masked = (
            [(self.stack.params[name], torch.stack([m[name] for m in masks]).to(device)) for name in masks[0]]
            if masks is not None
            else []
        )
        self.update = MaskedUpdate(list(self.stack.params.values()), masked, config)
        self.orders = [BatchOrder(len(data.train), config.batch_size, s, device) for s in seeds]
        self.train_split, self.seeds, self.augment = data.train, list(seeds), augment

    def step(self, iteration: int, lr: float) -> None:
        split = self.train_split
        idx = torch.stack([order.indices(iteration) for order in self.orders])
        x, y = split.x[idx], split.y[idx]  # [K, B, ...]
        if self.augment:
            x = torch.stack([augmented(x[r], seed, iteration) for r, seed in enumerate(self.seeds)])
        logits = self.stack(x, shared=False)  # [K, B, classes]
        # Each replica's mean loss, summed: the gradient of the sum is each replica's own gradient.
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        self.update(losses.view(self.replicas, logits.shape[1]).mean(1).sum(), lr)

    @torch.inference_mode()
    def evaluate(self, split: Split, which: Sequence[int] | None = None) -> list[tuple[float, float]]:
        """(mean loss, accuracy) per replica in `which`, as `evaluate` computes them for one model."""
        which = range(self.replicas) if which is None else which
        sub = self.stack if len(which) == self.replicas else _subset(self.stack, list(which))
        # The chunks `evaluate` uses: the replicas' activations are K times larger, but so is the
        # work per kernel launch.
        x, y = split.x, split.y
        batch = eval_batch_size(self.stack.base, x.device)
        loss_sum = torch.zeros(sub.k, dtype=torch.float64, device=x.device)
        correct = torch.zeros(sub.k, dtype=torch.int64, device=x.device)
        for begin in range(0, len(x), batch):
            logits = sub(x[begin : begin + batch], shared=True)  # [k, n, classes]
            target = y[begin : begin + batch]
            n = len(target)
            losses = F.cross_entropy(logits.flatten(0, 1), target.repeat(sub.k), reduction="none")
            loss_sum += losses.view(sub.k, n).sum(1).double()
            correct += (logits.argmax(-1) == target).sum(1)
        n = max(len(x), 1)
        return list(zip((loss_sum / n).tolist(), (correct.double() / n).tolist(), strict=True))

    def copy_weights(self) -> list[dict[str, torch.Tensor]]:
        return [self.stack.state_dict(r) for r in range(self.replicas)]

    def write_back(self) -> None:
        """Copy each replica's weights into its model, as `train` leaves a model trained."""
        self.stack.write_back(self.models)

    def snapshot(self) -> dict[str, Any]:
        """Each replica's weights and optimiser state as `OneModel.snapshot` has them."""
        full = self.update.optimizer.state_dict()
        shapes = [p.shape for p in self.stack.params.values()]
        replicas = []
        for r in range(self.replicas):
            state = {
                i: {key: _slice(value, shapes[i], r) for key, value in per_param.items()}
                for i, per_param in full["state"].items()
            }
            optimizer = {"state": state, "param_groups": full["param_groups"]}
            replicas.append({"model": self.stack.state_dict(r), "optimizer": optimizer})
        return {"replicas": replicas}

    def restore(self, state: dict[str, Any]) -> None:
        states = state["replicas"]
        device = next(iter(self.stack.params.values())).device
        for r, replica in enumerate(states):
            self.stack.load_state_dict(r, replica["model"])
        first = states[0]["optimizer"]
        stacked_state = {
            i: {
                key: torch.stack([s["optimizer"]["state"][i][key] for s in states]).to(device)
                if torch.is_tensor(value) and value.dim() > 0
                else value
                for key, value in per_param.items()
            }
            for i, per_param in first["state"].items()
        }
        self.update.optimizer.load_state_dict({"state": stacked_state, "param_groups": first["param_groups"]})


def train_replicas(
    models: Sequence[nn.Module],
    data: Splits,
    config: TrainingConfig,
    *,
    seeds: Sequence[int],
    masks: Sequence[Mask] | None = None,
    start: int = 0,
    augment: bool = False,
    capture_at: int | None = None,
    checkpoint: Checkpoint | None = None,
    on_progress: Callable[[int], None] | None = None,
    engine: str = "auto",
) -> list[TrainResult]:
    """`train` for each of `models` at once: replica k has seed `seeds[k]` and mask `masks[k]`;
    all share the config, start and `capture_at`, and `checkpoint` saves them all in one go.
    Each model is left trained in place, as `train` leaves it. `on_progress` counts iterations
    summed over replicas. `engine` is the one-model engine's name (or "auto"); its replica engine
    computes the group (`engines.ONE_MODEL`).
    """
    if len(seeds) != len(models) or (masks is not None and len(masks) != len(models)):
        raise ValueError("train_replicas needs one seed (and one mask, if any) per model")
    if not all(replicable(m) for m in models):
        raise LthError(
            "models with dropout or batch norm cannot be trained as replicas; train them one by one"
        )
    choice = ONE_MODEL[engine_name(engine, models[0])]
    group = choice.build_replicas(models, data, config, seeds=seeds, masks=masks, augment=augment)
    results = run(
        group,
        data,
        config,
        seed=seeds[0],  # seeds only the global generator, which replicas never draw from (`replicable`)
        start=start,
        capture_at=capture_at,
        checkpoint=checkpoint,
        on_progress=on_progress,
    )
    group.write_back()
    return results


def _subset(stack: Replicas, which: list[int]) -> Replicas:
    sub = copy.copy(stack)
    index = torch.tensor(which, dtype=torch.long, device=next(iter(stack.params.values())).device)
    sub.k = len(which)
    sub.params = {n: t.detach().index_select(0, index) for n, t in stack.params.items()}
    sub.buffers = {n: t.index_select(0, index) for n, t in stack.buffers.items()}
    return sub


def _slice(value: Any, stacked_shape: torch.Size, r: int) -> Any:
    """Replica r's part of one optimiser state entry: per-weight tensors are stacked like the
    weights; scalars such as Adam's step count are shared."""
    if torch.is_tensor(value) and value.shape == stacked_shape:
        return value[r].clone()
    return value.clone() if torch.is_tensor(value) else value
