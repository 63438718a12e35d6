"""Benchmark group: LeNet-300-100 on MNIST, the paper's protocol, plain loop vs lth."""

from __future__ import annotations

import flops
import workloads
from core import Context, GroupResult
from plain_vs_lth import Plan, run_group


def run(ctx: Context) -> GroupResult:
    ctx.log("lenet: loading MNIST")
    workload = workloads.lenet_mnist(device=ctx.device)
    plan = Plan(
        per_step_splits=workload.splits,
        per_step_block=100,
        per_step_blocks=4 if ctx.quick else 5,
        per_step_repeats=3 if ctx.quick else 5,  # more, shorter runs: pairs closer in time
        e2e_splits=workload.splits,
        e2e_steps=1000 if ctx.quick else 5000,
        e2e_repeats=2 if ctx.quick else 3,
        time_lth_default=True,
        breakdown_steps=200 if ctx.quick else 500,
        breakdown_repeats=2 if ctx.quick else 3,
        step_flops=flops.lenet_step_flops(workload.batch_size),
        min_plain_accuracy=0.9,
    )
    counted = flops.training_step_flops(
        workload.fresh_model(), workload.splits.input_shape, workload.batch_size
    )
    # The formula and the hook count must agree, or the Conv-2 count is not to be trusted.
    assert counted == plan.step_flops, (counted, plan.step_flops)
    result = run_group(ctx, workload, plan)
    result.data["quick"] = ctx.quick
    if ctx.quick:
        result.data["quick_note"] = f"end to end over {plan.e2e_steps:,} steps, not the issue's 5,000"
    return result
