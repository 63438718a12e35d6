"""`Mask`: which weights of each prunable layer survive (1) and which are pruned (0)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load, save
from torch import nn


class Mask(Mapping[str, torch.Tensor]):
    """Weight-parameter name → 0/1 float tensor of the parameter's shape.

    Only the layers that pruning may touch are in a mask; every other parameter is dense.
    Tensors are float so that applying a mask is one in-place multiply.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        # Layers in sorted order, whatever order they came in (safetensors does not keep it), so
        # anything that walks a mask, such as drawing a random one, is the same after a reload.
        self._tensors = {name: tensors[name].detach().to(torch.float32) for name in sorted(tensors)}

    @classmethod
    def ones(cls, model: nn.Module, names: list[str]) -> Mask:
        params = dict(model.named_parameters())
        return cls({name: torch.ones_like(params[name], dtype=torch.float32) for name in names})

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def to(self, device: torch.device | str) -> Mask:
        return Mask({name: t.to(device) for name, t in self._tensors.items()})

    # --- counting ----------------------------------------------------------------------------

    def remaining(self) -> dict[str, int]:
        """Surviving weights per layer."""
        return {name: int(t.sum().item()) for name, t in self._tensors.items()}

    def sizes(self) -> dict[str, int]:
        return {name: t.numel() for name, t in self._tensors.items()}

    def fraction_remaining(self) -> float:
        """Pm as a fraction: surviving prunable weights over all prunable weights."""
        total = sum(self.sizes().values())
        return sum(self.remaining().values()) / total if total else 1.0

    def fraction_remaining_all(self, shapes: Mapping[str, Sequence[int]]) -> float:
        """Pm over all weights as a fraction, the paper's Pm: this mask's survivors plus every
        weight of the layers it does not prune, over all weights.

        `shapes` is a model's state dict as names → shapes. Its weights are its tensors of two or
        more dimensions: the weight of every conv and linear layer (and of any other such layer a
        user's module has, e.g. an embedding). Biases and batch norm's scales, shifts and running
        statistics are 1-D and are not weights here, as in the paper's weight counts. For
        ResNet-20 the unpruned output layer and 1×1 shortcuts count as remaining; where every
        weight is prunable this equals `fraction_remaining`.
        """
        sizes = {name: math.prod(shape) for name, shape in shapes.items() if len(shape) >= 2}
        sizes |= self.sizes()
        remaining = self.remaining()
        total = sum(sizes.values())
        return sum(remaining.get(name, size) for name, size in sizes.items()) / total if total else 1.0

    def layer_fractions(self) -> dict[str, float]:
        sizes = self.sizes()
        return {name: n / sizes[name] for name, n in self.remaining().items()}

    # --- using -------------------------------------------------------------------------------

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> nn.Module:
        """Zero the pruned weights of `model` in place."""
        params = dict(model.named_parameters())
        for name, m in self._tensors.items():
            params[name].mul_(m)
        return model

    # --- storing -----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return save({name: t.to(torch.bool).cpu().contiguous() for name, t in self._tensors.items()})

    @classmethod
    def from_bytes(cls, data: bytes) -> Mask:
        return cls(load(data))

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Mask:
        return cls.from_bytes(Path(path).read_bytes())
