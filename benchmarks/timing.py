"""Timing on a shared, noisy machine: interleave what is compared, keep every sample.

Absolute times on a 2-core machine shared with other jobs swing by several times from one
minute to the next, so a benchmark here only trusts *ratios of things measured side by side*.
`interleaved` runs the cases in turns (A B, then B A, …) so that every repeat of every case
sees about the same load, and keeps each repeat's samples aligned so ratios can be taken per
pair (two runs seconds apart) before taking their median.

Not done, on purpose: running the two sides in threads and switching between them more often.
OpenMP's thread count is per calling thread, and PyTorch ran the same matmul at a different
speed in a second Python thread than in the main one, so a threaded side is not the code a
user runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Case:
    """One thing to time: `setup` builds fresh state (not timed), `run` does the work (timed).

    Keeping setup out of the timed region lets a case start from the same initial weights
    every repeat without the copy counting against it.
    """

    run: Callable[[Any], Any]
    setup: Callable[[], Any] = lambda: None


@dataclass
class Samples:
    """Wall-clock seconds and output of each timed repeat of one case, in repeat order."""

    seconds: list[float] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def last_output(self) -> Any:
        return self.outputs[-1]


def clock() -> float:
    """`time.perf_counter()` once queued GPU work is done: CUDA kernels run asynchronously, so
    a clock read without waiting would time their launch, not their work. A no-op on a CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def time_once(case: Case) -> tuple[float, Any]:
    """(seconds, output) of one run of `case`, its setup excluded."""
    state = case.setup()
    start = clock()
    output = case.run(state)
    return clock() - start, output


def interleaved(cases: Mapping[str, Case], repeats: int, warmup: int = 0) -> dict[str, Samples]:
    """Time every case `repeats` times, taking turns between cases.

    The order reverses on every other repeat (ABBA…), so no case always runs straight after
    another (whose leftovers in caches or the allocator it might inherit). `warmup` untimed
    rounds first: the first call of a kernel pays for one-time setup.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            time_once(cases[name])
    samples = {name: Samples() for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            seconds, output = time_once(cases[name])
            samples[name].seconds.append(seconds)
            samples[name].outputs.append(output)
    return samples


def best_of(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """The fastest of `repeats` timed calls of `fn`: for a peak, the least-disturbed run is the truth."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


@dataclass(frozen=True)
class Spread:
    """The median of some per-repeat values and their range: how much to trust the median."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Spread:
    """Per-repeat ratios of two interleaved cases (each pair ran back to back), summarised."""
    return Spread.of([a / b for a, b in zip(numerators, denominators, strict=True)])
