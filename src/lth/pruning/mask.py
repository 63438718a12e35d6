"""`Mask`: which weights of each prunable layer survive (1) and which are pruned (0)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
