"""The issue's four figures for one workload, as a benchmark group: per-step and end-to-end
plain vs lth, lth's achieved FLOP/s against the matmul peak, and where a level's time goes."""

from __future__ import annotations

from dataclasses import dataclass

import breakdown
import comparison
from core import Context, GroupResult, Row, seconds_text, spread_text
from lth.data import Splits
from workloads import Workload


@dataclass(frozen=True)
class Plan:
    """What to run, sized for the time budget (smaller with --quick)."""

    per_step_splits: Splits  # only the training set is used (lth evaluates it all after the clock stops)
    per_step_block: int  # steps per timed block
    per_step_blocks: int
    per_step_repeats: int
    e2e_splits: Splits
    e2e_steps: int
    e2e_repeats: int
    time_lth_default: bool  # also time lth's default (cheaper) test evaluation end to end
    breakdown_steps: int
    breakdown_repeats: int
    step_flops: int
    min_plain_accuracy: float | None  # the plain loop must reach this test accuracy (real data only)


def run_group(ctx: Context, workload: Workload, plan: Plan) -> GroupResult:
    name = workload.name
    rows: list[Row] = []

    ctx.log(
        f"{name}: per step, {plan.per_step_blocks} blocks of {plan.per_step_block} × {plan.per_step_repeats}"
    )
    step = comparison.per_step(
        workload,
        plan.per_step_splits,
        plan.per_step_block,
        plan.per_step_blocks,
        plan.per_step_repeats,
        plan.step_flops,
    )
    rows.append(
        Row(
            "per training step, no evaluation: plain time ÷ lth time",
            spread_text(step.speedup.median, step.speedup.low, step.speedup.high),
            f"plain {seconds_text(step.plain_s.median)}, lth {seconds_text(step.lth_s.median)} per step",
        )
    )

    every = workload.eval_every
    ctx.log(f"{name}: end to end, {plan.e2e_steps} steps, eval every {every}, × {plan.e2e_repeats}")
    e2e = comparison.end_to_end(
        workload, plan.e2e_splits, plan.e2e_steps, every, plan.e2e_repeats, plan.time_lth_default
    )
    sizes = f"val {len(plan.e2e_splits.val):,} + test {len(plan.e2e_splits.test):,}"
    ratio = e2e.throughput_ratio
    rows.append(
        Row(
            f"end to end, {plan.e2e_steps:,} steps, {sizes} every {every}: lth steps/s ÷ plain",
            spread_text(ratio.median, ratio.low, ratio.high),
            f"plain {e2e.plain_steps_per_s:.1f}, lth {e2e.lth_steps_per_s:.1f} steps/s",
        )
    )
    beside = [
        (
            e2e.default_ratio,
            "  … lth's default eval (test only at new val-loss minima) ÷ plain",
            "lth does less work here: not like for like",
        ),
        (
            e2e.floor_ratio,
            "  … the same run's bare matrix products alone ÷ plain (no fp32 engine is faster)",
            "the most any dense fp32 engine could reach like for like",
        ),
    ]
    for spread, measure, context in beside:
        if spread is not None:
            rows.append(Row(measure, spread_text(spread.median, spread.low, spread.high), context))
    if plan.min_plain_accuracy is not None:
        plain_acc = e2e.data["plain_record"]["final_test_accuracy"]
        lth_acc = e2e.data["lth_record"]["final_test_accuracy"]
        verdict = "ok" if plain_acc >= plan.min_plain_accuracy else f"BELOW {plan.min_plain_accuracy:.0%}"
        rows.append(
            Row(
                "check: final test accuracy, plain / lth (the plain loop really trains)",
                f"{plain_acc:.2%} / {lth_acc:.2%}",
                verdict,
            )
        )
        e2e.data["plain_trains"] = plain_acc >= plan.min_plain_accuracy

    lth_fraction, peak = step.lth_fraction, step.peak.median
    rows.append(
        Row(
            "lth training step FLOP/s ÷ fp32 matmul peak of the same repeat (dense count)",
            spread_text(lth_fraction.median, lth_fraction.low, lth_fraction.high, unit=""),
            f"{plan.step_flops / 1e6:,.0f} MFLOP/step; lth {plan.step_flops / step.lth_s.median / 1e9:.1f}, "
            f"plain {plan.step_flops / step.plain_s.median / 1e9:.1f}, peak {peak / 1e9:.1f} GFLOP/s",
        )
    )
    flop_data = {
        "step_flops": plan.step_flops,
        "counting": "dense; 3 × 2 × MACs of conv and linear layers (forward + 2× backward)",
        "peak": "best of 3 fp32 2048×2048×2048 matmuls (2·n³ FLOPs), once per per-step repeat",
        "matmul_peak_flop_per_s": step.peak.as_dict(),
        "lth_fraction_of_peak": lth_fraction.as_dict(),
        "plain_fraction_of_peak": step.plain_fraction.as_dict(),
    }

    ctx.log(f"{name}: level breakdown, {plan.breakdown_steps} steps × {plan.breakdown_repeats}")
    level = breakdown.level_breakdown(
        workload, plan.breakdown_steps, plan.breakdown_repeats, plan.per_step_splits, plan.per_step_block
    )
    for part, seconds in level["seconds_per_step"].items():
        share = level["share_of_level"][part]
        rows.append(Row(f"lth level time: {part}", f"{share:.1%}", f"{seconds_text(seconds)}/step"))
    check = level["step_parts_over_lth_step"]
    rows.append(
        Row(
            "lth level: step parts summed ÷ lth's real step, same repeat (≈ 1)",
            spread_text(check["median"], check["min"], check["max"], unit=""),
            "checks the reproduced step against lth.training.train",
        )
    )

    return GroupResult(
        title=f"{name}: {workload.description}; mask Pm {workload.mask.fraction_remaining():.1%}",
        rows=rows,
        data={
            "workload": workload.describe(),
            "per_step": step.data,
            "end_to_end": e2e.data,
            "flops": flop_data,
            "level_breakdown": level,
        },
    )
