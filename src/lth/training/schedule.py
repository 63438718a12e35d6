"""Learning-rate schedule: linear warmup from 0, then step decay at milestones."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LrSchedule:
    base_lr: float
    warmup: int = 0  # iterations of linear warmup from 0 to base_lr
    milestones: tuple[int, ...] = ()  # iterations at which lr is multiplied by gamma
    gamma: float = 0.1

    def __call__(self, iteration: int) -> float:
        """The learning rate used for the step taken at `iteration` (0-based)."""
        lr = self.base_lr
        if self.warmup and iteration < self.warmup:
            lr *= iteration / self.warmup
        return lr * self.gamma ** sum(1 for m in self.milestones if iteration >= m)
