"""Benchmark group: Conv-2 at batch 60 on CIFAR-10-shaped random tensors, plain loop vs lth.

Conv-2 takes a good fraction of a second per step on 2 CPU cores and evaluating CIFAR-10's
15K validation and test examples takes tens of seconds, so the runs are short and the sets
small: what was run is in the table's labels and the JSON. The final training-set evaluation
that `lth` does (and the plain loop mirrors) runs over the whole of the (reduced) training set,
which is why it is small too.
"""

from __future__ import annotations

import flops
import workloads
from core import Context, GroupResult
from plain_vs_lth import Plan, run_group


def run(ctx: Context) -> GroupResult:
    if ctx.quick:
        train, val, test, steps = 600, 250, 500, 100
    else:
        train, val, test, steps = 1200, 500, 1000, 200
    ctx.log(f"conv2: random CIFAR-10-shaped data, {train}/{val}/{test}")
    workload = workloads.conv2_random(train, val, test, device=ctx.device)
    plan = Plan(
        # 5 batches: lth's final training-set evaluation (after the clock stops) stays short.
        per_step_splits=workloads.head(workload.splits, train=300),
        per_step_block=3 if ctx.quick else 4,
        per_step_blocks=2 if ctx.quick else 3,
        per_step_repeats=2 if ctx.quick else 3,
        e2e_splits=workload.splits,
        e2e_steps=steps,
        e2e_repeats=2,  # one pair is at the mercy of one burst of load
        time_lth_default=False,  # a third Conv-2 run would not fit the time budget
        breakdown_steps=2 if ctx.quick else 3,
        breakdown_repeats=2,
        step_flops=flops.training_step_flops(
            workload.fresh_model(), workload.splits.input_shape, workload.batch_size
        ),
        min_plain_accuracy=None,  # random labels: nothing to learn
    )
    result = run_group(ctx, workload, plan)
    result.data["quick"] = ctx.quick
    return result
