"""K fully connected ReLU networks as one batched fused step: `fused.FusedMLP` for replicas.

The trainings of a level (trials, a ticket and its controls) are independent; for networks the
fused engine takes, K of them train here with batched products (`torch.bmm`) over stacked
weights, each with its own weights, mask, data order and optimiser state, as `ReplicaGroup`
(replicas.py) trains them with `vmap` and autograd. One flat buffer holds every parameter, each
as a contiguous [K, ...] block, with the gradients, masks and optimiser state alike; a step is the
batched products, the element-wise passes, one mask multiply and one fused optimiser call.

The numbers are those of K separate trainings by the fused (or autograd) engine, bit for bit on a
CPU: a batched product sums each replica's slice as the single product does, the loss gradient
uses autograd's kernels, and the optimiser steps each replica's parameters as separate tensors
(tested). `ReplicaGroup`'s vmap is equal only up to float rounding. Checkpoints are
`ReplicaGroup`'s format, so either engine resumes the other's.
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
from lth.training.engine import BatchOrder, augmented
from lth.training.evaluate import eval_batch_size
from lth.training.fused import FusedOptimizer, flat_slices, layer_parameters, mlp_layers


class FusedReplicas:
    """The engine of K fully connected ReLU networks of one architecture, stacked (see above)."""

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
        layers = mlp_layers(models[0])
        if layers is None:
            raise ValueError("FusedReplicas trains only flatten → (Linear → ReLU)* → Linear networks")
        device = data.train.x.device
        self.models, self.replicas = list(models), len(models)
        k = self.replicas
        params = dict(models[0].named_parameters())
        self.names, self.shapes = list(params), {n: p.shape for n, p in params.items()}
        self.slices = flat_slices({n: k * p.numel() for n, p in params.items()})
        self.flat = torch.cat(
            [
                torch.stack([dict(m.named_parameters())[n].detach() for m in models]).reshape(-1)
                for n in params
            ]
        ).to(device)
        self.grad = torch.zeros_like(self.flat)
        self.keep = None
        if masks is not None:
            self.keep = torch.ones_like(self.flat)
            for name in masks[0]:
                self.keep[self.slices[name]] = torch.stack([m[name] for m in masks]).reshape(-1).to(device)
            self.flat.mul_(self.keep)
        self.value, self.gradient = self._views(self.flat), self._views(self.grad)
        # xᵀg per replica, [K, in, out], written into the [K, out, in] gradient (see FusedMLP.step).
        self.gradient_t = {n: v.transpose(1, 2) for n, v in self.gradient.items() if v.dim() == 3}
        self.weight_names, self.bias_names = layer_parameters(models[0], layers)
        # The optimiser steps each replica's parameters as their own tensors (views, replica by
        # replica), as separate trainings' optimisers do: over a stacked tensor, its vectorised
        # kernel would round elements at the seams between replicas differently.
        per_replica = [(n, r) for r in range(k) for n in self.names]
        self.optimizer = FusedOptimizer(
            [self.value[n][r] for n, r in per_replica], [self.gradient[n][r] for n, r in per_replica], config
        )

        self.orders = [BatchOrder(len(data.train), config.batch_size, s, device) for s in seeds]
        self.train_split, self.seeds, self.augment = data.train, list(seeds), augment
        self.batch = min(config.batch_size, len(data.train))
        self.eval_batch = eval_batch_size(models[0], device)

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: flat[s].view(self.replicas, *self.shapes[n]) for n, s in self.slices.items()}

    def _forward(
        self, x: torch.Tensor, which: Sequence[int] | None, keep: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """Logits [k, n, classes] of inputs [K, n, ...] (each replica its own) or, with `which`,
        of inputs [n, ...] that every replica in `which` sees. `baddbmm` computes each replica's
        slice exactly as `addmm` computes one model's."""
        h = x.flatten(2) if which is None else x.flatten(1).expand(len(which), *x.flatten(1).shape)
        last = len(self.weight_names) - 1
        for i, (w, b) in enumerate(zip(self.weight_names, self.bias_names, strict=True)):
            if keep is not None:
                keep.append(h)
            weight = self.value[w] if which is None else self.value[w][which]
            if b is None:
                h = torch.bmm(h, weight.transpose(1, 2))
            else:
                bias = self.value[b] if which is None else self.value[b][which]
                h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if i < last:
                h = h.relu_()
        return h

    def step(self, iteration: int, lr: float) -> None:
        split = self.train_split
        idx = torch.stack([order.indices(iteration) for order in self.orders])
        x, y = split.x[idx], split.y[idx]  # [K, B, ...]
        if self.augment:
            x = torch.stack([augmented(x[r], seed, iteration) for r, seed in enumerate(self.seeds)])
        inputs: list[torch.Tensor] = []
        logits = self._forward(x, None, inputs)
        g = _replica_cross_entropy_grad(logits, y)
        for i in reversed(range(len(self.weight_names))):
            h, w = inputs[i], self.weight_names[i]
            torch.bmm(h.transpose(1, 2), g, out=self.gradient_t[w])
            if self.bias_names[i] is not None:
                torch.sum(g, 1, out=self.gradient[self.bias_names[i]])
            if i:
                g = torch.ops.aten.threshold_backward(torch.bmm(g, self.value[w]), h, 0)
        if self.keep is not None:
            self.grad.mul_(self.keep)
        self.optimizer.step(lr)

    @torch.inference_mode()
    def evaluate(self, split: Split, which: Sequence[int] | None = None) -> list[tuple[float, float]]:
        which = list(range(self.replicas)) if which is None else list(which)
        x, y = split.x, split.y
        loss_sum = torch.zeros(len(which), dtype=torch.float64, device=x.device)
        correct = torch.zeros(len(which), dtype=torch.int64, device=x.device)
        for begin in range(0, len(x), self.eval_batch):
            logits = self._forward(x[begin : begin + self.eval_batch], which, None)  # [k, n, classes]
            target = y[begin : begin + self.eval_batch]
            for r in range(len(which)):  # as `evaluate` sums one model's loss, to the last bit
                loss_sum[r] += F.cross_entropy(logits[r], target, reduction="sum").double()
            correct += (logits.argmax(-1) == target).sum(1)
        n = max(len(x), 1)
        return list(zip((loss_sum / n).tolist(), (correct.double() / n).tolist(), strict=True))

    def _state_dict(self, r: int) -> dict[str, torch.Tensor]:
        params = {n: self.value[n][r].clone() for n in self.names}
        return {**self.models[r].state_dict(), **params}

    def copy_weights(self) -> list[dict[str, torch.Tensor]]:
        return [self._state_dict(r) for r in range(self.replicas)]

    def write_back(self) -> None:
        for r, model in enumerate(self.models):
            model.load_state_dict(self._state_dict(r))

    def snapshot(self) -> dict[str, Any]:
        """`ReplicaGroup.snapshot`'s format: each replica's state as one model's engine keeps it."""
        full, count = self.optimizer.state_dict(), len(self.names)
        groups = [{**full["param_groups"][0], "params": list(range(count))}]
        replicas = []
        for r in range(self.replicas):
            state = {i: full["state"][r * count + i] for i in range(count) if r * count + i in full["state"]}
            replicas.append(
                {"model": self._state_dict(r), "optimizer": {"state": state, "param_groups": groups}}
            )
        return {"replicas": replicas}

    def restore(self, state: dict[str, Any]) -> None:
        states, count = state["replicas"], len(self.names)
        with torch.no_grad():
            for name in self.names:
                self.value[name].copy_(torch.stack([s["model"][name] for s in states]))
        full = {
            r * count + i: per_param
            for r, s in enumerate(states)
            for i, per_param in s["optimizer"]["state"].items()
        }
        group = {**states[0]["optimizer"]["param_groups"][0], "params": list(range(self.replicas * count))}
        self.optimizer.load_state_dict({"state": full, "param_groups": [group]})


def _replica_cross_entropy_grad(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d(Σ_k mean_b cross-entropy)/d(logits) for logits [K, B, C]: each replica's own gradient,
    by the kernels autograd uses for `ReplicaGroup`'s loss (per-example losses, a mean per replica)."""
    k, b, c = logits.shape
    log_p = torch.log_softmax(logits.reshape(k * b, c), 1)
    per_example = torch.full((k * b,), 1.0 / b, dtype=logits.dtype, device=logits.device)
    total = torch.ones((), dtype=logits.dtype, device=logits.device)
    grad_log_p = torch.ops.aten.nll_loss_backward(
        per_example, log_p, target.reshape(-1), None, 0, -100, total
    )
    return torch.ops.aten._log_softmax_backward_data(grad_log_p, log_p, 1, logits.dtype).view(k, b, c)
