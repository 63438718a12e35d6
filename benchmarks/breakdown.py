"""Where one level of `lth` training spends its time: the pieces of its step, and evaluation.

The step is `lth.training.loop.OneModel.step` with `engine.MaskedUpdate` taken apart (kept in
step with them by hand: internals, not an API): the batch gather by indices from a seeded
per-epoch permutation, the forward pass and cross-entropy, `zero_grad` and backward,
`param.grad.mul_(mask)` per masked layer, and the fused Adam step. Each piece is timed inside
one ordinary run of steps, so the caches are as warm or cold as they are in training.
Evaluation is `lth`'s own `evaluate`.

A level's time per step is the step's pieces plus evaluation amortised over the paper's
schedule (validation and test every `eval_every` steps; one training-set evaluation at the
end of a level of `level_steps`). Shares of the level are only meaningful if every piece saw
the same load, so each repeat times all of them back to back (steps, then the evaluations,
then `lth`'s real step), computes its shares, and the medians over repeats are reported. The
real step, timed through `lth.training.train` in the same repeat, checks the reproduction:
"sum of parts ÷ lth's step" should be about 1.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import comparison
from lth.data import Split, Splits
from lth.training import evaluate
from timing import Spread, clock
from workloads import Workload

STEP_PARTS = ("data", "forward_backward", "masking", "optimizer")


class _ReproducedSteps:
    """`lth`'s training step, reproduced piece by piece with a clock around each piece."""

    def __init__(self, workload: Workload, seed: int = 0):
        self.model = workload.fresh_masked()
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=workload.lr, fused=True)
        params = dict(self.model.named_parameters())
        self.masked = [(params[name], m) for name, m in workload.mask.to(workload.device).items()]
        self.train = workload.splits.train
        self.batch = workload.batch_size
        self.per_epoch = max(len(self.train) // self.batch, 1)
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(self.train), generator=self.generator)
        self.iteration = 0

    def run(self, steps: int) -> dict[str, float]:
        """Seconds per step of each piece, over `steps` steps."""
        totals = dict.fromkeys(STEP_PARTS, 0.0)
        for _ in range(steps):
            t0 = clock()
            offset = self.iteration % self.per_epoch
            idx = self.perm[offset * self.batch : (offset + 1) * self.batch].to(self.train.x.device)
            x, y = self.train.x[idx], self.train.y[idx]
            t1 = clock()
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t2 = clock()
            for param, m in self.masked:
                param.grad.mul_(m)
            t3 = clock()
            self.optimizer.step()
            t4 = clock()
            for part, seconds in zip(STEP_PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                totals[part] += seconds
            self.iteration += 1
        parts = {part: total / steps for part, total in totals.items()}
        # One fresh permutation per epoch (lth's batch order), amortised over the epoch's steps.
        n = len(self.train)
        parts["data"] += _seconds(lambda: torch.randperm(n, generator=self.generator)) / self.per_epoch
        return parts


def _seconds(fn: Callable[[], object]) -> float:
    start = clock()
    fn()
    return clock() - start


def level_breakdown(
    workload: Workload, steps: int, repeats: int, lth_splits: Splits, lth_block: int
) -> dict[str, Any]:
    """Seconds per step of each piece of a level and its share of the level, medians over
    `repeats` repeats of: `steps` reproduced steps, the evaluations, `lth`'s real step (timed on
    `lth_splits` in blocks of `lth_block` steps).

    Evaluation is timed on the workload's splits; where they are smaller than the paper's
    (`real_sizes`), its time is scaled up per example to the paper's sizes and marked so.
    The training set is timed on a sample as large as the test set, also scaled.
    """
    steps_model = _ReproducedSteps(workload)
    eval_model = workload.fresh_masked()
    train = workload.splits.train
    n_sample = min(len(train), len(workload.splits.test))
    eval_splits = {
        "val": workload.splits.val,
        "test": workload.splits.test,
        "train": Split(train.x[:n_sample], train.y[:n_sample]),
    }
    every = {"val": workload.eval_every, "test": workload.eval_every, "train": workload.level_steps}
    labels: dict[str, str] = {}
    scale: dict[str, float] = {}
    for name, split in eval_splits.items():
        real, timed = workload.real_sizes[name], len(split)
        size = f"{real:,}" if real == timed else f"{real:,}, timed on {timed:,}"
        labels[name] = f"eval: {name} ({size}) once per {every[name]:,} steps"
        scale[name] = real / timed  # the same forward pass over more examples: scale per example

    steps_model.run(max(steps // 4, 1))  # warm-up, not counted
    evaluate(eval_model, eval_splits["val"].x[:1], eval_splits["val"].y[:1])
    runs: list[dict[str, float]] = []
    checks: list[float] = []
    for _ in range(repeats):
        per_step = {f"step: {part}": s for part, s in steps_model.run(steps).items()}
        for name, split in eval_splits.items():
            seconds = _seconds(lambda split=split: evaluate(eval_model, split.x, split.y))
            per_step[labels[name]] = seconds * scale[name] / every[name]
        lth_step = comparison.lth_step_seconds(workload, lth_splits, lth_block)
        checks.append(sum(per_step[f"step: {part}"] for part in STEP_PARTS) / lth_step)
        runs.append(per_step)

    names = list(runs[0])
    shares = [{name: run[name] / sum(run.values()) for name in names} for run in runs]
    return {
        "steps_timed": steps,
        "repeats": repeats,
        "level": {"steps": workload.level_steps, "eval_every": workload.eval_every},
        "note": "each repeat times every piece back to back; medians over repeats. Test counted at "
        "every evaluation (the paper's protocol); lth's test_curve=false default evaluates it only at "
        "new validation-loss minima, so spends less there",
        "scaled": {
            name: f"timed on {len(s):,}, scaled to {workload.real_sizes[name]:,}"
            for name, s in eval_splits.items()
            if scale[name] != 1
        },
        "seconds_per_step": {name: statistics.median(run[name] for run in runs) for name in names},
        "share_of_level": {name: statistics.median(share[name] for share in shares) for name in names},
        "step_parts_over_lth_step": Spread.of(checks).as_dict(),
        "per_repeat": runs,
    }
