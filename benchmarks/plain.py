"""The baseline: the paper's protocol written the way a typical PyTorch user writes it.

A `DataLoader` over a `TensorDataset` (shuffled by a seeded generator), masks applied with
`torch.nn.utils.prune.custom_from_mask`, `torch.optim.Adam` with its defaults, and evaluation
of the validation and test sets under `torch.no_grad()` through `DataLoader`s every
`eval_every` steps, keeping the early-stop record (the first minimum of the validation loss).

It is deliberately *not* tuned: it is the code `lth`'s speed is measured against. It does the
same work as `lth.training.train`: the same batches per step, steps, optimiser, evaluation
schedule and sets (including iteration 0 and the last step), and the final training-set
evaluation `lth` always does at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

from lth.data import Splits
from lth.pruning import Mask

EVAL_BATCH = 1000


@dataclass
class PlainResult:
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    early_stop_iteration: int = -1
    early_stop_val_loss: float = math.inf
    early_stop_test_accuracy: float = math.nan
    final_test_accuracy: float = math.nan
    final_train_accuracy: float = math.nan

    def record(self) -> dict[str, float | int]:
        return {
            "early_stop_iteration": self.early_stop_iteration,
            "early_stop_val_loss": self.early_stop_val_loss,
            "early_stop_test_accuracy": self.early_stop_test_accuracy,
            "final_test_accuracy": self.final_test_accuracy,
            "final_train_accuracy": self.final_train_accuracy,
        }


def apply_masks(model: nn.Module, mask: Mask) -> None:
    """Prune each masked weight with PyTorch's own pruning utility: `weight` becomes
    `weight_orig * weight_mask`, recomputed by a forward pre-hook on every forward pass."""
    for name, m in mask.items():
        module_name, param_name = name.rsplit(".", 1)
        module = model.get_submodule(module_name)
        prune.custom_from_mask(module, param_name, m.to(getattr(module, param_name).device))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> tuple[float, float]:
    """(mean loss, accuracy) over a loader."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    model.train()
    return loss_sum / n, correct / n


def train(
    model: nn.Module,
    splits: Splits,
    mask: Mask,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    eval_every: int,
    final_train_eval: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> PlainResult:
    """Train `model` for `steps` steps, evaluating at 0, every `eval_every` steps and at the end
    (lth's schedule). `on_progress(steps_done)` is called after each evaluation but the first,
    as lth's `train` calls its own (the benchmark times blocks of steps with it)."""
    apply_masks(model, mask)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # drop_last: every step gets a full batch, as lth's (which leaves the epoch's remainder out).
    train_loader = DataLoader(
        TensorDataset(splits.train.x, splits.train.y),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    val_loader = DataLoader(TensorDataset(splits.val.x, splits.val.y), batch_size=EVAL_BATCH)
    test_loader = DataLoader(TensorDataset(splits.test.x, splits.test.y), batch_size=EVAL_BATCH)
    result = PlainResult(steps=steps)

    def evaluate_point(step: int) -> None:
        val_loss, val_acc = evaluate(model, val_loader)
        _, test_acc = evaluate(model, test_loader)
        result.history.append(
            {"iteration": step, "val_loss": val_loss, "val_accuracy": val_acc, "test_accuracy": test_acc}
        )
        if val_loss < result.early_stop_val_loss:  # strictly lower: the first minimum wins
            result.early_stop_iteration, result.early_stop_val_loss = step, val_loss
            result.early_stop_test_accuracy = test_acc
        result.final_test_accuracy = test_acc

    model.train()
    evaluate_point(0)
    step = last_eval = 0
    while step < steps:
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step % eval_every == 0 or step == steps:
                evaluate_point(step)
                if on_progress:
                    on_progress(step - last_eval)
                last_eval = step
            if step == steps:
                break
    if final_train_eval:
        train_eval_loader = DataLoader(TensorDataset(splits.train.x, splits.train.y), batch_size=EVAL_BATCH)
        _, result.final_train_accuracy = evaluate(model, train_eval_loader)
    return result
