"""Plain vs lth on one workload: the time of a training step, and of a whole run with evaluation.

Both measurements time each implementation's own `train` call, so nothing `lth` does per step
(its batch order, masking, optimiser, bookkeeping) escapes the clock, and nothing is
reimplemented on its behalf.
"""

from __future__ import annotations

import functools
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

import bare
import flops
import lth_side
import plain
from lth.data import Splits
from lth.training import TrainResult
from timing import Case, Spread, interleaved, ratios, time_once
from workloads import Workload, head

SEED = 0


def plain_case(
    workload: Workload,
    splits: Splits,
    steps: int,
    eval_every: int,
    on_progress: Callable[[int], None] | None = None,
    final_train_eval: bool = True,
) -> Case:
    def run(model: nn.Module) -> plain.PlainResult:
        return plain.train(
            model,
            splits,
            workload.mask,
            steps=steps,
            batch_size=workload.batch_size,
            lr=workload.lr,
            seed=SEED,
            eval_every=eval_every,
            final_train_eval=final_train_eval,
            on_progress=on_progress,
        )

    return Case(run=run, setup=workload.fresh_model)


def lth_case(
    workload: Workload,
    splits: Splits,
    steps: int,
    eval_every: int,
    like_for_like: bool = True,
    on_progress: Callable[[int], None] | None = None,
    engine: str = "auto",
) -> Case:
    def run(model: nn.Module) -> TrainResult:
        return lth_side.run(
            model,
            splits,
            workload.mask,
            steps=steps,
            eval_every=eval_every,
            batch_size=workload.batch_size,
            lr=workload.lr,
            seed=SEED,
            like_for_like=like_for_like,
            on_progress=on_progress,
            engine=engine,
        )

    return Case(run=run, setup=workload.fresh_model)


def floor_case(workload: Workload, splits: Splits, steps: int, eval_every: int) -> Case | None:
    """The run `plain_case` times, as its matrix products alone: each step's (`bare.training_step`),
    and the forward products of every evaluation of val and test and of the final training-set one.
    No fp32 engine computing these products densely can be faster, so plain ÷ this bounds the
    end-to-end speed-up any such engine can reach. None where the network is not fully
    connected (a conv net's floor is not products alone)."""
    sizes = bare.layer_sizes(workload.fresh_model())
    if sizes is None:
        return None
    step = bare.training_step(workload.batch_size, sizes)
    val, test, train = (
        bare.evaluation(len(split), sizes, plain.EVAL_BATCH)
        for split in (splits.val, splits.test, splits.train)
    )

    def run(_: object) -> None:
        val(), test()
        for done in range(1, steps + 1):
            step()
            if done % eval_every == 0 or done == steps:
                val(), test()
        train()

    return Case(run=run)


@dataclass
class PerStep:
    plain_s: Spread  # seconds per training step
    lth_s: Spread
    speedup: Spread  # plain time ÷ lth time, per repeat
    peak: Spread  # fp32 matmul FLOP/s, best of a few, once per repeat
    lth_fraction: Spread  # lth's step FLOP/s ÷ the peak of the same repeat
    plain_fraction: Spread
    data: dict[str, Any]


def block_case(make: Callable[..., Case], block: int, blocks: int, **kwargs: Any) -> Case:
    """A case whose output is the seconds of each block of `block` steps after the first.

    Both trainers call `on_progress` once per evaluation, so the time between two calls is
    one block of steps and one evaluation, which `per_step` makes negligible. The first block
    (which follows setup and the initial evaluation) only starts the clock.
    """
    stamps: list[float] = []
    inner = make(
        steps=block * (blocks + 1),
        eval_every=block,
        on_progress=lambda _: stamps.append(time.perf_counter()),
        **kwargs,
    )

    def run(state: Any) -> list[float]:
        stamps.clear()
        inner.run(state)
        return [b - a for a, b in itertools.pairwise(stamps)]

    return Case(run=run, setup=inner.setup)


def lth_step_seconds(workload: Workload, splits: Splits, block: int, blocks: int = 1) -> float:
    """Seconds per step of one `lth` run, as `per_step` measures it (for the breakdown's check)."""
    case = block_case(functools.partial(lth_case, workload, head(splits, val=1, test=1)), block, blocks)
    _, block_seconds = time_once(case)
    return statistics.median(block_seconds) / block


def per_step(
    workload: Workload, splits: Splits, block: int, blocks: int, repeats: int, step_flops: int
) -> PerStep:
    """Seconds per training step, without evaluation to speak of, of each implementation, and
    their achieved FLOP/s as a fraction of the fp32 matmul peak.

    Each run trains `blocks` + 1 blocks of `block` steps and evaluates after each one; the
    validation and test sets are cut to one example each, so an evaluation costs a forward pass
    of 1 example, well under 1% of a block. A run's time per step is the median of its blocks'
    times ÷ `block`: a burst of load from another process spoils a block or two, not the median.
    The runs of the two implementations and a measurement of the matmul peak take turns, and
    ratios and fractions are taken per repeat, of things measured seconds apart.
    """
    tiny = head(splits, val=1, test=1)
    cases = {
        "plain": block_case(
            functools.partial(plain_case, workload, tiny, final_train_eval=False), block, blocks
        ),
        "lth": block_case(functools.partial(lth_case, workload, tiny), block, blocks),
        "matmul_peak": Case(run=lambda _: flops.matmul_peak(repeats=3, device=workload.device)),
    }
    samples = interleaved(cases, repeats)
    per_run = {
        name: [statistics.median(blocks_s) / block for blocks_s in samples[name].outputs]
        for name in ("plain", "lth")
    }
    peaks = [out["flop_per_s"] for out in samples["matmul_peak"].outputs]

    def fractions(seconds: list[float]) -> Spread:
        return Spread.of([step_flops / s / peak for s, peak in zip(seconds, peaks, strict=True)])

    result = PerStep(
        plain_s=Spread.of(per_run["plain"]),
        lth_s=Spread.of(per_run["lth"]),
        speedup=ratios(per_run["plain"], per_run["lth"]),
        peak=Spread.of(peaks),
        lth_fraction=fractions(per_run["lth"]),
        plain_fraction=fractions(per_run["plain"]),
        data={},
    )
    result.data = {
        "method": f"median over {blocks} blocks of {block} steps (each followed by an evaluation of 1 "
        "validation and 1 test example, in both) of a block's seconds ÷ its steps; one value per run",
        "block": block,
        "blocks": blocks,
        "repeats": repeats,
        "train_examples": len(splits.train),
        "plain_s_per_step": result.plain_s.as_dict(),
        "lth_s_per_step": result.lth_s.as_dict(),
        "plain_over_lth": result.speedup.as_dict(),
        "block_seconds": {name: samples[name].outputs for name in ("plain", "lth")},
        "run_seconds": {name: samples[name].seconds for name in ("plain", "lth")},
        "matmul_peak_per_repeat": samples["matmul_peak"].outputs,
    }
    return result


@dataclass
class EndToEnd:
    throughput_ratio: Spread  # lth steps/s ÷ plain steps/s, per repeat
    default_ratio: Spread | None  # the same for lth's default evaluation, where it differs
    floor_ratio: Spread | None  # the bare products' steps/s ÷ plain (fully connected networks)
    plain_steps_per_s: float
    lth_steps_per_s: float
    data: dict[str, Any]


def end_to_end(
    workload: Workload, splits: Splits, steps: int, eval_every: int, repeats: int, time_default: bool
) -> EndToEnd:
    """A whole run of `steps` steps with validation and test evaluation every `eval_every`,
    plain vs lth; with `time_default`, `lth` with its default (cheaper) evaluation as well."""
    cases = {
        "plain": plain_case(workload, splits, steps, eval_every),
        "lth": lth_case(workload, splits, steps, eval_every),
    }
    if time_default:
        cases["lth_default"] = lth_case(workload, splits, steps, eval_every, like_for_like=False)
    floor = floor_case(workload, splits, steps, eval_every)
    if floor is not None:
        cases["floor"] = floor
    samples = interleaved(cases, repeats)
    plain_t = samples["plain"].seconds
    throughput = ratios(plain_t, samples["lth"].seconds)  # (steps/lth_t) / (steps/plain_t)
    default = ratios(plain_t, samples["lth_default"].seconds) if time_default else None
    plain_out: plain.PlainResult = samples["plain"].last_output
    lth_out = samples["lth"].last_output
    data: dict[str, Any] = {
        "steps": steps,
        "eval_every": eval_every,
        "repeats": repeats,
        "splits": {name: len(getattr(splits, name)) for name in ("train", "val", "test")},
        "work": "evaluation of val and test at iteration 0, every eval_every and at the end; "
        "final training-set evaluation (lth's train always does one; the plain loop mirrors it)",
        "seconds": {name: s.seconds for name, s in samples.items()},
        "steps_per_s_median": {name: steps / s.median for name, s in samples.items()},
        "lth_over_plain_throughput": throughput.as_dict(),
        "plain_record": plain_out.record(),
        "lth_record": lth_out.record(),
    }
    if default is not None:
        data["lth_default_over_plain_throughput"] = default.as_dict()
        data["lth_default_record"] = samples["lth_default"].last_output.record()
    floor_ratio = ratios(plain_t, samples["floor"].seconds) if floor is not None else None
    if floor_ratio is not None:
        data["floor_over_plain_throughput"] = floor_ratio.as_dict()
        data["floor"] = "the same steps and evaluations as bare matrix products (benchmarks/bare.py)"
    return EndToEnd(
        throughput_ratio=throughput,
        default_ratio=default,
        floor_ratio=floor_ratio,
        plain_steps_per_s=steps / samples["plain"].median,
        lth_steps_per_s=steps / samples["lth"].median,
        data=data,
    )
