"""Benchmark group: where a Conv-2 training step's time goes on this CPU (issue 16, part 5).

Conv-2 at the paper's CIFAR-10 settings (Adam 2e-4, batch 60, mask at the paper's rates after 3
rounds) on CIFAR-shaped random tensors, turns of `steps` steps, interleaved:
- `step`: `lth`'s step (the autograd engine, `OneModel.step`: Conv-2 is not fully connected, so
  the fused engine does not apply);
- `products`: the bare convolutions and matrix products one step needs, on fresh operands (two
  convolution forwards, two weight gradients and the second convolution's input gradient; three
  fc forwards, three weight and three input gradients), nothing else;
- `augment`: the same step with the data set's augmentation (flip, pad 4, crop) of each batch;
- `channels_last`: the step of the `channels-last` engine (the model's weights in NHWC layout).
Then one pass of the profiler over `steps` steps sorts the step's own operator time into kinds
(convolution, products, element-wise, pooling, optimiser, ...), which says where the time that
is not in the bare products goes; and evaluation of 1,000 examples at several batch sizes, the
other half of a paper-protocol level (validation and test every 100 iterations).
"""

from __future__ import annotations

import copy
import itertools
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import workloads
from core import Context, GroupResult, Row, seconds_text, spread_text
from lth.config import TrainingConfig
from lth.training import evaluate
from lth.training.autograd import CHANNELS_LAST_CPU_EVAL_BATCH, ChannelsLast, OneModel
from timing import Case, interleaved, ratios

# Operator name → kind, first match wins (the profiler's self time per operator).
KINDS = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("matrix products", ("addmm", "::mm", "::bmm", "linear")),
    ("pooling", ("max_pool",)),
    ("optimiser", ("adam", "_foreach")),
    ("ReLU", ("relu", "threshold")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("masking", ("aten::mul",)),
    ("batch gather", ("index", "randperm", "gather")),
)
EVAL_BATCHES = (100, 250, 1000)


def _bare_products(batch: int) -> Callable[[], None]:
    """Conv-2's convolutions and products of one step at `batch`, on fresh operands."""
    x, h = torch.randn(batch, 3, 32, 32), torch.randn(batch, 64, 32, 32)
    w1, w2 = torch.randn(64, 3, 3, 3), torch.randn(64, 64, 3, 3)
    grad = torch.randn(batch, 64, 32, 32)
    sizes = (16_384, 256, 256, 10)
    acts = [torch.randn(batch, a) for a in sizes[:-1]]
    fcs = [torch.randn(b, a) for a, b in itertools.pairwise(sizes)]
    grads = [torch.randn(batch, b) for b in sizes[1:]]
    conv_args = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)

    def step() -> None:
        F.conv2d(x, w1, padding=1)
        F.conv2d(h, w2, padding=1)
        torch.ops.aten.convolution_backward(grad, x, w1, None, *conv_args, [False, True, False])
        torch.ops.aten.convolution_backward(grad, h, w2, None, *conv_args, [True, True, False])
        for a, w, g in zip(acts, fcs, grads, strict=True):
            a @ w.t()
            g.t() @ a
            g @ w

    return step


def _steps(make: Callable[[], OneModel], steps: int, lr: float) -> Case:
    def run(engine: OneModel) -> None:
        for it in range(steps):
            engine.step(it, lr)

    return Case(run=run, setup=make)


def _kinds(engine: OneModel, steps: int, lr: float) -> dict[str, float]:
    """Seconds per step of each operator kind (self time), over `steps` profiled steps."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for it in range(steps):
            engine.step(it, lr)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        name = event.key.lower()
        kind = next((k for k, keys in KINDS if any(s in name for s in keys)), "other operators")
        totals[kind] = totals.get(kind, 0.0) + event.self_cpu_time_total / 1e6 / steps
    return totals


def run(ctx: Context) -> GroupResult:
    workload = workloads.conv2_random(600, 100, 1000, device=ctx.device)
    splits, model, mask = workload.splits, workload.fresh_model(), workload.mask
    config = TrainingConfig(optimizer="adam", lr=workload.lr, batch_size=workload.batch_size)
    steps, repeats = (5, 3) if ctx.quick else (10, 5)

    def engine(augment: bool = False, channels_last: bool = False) -> Callable[[], OneModel]:
        def make() -> OneModel:
            kind = ChannelsLast if channels_last else OneModel
            return kind(copy.deepcopy(model), splits, config, seed=0, mask=mask, augment=augment)

        return make

    ctx.log(f"conv2 profile: {steps} steps a turn, {repeats} turns")
    bare = _bare_products(workload.batch_size)
    cases = {
        "step": _steps(engine(), steps, workload.lr),
        "products": Case(run=lambda _: [bare() for _ in range(steps)]),
        "augment": _steps(engine(augment=True), steps, workload.lr),
        "channels_last": _steps(engine(channels_last=True), steps, workload.lr),
    }
    test = splits.test
    for batch in EVAL_BATCHES:
        cases[f"evaluate {batch}"] = Case(run=lambda _, b=batch: evaluate(model, test.x, test.y, batch=b))
    last = ChannelsLast(copy.deepcopy(model), splits, config, seed=0, mask=mask, augment=False)
    cases["evaluate channels_last"] = Case(run=lambda _: last.evaluate(test))
    samples = interleaved(cases, repeats, warmup=1)
    seconds = {name: s.seconds for name, s in samples.items()}
    per_step = {name: statistics.median(v) / steps for name, v in seconds.items()}
    rows = []
    measured = [
        ("step ÷ its bare convolutions and products", ratios(seconds["step"], seconds["products"])),
        ("step with augmentation ÷ step", ratios(seconds["augment"], seconds["step"])),
        ("step ÷ channels-last engine's step", ratios(seconds["step"], seconds["channels_last"])),
    ]
    for label, spread in measured:
        rows.append(Row(label, spread_text(spread.median, spread.low, spread.high)))
    rows.append(
        Row(
            "per step",
            seconds_text(per_step["step"]),
            f"products {seconds_text(per_step['products'])}, augmented {seconds_text(per_step['augment'])}, "
            f"channels-last {seconds_text(per_step['channels_last'])}",
        )
    )
    default = seconds[f"evaluate {EVAL_BATCHES[0]}"]
    evaluations = [(f"evaluation at batch {b}", f"evaluate {b}") for b in EVAL_BATCHES]
    last_label = f"channels-last engine's evaluation (batch {CHANNELS_LAST_CPU_EVAL_BATCH})"
    evaluations.append((last_label, "evaluate channels_last"))
    for label, key in evaluations:
        spread = ratios(default, seconds[key])
        per_1k = statistics.median(seconds[key]) * 1000 / len(test)
        rows.append(
            Row(
                f"{label}: speed ÷ batch {EVAL_BATCHES[0]}'s",
                spread_text(spread.median, spread.low, spread.high),
                f"{seconds_text(per_1k)} per 1,000 examples",
            )
        )
    kinds = _kinds(engine()(), steps, workload.lr)
    total = sum(kinds.values())
    for kind, s in sorted(kinds.items(), key=lambda kv: -kv[1]):
        rows.append(Row(f"profiled step: {kind}", f"{100 * s / total:.1f}%", f"{seconds_text(s)} per step"))
    data = {
        "steps_per_turn": steps,
        "repeats": repeats,
        "seconds_per_turn": seconds,
        "profiled_seconds_per_step": kinds,
    }
    return GroupResult(title=f"conv2 profile: {workload.description}", rows=rows, data=data)
