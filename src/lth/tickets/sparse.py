"""`lth.sparse_model`: a ticket's masked fully connected layers as CSR products, for inference.

Only `nn.Linear` layers become sparse. A convolution stays dense (its mask made permanent by
`prune.remove`): as an unfolded (im2col) input times a CSR weight it was slower than PyTorch's
dense convolution at every density and batch measured, on 2 CPU cores with 1 thread, torch
2.13 (MKL): Conv-2's 3→64 and 64→64 3×3 layers on 32×32 inputs, at 3.6%, 10% and 30% density,
batch 1 and 100, ran at 0.12–0.83× the dense speed (benchmarks/RESULTS.md, "Tickets").

The CSR weight keeps int32 indices: PyTorch's CPU kernels (MKL's) take int32, and int64 indices
were converted on every call (measured: a third slower at batch 1).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from lth.errors import ConfigError
from lth.training.fused import mlp_layers


def _matvec(weight: torch.Tensor, bias: torch.Tensor | None, v: torch.Tensor) -> torch.Tensor:
    """W v + b for one example, W dense or CSR."""
    return torch.mv(weight, v) if bias is None else torch.addmv(bias, weight, v)


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W a CSR matrix of the surviving weights (`torch.addmm` with a sparse
    first operand, computed as (W xᵀ)ᵀ). Inference only: W is a buffer, not a parameter."""

    def __init__(self, weight: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        keep = keep.bool()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": tested (tests/test_tickets.py)
            warnings.simplefilter("ignore", UserWarning)
            pattern = keep.to_sparse_csr()
            csr = torch.sparse_csr_tensor(
                pattern.crow_indices().int(),
                pattern.col_indices().int(),
                weight.detach()[keep],  # row-major: CSR's order
                size=weight.shape,
            )
        self.register_buffer("weight", csr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The buffers straight from `_buffers`: `nn.Module.__getattr__` costs about 1 µs a lookup,
        # an eighth of a whole sparse product at batch 1.
        weight, bias = self._buffers["weight"], self._buffers["bias"]
        if x.numel() == self.in_features:
            # One example: the sparse matrix-vector product. MKL's CSR `addmv` costs about half of
            # `addmm` with a one-column operand (LeNet's 300×784 layer at 3.5% density, 1 thread:
            # 7.8 µs against 15 µs; benchmarks/RESULTS.md, "Tickets").
            return _matvec(weight, bias, x.reshape(-1)).view(*x.shape[:-1], self.out_features)
        flat = x.reshape(-1, self.in_features).t()
        y = torch.sparse.mm(weight, flat) if bias is None else torch.addmm(bias.unsqueeze(1), weight, flat)
        return y.t().reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        density = self.weight.values().numel() / (self.out_features * self.in_features)
        return f"in_features={self.in_features}, out_features={self.out_features}, density={density:.4f}"


class SparseMLP(nn.Module):
    """A flatten → (Linear → ReLU)* → Linear network (`fused.mlp_layers`) for inference, its layers
    (`SparseLinear` or `nn.Linear`) run back to back in one forward.

    At batch 1 the products of a sparse ticket are so cheap that Python's cost per module call
    and per tensor op (about 20 µs of LeNet's forward) would hide what they save; one forward
    that calls no sub-module, takes matrix-vector products for a single example (dense layers
    too: `addmv` costs half of `addmm` with one row), and applies ReLU in place does not."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self._plan: list[tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def _apply(self, fn, recurse=True):
        self._plan = None  # `.to()` and the like replace the tensors the plan holds
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._plan is None:  # the tensors themselves: `nn.Module.__getattr__` costs 1 µs a lookup
            self._plan = [(layer.weight, layer.bias) for layer in self.layers]
        last = len(self._plan) - 1
        if x.shape[0] == 1:  # one example
            h = x.reshape(-1)
            for i, (weight, bias) in enumerate(self._plan):
                h = _matvec(weight, bias, h)
                if i < last:
                    h.relu_()
            return h.unsqueeze(0)
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                h.relu_()
        return h


@torch.no_grad()
def sparse_model(
    model: nn.Module, mask: Mapping[str, torch.Tensor] | None = None, *, max_density: float = 1.0
) -> nn.Module:
    """A copy of `model` for inference, in eval mode, with each masked `nn.Linear` whose density is at
    most `max_density` replaced by a `SparseLinear`; numerically the masked model within float
    rounding (the sums run in another order).

    The mask is the one `torch.nn.utils.prune` attached (`lth.load_ticket`'s models), or `mask`
    (weight name → 0/1, e.g. a `lth.Mask`) for a plain model. Every other masked layer keeps its
    zeros as a dense weight. A flatten → (Linear → ReLU)* → Linear network (LeNet, or a user's own
    MLP) comes back as one `SparseMLP` of its layers, whose forward has no per-layer module call.
    Where sparse products pay depends on the batch and the machine: see `make bench` (group
    `tickets`) and benchmarks/RESULTS.md for the measured break-even Pm.
    """
    _refresh_pruned(model)
    net = copy.deepcopy(model).eval()
    masks = _masks(net, mask)
    if not masks:
        raise ConfigError(
            "the model has no masked layer: give a model from lth.load_ticket (masked by "
            "torch.nn.utils.prune) or mask={weight name: 0/1 tensor}"
        )
    layers = mlp_layers(net)
    names = {id(m): name for name, m in net.named_modules()}
    mlp = None if layers is None else [names[id(layer)] for layer in layers]
    for name, keep in masks.items():
        module_name, _, param = name.rpartition(".")
        module = net.get_submodule(module_name)
        if prune.is_pruned(module) and hasattr(module, f"{param}_mask"):
            prune.remove(module, param)  # the weight with zeros, as a plain parameter
        weight = getattr(module, param)
        weight.mul_(keep.to(weight.dtype))
        dense_enough = keep.float().mean().item() > max_density
        if isinstance(module, nn.Linear) and param == "weight" and not dense_enough:
            _replace(net, module_name, SparseLinear(weight, keep, module.bias))
    if mlp is not None:
        return SparseMLP([net.get_submodule(name) for name in mlp]).eval()
    return net


def _masks(net: nn.Module, given: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Weight name → mask: `given`, else the masks `torch.nn.utils.prune` attached."""
    if given is not None:
        return {name: t.detach() for name, t in given.items()}
    return {
        f"{module_name}.{name.removesuffix('_mask')}".lstrip("."): buffer.detach().clone()
        for module_name, module in net.named_modules()
        for name, buffer in module.named_buffers(recurse=False)
        if name.endswith("_mask") and prune.is_pruned(module)
    }


def _refresh_pruned(model: nn.Module) -> None:
    """Recompute each pruned weight (`weight_orig` × `weight_mask`) without autograd, as prune's own
    hook does before a forward: after a forward with gradients it is a non-leaf tensor, which
    `copy.deepcopy` refuses."""
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                hook(module, None)


def _replace(net: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent_name), child, new)
