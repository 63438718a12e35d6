"""uint8 pixels → normalised float32 tensors, in one vectorised pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Map uint8 `pixels` (N×C×H×W) to float32 ((p / 255) − mean[c]) / std[c] per channel c.

    The same values as torchvision's ToTensor + Normalize, computed in place on one new tensor.
    """
    shape = (1, -1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(shape)
    return pixels.to(torch.float32).div_(255.0).sub_(mean_t).div_(std_t)
