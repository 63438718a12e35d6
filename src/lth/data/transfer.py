"""Copies from the host to a device that never make the host wait for the device."""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`; from the CPU to a CUDA device, queued without making the host wait.

    A copy from pageable host memory first waits for every kernel already queued on the stream
    (NVIDIA's "API synchronization behavior"), so a training step that copied its batch's indices
    or augmentation draws that way could not be queued before the step ahead of it had finished.
    A copy from pinned memory is queued like a kernel; PyTorch's pinned allocator keeps the source
    until the copy has run.
    """
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
