"""What thread-independent sums cost: lth's LeNet training with MKL's default sums against
`MKL_CBWR=AUTO,STRICT` (what lth sets at import, see src/lth/environment.py).

MKL reads the setting once per process, so each side runs in a fresh process of its own; turns
alternate A B B A so that a drift in the machine's load falls on both sides alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

import torch

from core import Context, GroupResult, Row, seconds_text, spread_text

# One training in a fresh process: prints seconds per step (after loading the data and a warm-up).
_CHILD = """
import sys, time, torch
import lth
from lth import data as datasets
from lth.config import TrainingConfig
from lth.models import build, initialize
from lth.training import train
torch.set_num_threads(int(sys.argv[1]))
steps = int(sys.argv[2])
splits = datasets.load("mnist")
config = TrainingConfig(steps=f"{steps}it", eval_every=f"{steps}it")
model = initialize(build("lenet300", splits.input_shape, splits.num_classes), 0)
train(model, splits, TrainingConfig(steps="50it", eval_every="50it"), seed=1)  # warm-up
began = time.perf_counter()
train(model, splits, config, seed=0)
print((time.perf_counter() - began) / steps)
"""

SIDES = {"default": "", "strict": "AUTO,STRICT"}  # MKL_CBWR="" is MKL's own default


def _time(mkl_cbwr: str, threads: int, steps: int) -> float:
    env = os.environ | {"MKL_CBWR": mkl_cbwr}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(threads), str(steps)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> GroupResult:
    threads = torch.get_num_threads()
    steps, repeats = (500, 2) if ctx.quick else (2000, 3)
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(repeats):
        order = list(SIDES) if r % 2 == 0 else list(reversed(SIDES))
        for side in order + list(reversed(order)):  # A B B A
            ctx.log(f"sums: {side}, repeat {r + 1}/{repeats}")
            times[side].append(_time(SIDES[side], threads, steps))
    ratios = [s / d for s, d in zip(times["strict"], times["default"], strict=True)]
    median = statistics.median(ratios)
    return GroupResult(
        title=f"LeNet step, MKL's default sums vs thread-independent sums ({threads} threads, {steps} steps)",
        rows=[
            Row(
                "strict ÷ default, time per step",
                spread_text(median, min(ratios), max(ratios)),
                f"{seconds_text(statistics.median(times['strict']))} vs "
                f"{seconds_text(statistics.median(times['default']))}",
            )
        ],
        data={"threads": threads, "steps": steps, "times_s": times, "ratios": ratios},
    )
