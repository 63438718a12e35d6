"""Benchmark group: K trainings as one vectorised model (lth's replicas) against one at a time.

Per replica-step: `lth.training.train_replicas` on K copies of the workload (same θ0 and mask,
seeds 0..K-1, so K data orders) against `lth.training.train` on one, taking turns with a matmul
peak measurement. End to end: K = 16 LeNet replicas with the paper's evaluation schedule (lth's
default evaluation) against the plain loop, in training steps per second summed over models.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from typing import Any

from torch import nn

import comparison
import flops
import lth_side
import workloads
from core import Context, GroupResult, Row, seconds_text, spread_text
from lth.data import Splits
from lth.training import TrainResult
from lth.training.replicas import train_replicas
from timing import Case, Spread, interleaved, ratios
from workloads import Workload, head


def replicas_case(
    workload: Workload,
    splits: Splits,
    k: int,
    steps: int,
    eval_every: int,
    on_progress: Callable[[int], None] | None = None,
) -> Case:
    """K copies of the workload (seeds 0..K-1: K data orders) trained by `train_replicas`."""
    config = lth_side.config(steps, eval_every, workload.batch_size, workload.lr, like_for_like=False)

    def run(models: list[nn.Module]) -> list[TrainResult]:
        seeds, masks = list(range(k)), [workload.mask] * k
        return train_replicas(models, splits, config, seeds=seeds, masks=masks, on_progress=on_progress)

    return Case(run=run, setup=lambda: [workload.fresh_model() for _ in range(k)])


def per_replica_step(
    ctx: Context, workload: Workload, ks: tuple[int, ...], block: int, blocks: int, repeats: int
) -> tuple[list[Row], dict[str, Any]]:
    """Seconds per replica-step for each K against one model trained by `train`, measured as
    `comparison.per_step` measures a step: the median block time, evaluations of 1 example."""
    step_flops = flops.training_step_flops(
        workload.fresh_model(), workload.splits.input_shape, workload.batch_size
    )
    tiny = head(workload.splits, val=1, test=1)
    cases: dict[str, Case] = {
        "one": comparison.block_case(functools.partial(comparison.lth_case, workload, tiny), block, blocks),
        **{
            f"K={k}": comparison.block_case(
                functools.partial(replicas_case, workload, tiny, k), block, blocks
            )
            for k in ks
        },
        "matmul_peak": Case(run=lambda _: flops.matmul_peak(repeats=3, device=workload.device)),
    }
    ctx.log(f"{workload.model_name}: replicas K = {', '.join(map(str, ks))}, {repeats} repeats")
    samples = interleaved(cases, repeats)
    one = [statistics.median(out) / block for out in samples["one"].outputs]
    peaks = [out["flop_per_s"] for out in samples["matmul_peak"].outputs]
    rows = [
        Row(
            "one model (train): FLOP/s ÷ peak",
            f"{Spread.of([step_flops / s / p for s, p in zip(one, peaks, strict=True)]).median:.2f}",
            f"{seconds_text(statistics.median(one))} per step, "
            f"peak {statistics.median(peaks) / 1e9:.0f} GFLOP/s",
        )
    ]
    data: dict[str, Any] = {"block": block, "blocks": blocks, "repeats": repeats, "step_flops": step_flops}
    data |= {"one_s_per_step": one, "matmul_peak_flop_per_s": peaks}
    for k in ks:
        per = [statistics.median(times) / block / k for times in samples[f"K={k}"].outputs]
        speedup = ratios(one, per)
        fraction = Spread.of([step_flops / s / p for s, p in zip(per, peaks, strict=True)])
        rows.append(
            Row(
                f"K = {k:>2}: one model's step time ÷ time per replica-step; FLOP/s ÷ peak",
                f"{spread_text(speedup.median, speedup.low, speedup.high)}  {fraction.median:.2f}",
                f"{seconds_text(statistics.median(per))} per replica-step",
            )
        )
        data[f"K={k}"] = {
            "s_per_replica_step": per,
            "speedup_over_one": speedup.as_dict(),
            "fraction_of_peak": fraction.as_dict(),
        }
    return rows, data


def end_to_end(
    ctx: Context, workload: Workload, k: int, steps: int, repeats: int
) -> tuple[Row, dict[str, Any]]:
    """K replicas with the paper's evaluation schedule against the plain loop, on real MNIST."""
    ctx.log(f"lenet: end to end, {k} replicas vs the plain loop, {steps:,} steps, {repeats} repeats")
    every = workload.eval_every
    cases = {
        "plain": comparison.plain_case(workload, workload.splits, steps, every),
        "replicas": replicas_case(workload, workload.splits, k, steps, every),
    }
    samples = interleaved(cases, repeats)
    plain_t, replicas_t = samples["plain"].seconds, samples["replicas"].seconds
    throughput = ratios([k * p for p in plain_t], replicas_t)  # (k·steps/replicas_t) ÷ (steps/plain_t)
    accuracies = [r.final_test_accuracy for r in samples["replicas"].last_output]
    row = Row(
        f"end to end, {steps:,} steps, evaluation every {every}: {k} replicas' steps/s (summed) ÷ plain",
        spread_text(throughput.median, throughput.low, throughput.high),
        f"plain {steps / statistics.median(plain_t):.0f}, "
        f"replicas {k * steps / statistics.median(replicas_t):.0f} steps/s; "
        f"their final test accuracy {min(accuracies):.2%}–{max(accuracies):.2%}",
    )
    data = {
        "k": k,
        "steps": steps,
        "eval_every": every,
        "seconds": {name: s.seconds for name, s in samples.items()},
        "replicas_over_plain_throughput": throughput.as_dict(),
        "replica_records": [r.record() for r in samples["replicas"].last_output],
        "plain_record": samples["plain"].last_output.record(),
        "s_per_replica_step_with_evaluation": [t / (k * steps) for t in replicas_t],
    }
    return row, data


def run(ctx: Context) -> GroupResult:
    ctx.log("replicas: loading MNIST")
    lenet = workloads.lenet_mnist(device=ctx.device)
    # A GPU is where replicas should pay (small networks leave it launch-bound): look further.
    ks, together = ((1, 4, 16, 64, 256), 64) if ctx.device.type == "cuda" else ((1, 2, 4, 8, 16), 16)
    rows, lenet_data = per_replica_step(
        ctx, lenet, ks, block=50, blocks=3 if ctx.quick else 4, repeats=2 if ctx.quick else 3
    )
    e2e_row, e2e_data = end_to_end(ctx, lenet, together, 500 if ctx.quick else 1000, 1 if ctx.quick else 2)
    conv = workloads.conv2_random(600, 1, 1, device=ctx.device)
    conv_rows, conv_data = per_replica_step(
        ctx, conv, (2, 4), block=3, blocks=2, repeats=1 if ctx.quick else 2
    )
    return GroupResult(
        title="replicas: K trainings as one vmapped model vs one at a time "
        "(LeNet on MNIST; Conv-2 on CIFAR-shaped tensors)",
        rows=[*rows, e2e_row, *(Row(f"Conv-2: {r.measure}", r.value, r.context) for r in conv_rows)],
        data={"lenet": lenet_data, "lenet_end_to_end": e2e_data, "conv2": conv_data, "quick": ctx.quick},
    )
