"""Loss and accuracy over a whole split, in large no-grad batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Large batches make evaluation cheap for fully connected nets (LeNet: 10K at a time is ~1.8×
# faster than 2K on 2 CPU cores), but a conv net's activations at 10K examples take gigabytes
# (Conv-2 on 28×28: 10K × 64 × 28 × 28 floats = 2 GB per layer), so conv nets go 1K at a time.
FC_EVAL_BATCH = 10_000
CONV_EVAL_BATCH = 1_000


def eval_batch_size(model: nn.Module) -> int:
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    return CONV_EVAL_BATCH if has_conv else FC_EVAL_BATCH


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int | None = None
) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy as a fraction) of `model` on (x, y), in eval mode."""
    batch = batch or eval_batch_size(model)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, len(x), batch):
        logits = model(x[start : start + batch])
        target = y[start : start + batch]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(1) == target).sum()
    model.train(was_training)
    n = max(len(x), 1)
    return loss_sum.item() / n, correct.item() / n
