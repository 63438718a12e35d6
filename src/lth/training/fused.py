"""The fused engine: a fully connected ReLU network's step written out by hand over flat buffers.

Autograd, the optimiser's per-parameter loop and the mask's per-layer multiplies cost more than
the arithmetic of a small network's step: for LeNet-300-100 at batch 60 on 2 CPU cores the
eight matrix products of a step are about a quarter of `OneModel`'s step (benchmarks/RESULTS.md).
`FusedMLP` keeps every parameter in one flat buffer, with the gradient, the mask and the
optimiser state alike, so a step is the eight products, the element-wise passes a ReLU network
needs, one mask multiply and one fused optimiser call. It applies to networks that
`mlp_layers` recognises: flatten, then Linear layers with a ReLU between each (LeNet-300-100,
or a user's own such stack); `OneModel` trains everything else.

Survivors only: at high sparsity most of the flat buffer is pruned weights, which never change.
With `survivors=True` the optimiser works on a compacted copy of the live entries (weights the
mask keeps, and every bias): one gather of their gradients, one fused step over them, one
scatter back. Pruned weights are never written, so they stay exactly zero, and the optimiser has
no state for them (its snapshot shows zeros there, as `OneModel`'s has). With `sparse=True` as
well, a large layer at low density (`sparse_pays`) computes its forward product as CSR × dense
and its weight gradient only at its live weights (`torch.sparse.sampled_addmm`), the CSR matrix's
values being that layer's slice of the compact buffer. Both change where sums round, so these
options give the plain fused step's numbers within float rounding, not bit for bit (the
`sparse` engine in engines.py).

On a CUDA device the step is captured once as a CUDA graph and replayed (`graphs`): its shapes
are static (the batch is gathered through a preallocated index buffer, filled from the data
order already on the device, the learning rate is a device tensor, the cross-entropy's constants
are made once) and nothing in it waits on the host, so each step is one graph launch. The first
WARMUP_STEPS steps run eagerly on a side stream, as capture requires, and a restored checkpoint
is captured afresh. Sparse layers and augmentation (host-side random draws) train eagerly.

The arithmetic is that of `OneModel` (same products, same Adam or SGD) up to float rounding:
products may sum in another order. Checkpoints are `OneModel`'s own format (the model's
state_dict and a per-parameter optimiser state), so a run stopped under one engine resumes
under the other.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from lth.config import TrainingConfig
from lth.data import Split, Splits
from lth.pruning import Mask
from lth.training.engine import BatchOrder, augmented, make_optimizer
from lth.training.evaluate import eval_batch_size


def mlp_layers(model: nn.Module) -> list[nn.Linear] | None:
    """`model`'s Linear layers in order if its forward is exactly flatten → (Linear → ReLU)* →
    Linear, with nothing else (no dropout, no normalisation, no other op); else None.

    Read from the traced graph rather than the module's type, so a user's own MLP qualifies and
    a subclass that changes `forward` does not.
    """
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # any module fx cannot trace is simply not one we recognise
        return None
    modules = dict(model.named_modules())
    layers: list[nn.Linear] = []
    expect_linear = True  # after the input (or its flatten) and after each ReLU
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if _is_flatten(node, modules) and not layers:
            continue
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.Linear) and expect_linear:
            layers.append(modules[node.target])
            expect_linear = False
        elif _is_relu(node, modules) and not expect_linear:
            expect_linear = True
        else:
            return None
    if not layers or expect_linear:
        return None
    return layers


def layer_parameters(model: nn.Module, layers: list[nn.Linear]) -> tuple[list[str], list[str | None]]:
    """The names (in `model.named_parameters()`) of each layer's weight and bias (None if none)."""
    by_param = {id(p): name for name, p in model.named_parameters()}
    weights = [by_param[id(layer.weight)] for layer in layers]
    biases = [by_param[id(layer.bias)] if layer.bias is not None else None for layer in layers]
    return weights, biases


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Flattening all but the batch dimension, written any of the usual ways."""
    if node.op == "call_module":
        module = modules.get(node.target)
        return type(module) is nn.Flatten and (module.start_dim, module.end_dim) == (1, -1)
    if node.op == "call_method" and node.target == "flatten":
        return tuple(node.args[1:]) == (1,)
    return node.op == "call_function" and node.target is torch.flatten and tuple(node.args[1:]) == (1,)


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in (torch.relu, F.relu) and not node.kwargs.get("inplace", False)
    return node.op == "call_method" and node.target == "relu"


class FusedMLP:
    """The engine of one fully connected ReLU network, in flat buffers (see the module doc)."""

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
        survivors: bool = False,
        sparse: bool = False,
        graphs: bool | None = None,
    ):
        """`graphs`: capture the step as a CUDA graph (None: wherever it can be, on CUDA)."""
        layers = mlp_layers(model)
        if layers is None:
            raise ValueError("FusedMLP trains only flatten → (Linear → ReLU)* → Linear networks")
        device = data.train.x.device
        self.model = model
        self.params = dict(model.named_parameters())
        self.names = list(self.params)
        # One buffer each for the values, gradients and mask; every parameter is a view of a slice.
        self.slices = flat_slices({name: p.numel() for name, p in self.params.items()})
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.params.values()]).to(device)
        self.grad = torch.zeros_like(self.flat)
        keep = torch.ones_like(self.flat)
        for name, m in (mask or {}).items():
            keep[self.slices[name]] = m.reshape(-1).to(device)
        self.flat.mul_(keep)
        self.keep = keep if mask else None
        self.value, self.gradient = self._views(self.flat), self._views(self.grad)
        # Weight gradients are written as autograd computes them, xᵀg in [in, out]: see `step`.
        self.gradient_t = {name: view.t() for name, view in self.gradient.items() if view.dim() == 2}
        self.weight_names, self.bias_names = layer_parameters(model, layers)

        # Survivors only: the optimiser steps a compact copy of the live entries.
        self.live = keep.nonzero().squeeze(1) if survivors and mask else None
        if self.live is None:
            stepped, stepped_grad = self.value, self.gradient
        else:
            self.compact, self.compact_grad = self.flat[self.live], torch.empty(len(self.live), device=device)
            self.live_slices = flat_slices({name: int(keep[s].sum()) for name, s in self.slices.items()})
            stepped = {n: self.compact[s] for n, s in self.live_slices.items()}
            stepped_grad = {n: self.compact_grad[s] for n, s in self.live_slices.items()}
        self.optimizer = FusedOptimizer(list(stepped.values()), list(stepped_grad.values()), config)
        # Sparse layers: a CSR matrix whose values are the layer's slice of the compact buffer,
        # so the optimiser's in-place step updates it too (row-major order is CSR's order).
        self.csr: dict[str, torch.Tensor] = {}
        self.csr_grad: dict[str, torch.Tensor] = {}
        if sparse and self.live is not None:
            for name in self.weight_names:
                if name in mask and sparse_pays(mask[name]):
                    with warnings.catch_warnings():  # "sparse CSR support is in beta": tested here
                        warnings.simplefilter("ignore", UserWarning)
                        pattern = mask[name].to(device).to_sparse_csr()
                    # int32 indices: MKL's kernels take int32 and would convert int64 ones on
                    # every call (8 conversions a step, measured with the profiler).
                    rows, cols = pattern.crow_indices().int(), pattern.col_indices().int()
                    at = self.live_slices[name]
                    self.csr[name] = _csr(rows, cols, self.compact[at], pattern.shape)
                    # Its gradient, written by the sampled product straight into the compact
                    # gradient (as its own output: no copy of the pattern, no values to move).
                    self.csr_grad[name] = _csr(rows, cols, self.compact_grad[at], pattern.shape)

        # A CSR first layer's dense values are read by nothing in a step (its products use the CSR
        # matrix, and no input gradient goes through a first layer), so they are written to the
        # flat buffer only when it is read (`_sync`): a step then gathers and scatters only the
        # other layers' live weights, not most of them.
        self.eager: tuple[torch.Tensor, torch.Tensor] | None = None  # (compact, flat) positions
        self.stale = False
        if self.weight_names[0] in self.csr:
            first = torch.zeros_like(keep, dtype=torch.bool)
            first[self.slices[self.weight_names[0]]] = True
            at = (~first[self.live]).nonzero().squeeze(1)
            self.eager = at, self.live[at]

        self.order = BatchOrder(len(data.train), config.batch_size, seed, device)
        self.train_split, self.seed, self.augment = data.train, seed, augment
        batch = min(config.batch_size, len(data.train))
        self.x = torch.empty((batch, *data.train.x.shape[1:]), dtype=data.train.x.dtype, device=device)
        self.y = torch.empty(batch, dtype=data.train.y.dtype, device=device)
        self.idx = torch.empty(batch, dtype=torch.long, device=device)
        self.eval_batch = eval_batch_size(model, device)
        # Static inputs of a captured step: the learning rate as a tensor (read only by a captured
        # step, so only on CUDA, whose fused kernels compute in float32), the loss's constants.
        self.lr = torch.zeros((), dtype=torch.float32, device=device)
        self.ce_constants = loss_constants(batch, self.flat.dtype, device)
        can_capture = device.type == "cuda" and not self.csr and not augment
        if graphs and not can_capture:
            raise ValueError("CUDA graphs need a CUDA device, no sparse layers and no augmentation")
        self.graphs = can_capture if graphs is None else graphs
        self.graph: Any = None  # the captured step, once captured (torch.cuda.CUDAGraph)
        self.eager_steps = 0

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: flat[s].view(self.params[name].shape) for name, s in self.slices.items()}

    # --- the step ----------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor, keep: list[torch.Tensor] | None) -> torch.Tensor:
        """Logits of `x`; with `keep`, each layer's input is appended to it (for the backward).

        A CSR layer computes (W hᵀ)ᵀ and leaves its output transposed: a view of a contiguous
        [out, batch] tensor. The next layer's products read it as it is (BLAS takes transposed
        operands), and the backward computes that layer's input gradient in the same layout, so
        the ReLU's backward sees matching layouts and the sampled product gets gᵀ contiguous.
        Making either side contiguous cost a copy of a transposed tensor each (the profiler).
        """
        h = x.flatten(1)
        last = len(self.weight_names) - 1
        for i, (w, b) in enumerate(zip(self.weight_names, self.bias_names, strict=True)):
            if w in self.csr:  # (W hᵀ)ᵀ with W sparse
                # hᵀ contiguous once: MKL's CSR product and the sampled product each copied a
                # transposed view otherwise.
                h_t = h.t().contiguous()
                if keep is not None:
                    keep.append(h_t.t())
                bias = self.value[b].unsqueeze(1) if b is not None else torch.zeros(1, 1, device=h.device)
                h = torch.addmm(bias, self.csr[w], h_t).t()
            else:
                if keep is not None:
                    keep.append(h)
                weight = self.value[w]
                h = torch.addmm(self.value[b], h, weight.t()) if b is not None else h @ weight.t()
            if i < last:
                h = h.relu_()
        return h

    def step(self, iteration: int, lr: float) -> None:
        """One training step on iteration `iteration`'s batch at learning rate `lr`: eagerly, or
        as a replay of the captured step (see the module doc)."""
        self.idx.copy_(self.order.indices(iteration))  # on the device already: no host wait
        if self.graph is not None:
            self.lr.fill_(lr)
            self.graph.replay()
        elif not self.graphs:
            self._step(iteration, lr)
        elif self.eager_steps < WARMUP_STEPS:
            self._warm_up(iteration, lr)
        else:
            self.lr.fill_(lr)
            self._capture(iteration)
            self.graph.replay()

    def _warm_up(self, iteration: int, lr: float) -> None:
        """An eager step on a side stream: CUDA graphs are captured after a few (PyTorch's docs)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._step(iteration, lr)
        torch.cuda.current_stream().wait_stream(side)
        self.eager_steps += 1

    def _capture(self, iteration: int) -> None:
        """Record the step, reading the batch through `self.idx` and the rate from `self.lr`
        (capturing runs nothing: the caller replays it for this iteration)."""
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step(iteration, self.lr)

    def _step(self, iteration: int, lr: float | torch.Tensor) -> None:
        """Autograd's own step, written out: each product and gradient formula is the one
        autograd's backward uses, so this engine and `OneModel` agree to the last bit."""
        split = self.train_split
        torch.index_select(split.x, 0, self.idx, out=self.x)
        torch.index_select(split.y, 0, self.idx, out=self.y)
        x = augmented(self.x, self.seed, iteration) if self.augment else self.x
        inputs: list[torch.Tensor] = []
        logits = self._forward(x, inputs)
        g = cross_entropy_grad(logits, self.y, self.ce_constants)
        # (layer, g, h) of the CSR layers: their gradients are sampled into the compact buffer
        # after the gather below, which would overwrite them.
        sampled = []
        for i in reversed(range(len(self.weight_names))):
            h, w = inputs[i], self.weight_names[i]
            if w in self.csr:
                sampled.append((w, g, h))
            else:
                torch.mm(h.t(), g, out=self.gradient_t[w])
            if self.bias_names[i] is not None:
                torch.sum(g, 0, out=self.gradient[self.bias_names[i]])
            if i:  # through the product, then the ReLU whose output was `h`
                g = torch.ops.aten.threshold_backward(_times(g, self.value[w], like=h), h, 0)
        if self.live is None:
            if self.keep is not None:
                self.grad.mul_(self.keep)
            self.optimizer.step(lr)
        else:
            if self.eager is None:
                torch.index_select(self.grad, 0, self.live, out=self.compact_grad)
            else:
                self.compact_grad.index_copy_(0, self.eager[0], self.grad.index_select(0, self.eager[1]))
            for w, g, h in sampled:  # the gradient at the live weights only: gᵀh sampled at the mask
                # Zeroed first: the kernel computes beta·old + gᵀh, and 0·NaN (an unwritten
                # buffer's) is NaN.
                self.compact_grad[self.live_slices[w]] = 0.0
                torch.sparse.sampled_addmm(self.csr_grad[w], g.t(), h, beta=0.0, out=self.csr_grad[w])
            self.optimizer.step(lr)
            if self.eager is None:
                self.flat.index_copy_(0, self.live, self.compact)
            else:
                self.flat.index_copy_(0, self.eager[1], self.compact.index_select(0, self.eager[0]))
                self.stale = True

    def _sync(self) -> None:
        """Bring the flat buffer's lazily kept values (see `eager`) up to date."""
        if self.stale:
            self.flat.index_copy_(0, self.live, self.compact)
            self.stale = False

    # --- the rest of the engine --------------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self, split: Split, which: Sequence[int] | None = None) -> list[tuple[float, float]]:
        x, y = split.x, split.y
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        for begin in range(0, len(x), self.eval_batch):
            logits = self._forward(x[begin : begin + self.eval_batch], None)
            target = y[begin : begin + self.eval_batch]
            loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
            correct += (logits.argmax(1) == target).sum()
        n = max(len(x), 1)
        return [(loss_sum.item() / n, correct.item() / n)]

    def write_back(self) -> None:
        """Copy the trained weights into the model, as `train` leaves a model trained."""
        self._sync()
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.value[name])

    def copy_weights(self) -> list[dict[str, torch.Tensor]]:
        self.write_back()
        return [{k: v.detach().clone() for k, v in self.model.state_dict().items()}]

    def snapshot(self) -> dict[str, Any]:
        """`OneModel.snapshot`'s format: the model's state_dict and the optimiser's per-parameter
        state, zero at pruned weights (survivors only keep no state for them)."""
        self.write_back()
        optimizer = self.optimizer.state_dict()
        if self.live is not None:
            optimizer["state"] = {
                i: {key: self._expand(value, name) for key, value in optimizer["state"][i].items()}
                for i, name in enumerate(self.names)
                if i in optimizer["state"]
            }
        return {"model": self.model.state_dict(), "optimizer": optimizer}

    def restore(self, state: dict[str, Any]) -> None:
        # Loading replaces the optimiser's state tensors, which a captured step points into.
        self.graph, self.eager_steps = None, 0
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            for name, param in self.params.items():
                self.value[name].copy_(param)
        optimizer = state["optimizer"]
        if self.live is not None:
            self.compact.copy_(self.flat[self.live])
            optimizer = {
                "param_groups": optimizer["param_groups"],
                "state": {
                    i: {key: self._compact(value, name) for key, value in optimizer["state"][i].items()}
                    for i, name in enumerate(self.names)
                    if i in optimizer["state"]
                },
            }
        self.optimizer.load_state_dict(optimizer)

    def _expand(self, value: Any, name: str) -> Any:
        """A survivors-only optimiser state entry of parameter `name`, at the parameter's shape."""
        live = self.live[self.live_slices[name]]
        return self._through_flat(value, live, self.slices[name], self.params[name].shape)

    def _compact(self, value: Any, name: str) -> Any:
        """The reverse of `_expand`: the entry at parameter `name`'s live positions."""
        live = self.live[self.live_slices[name]]
        return self._through_flat(value, self.slices[name], live, live.shape)

    def _through_flat(
        self, value: Any, write: slice | torch.Tensor, read: slice | torch.Tensor, shape: torch.Size
    ) -> Any:
        """`value` written at positions `write` of a zero flat buffer, read back at `read`; a scalar
        entry (Adam's step count) is returned as it is."""
        if not (torch.is_tensor(value) and value.dim()):
            return value
        full = torch.zeros(self.flat.numel(), dtype=value.dtype, device=self.flat.device)
        full[write] = value.reshape(-1).to(self.flat.device)
        return full[read].reshape(shape).clone()


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A CSR matrix over `values` (a view, kept as it is), its indices valid by construction."""
    return torch.sparse_csr_tensor(rows, cols, values, size=shape, check_invariants=False)


def _times(g: torch.Tensor, weight: torch.Tensor, *, like: torch.Tensor) -> torch.Tensor:
    """g @ weight, laid out as `like`: transposed where `like` is a CSR layer's transposed output
    (`FusedMLP._forward`), so that the ReLU's backward reads both in one layout."""
    if like.is_contiguous():
        return g @ weight
    return torch.mm(weight.t(), g.t()).t()


# Sparse products pay for a layer at this density or below, if it has at least SPARSE_MIN_WEIGHTS
# weights. Measured on 2 CPU cores at batch 60 (benchmarks/RESULTS.md, "Sparse kernels"): LeNet's
# 300×784 layer's forward and weight gradient together are faster in CSR (torch.sparse.mm and
# sampled_addmm) at 10% density and below, slower at 20%; its 100×300 layer is not measurably
# faster at any density, its products being too small for the kernels' overhead.
SPARSE_DENSITY = 0.1
SPARSE_MIN_WEIGHTS = 100_000
WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured


def sparse_pays(mask: torch.Tensor) -> bool:
    """Whether a layer with this mask trains faster with sparse products."""
    return mask.numel() >= SPARSE_MIN_WEIGHTS and float(mask.mean()) <= SPARSE_DENSITY


class FusedOptimizer:
    """Adam or SGD (`make_optimizer`'s, with its settings) over given tensors and gradients, by
    one direct call of PyTorch's fused kernel per step.

    `torch.optim`'s `step` spends more time in Python (state lookups, a tensor learning rate)
    than its fused kernel spends on LeNet's 266K weights. This calls the same kernel the same way,
    once per parameter tensor in one list, so the numbers are `torch.optim`'s to the last bit.
    The state lives in a `torch.optim` optimiser over the same tensors, for `state_dict` and
    `load_state_dict` in its exact format.
    """

    def __init__(self, params: list[torch.Tensor], grads: list[torch.Tensor], config: TrainingConfig):
        self.params, self.grads = params, grads
        self.torch = make_optimizer(params, config)
        self.group = self.torch.param_groups[0]
        self.adam = isinstance(self.torch, torch.optim.Adam)
        if self.adam:
            for p in params:
                self.torch.state[p] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p),
                    "exp_avg_sq": torch.zeros_like(p),
                }
            self._share_counts()

    def _share_counts(self) -> None:
        """Make every parameter's Adam step count a view of one buffer, so that a step counts with
        one add: `torch._foreach_add_` over LeNet's six 0-dim counts took 13 µs, 1.5% of a sparse
        step (the profiler). The state keeps a tensor per parameter, as torch.optim's does."""
        state = self.torch.state
        self.counts = torch.stack([state[p]["step"] for p in self.params])
        for i, p in enumerate(self.params):
            state[p]["step"] = self.counts[i]
        self.steps, self.exp_avg, self.exp_avg_sq = (
            [state[p][key] for p in self.params] for key in ("step", "exp_avg", "exp_avg_sq")
        )

    def step(self, lr: float | torch.Tensor) -> None:
        """One step at `lr`: a float, or a 0-dim tensor (which a captured CUDA graph reads at each
        replay; the kernel's arithmetic is the same, tested)."""
        group, state = self.group, self.torch.state
        adam, sgd = torch._fused_adam_, torch._fused_sgd_
        if torch.is_tensor(lr):
            adam, sgd = torch.ops.aten._fused_adam_.tensor_lr, torch.ops.aten._fused_sgd_.tensor_lr
        if self.adam:
            self.counts.add_(1)
            beta1, beta2 = group["betas"]
            adam(
                self.params,
                self.grads,
                self.exp_avg,
                self.exp_avg_sq,
                [],
                self.steps,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                amsgrad=False,
                maximize=False,
            )
            return
        momentum = group["momentum"]
        first = momentum != 0 and not state
        if first:  # as torch.optim.SGD: the first step's buffer is the gradient itself
            for p in self.params:
                state[p]["momentum_buffer"] = torch.empty_like(p)
        sgd(
            self.params,
            self.grads,
            [state[p]["momentum_buffer"] for p in self.params] if momentum else [],
            weight_decay=group["weight_decay"],
            momentum=momentum,
            lr=lr,
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=False,
            is_first_step=first,
        )

    def state_dict(self) -> dict[str, Any]:
        return self.torch.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.torch.load_state_dict(state)  # new state tensors: shared again
        if self.adam:
            self._share_counts()


def flat_slices(sizes: dict[str, int]) -> dict[str, slice]:
    """Consecutive slices of a flat buffer, one per name, of the given sizes."""
    slices, offset = {}, 0
    for name, size in sizes.items():
        slices[name], offset = slice(offset, offset + size), offset + size
    return slices


def loss_constants(batch: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch size and 1 as tensors, for `cross_entropy_grad`: made once, since making a tensor
    from a Python number inside a captured CUDA graph is a host-to-device copy it cannot hold."""
    return torch.tensor(float(batch), dtype=dtype, device=device), torch.ones((), dtype=dtype, device=device)


def cross_entropy_grad(
    logits: torch.Tensor, target: torch.Tensor, constants: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """d(mean cross-entropy)/d(logits), (softmax − one-hot) / batch, by the kernels autograd's
    backward uses, so that it is the same to the last bit. `constants`: `loss_constants` for
    this batch size, where the caller keeps them."""
    log_p = torch.log_softmax(logits, 1)
    total, one = constants or loss_constants(len(target), logits.dtype, logits.device)
    grad_log_p = torch.ops.aten.nll_loss_backward(one, log_p, target, None, 1, -100, total)  # 1: mean
    return torch.ops.aten._log_softmax_backward_data(grad_log_p, log_p, 1, logits.dtype)
