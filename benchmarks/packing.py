"""How well the sweep driver packs a preset's trainings onto W workers, on a virtual clock:

    .venv/bin/python benchmarks/packing.py [PRESET] [--trials 1,2,5] [--workers 2,3,4,16]
                                           [--jitter 0.3] [--seeds 5]

It runs the real driver (`sweep/run.py`'s loop, with `sweep/pieces.py`'s readiness and order)
over a pool that trains nothing: each training takes one training-time (times a uniform draw in
1 ± jitter, the same draws for every driver), and finishing one writes the result.json the
driver waits for. So the figures are the schedule's alone, free of the machine's load, and the
same script run against an older checkout measures that driver (PYTHONPATH=OLD/src).

The ideal is the larger of the trainings' total ÷ W and the longest chain of trainings that
must run one after the other (the dense network, then the ticket at each level).
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from lth import layout
from lth.layout import TICKET
from lth.store import RunStore
from lth.sweep import load_sweep
from lth.sweep.run import SweepResult, drive
from lth.sweep.worker import Outcome


class VirtualPool:
    """A backend whose pieces end in virtual time: `wait` jumps to the next one to end."""

    def __init__(self, workers: int, jitter: float, seed: int):
        self.capacity, self.jitter, self.seed, self.now = workers, jitter, seed, 0.0
        self.lengths: dict[tuple, float] = {}  # by (run, trial, level, variants)
        self.busy: list[tuple[float, int, Any, Any]] = []

    def length(self, piece: Any) -> float:
        key = (piece.unit.run.path.name, piece.unit.trial, piece.level, piece.variants)
        if key not in self.lengths:  # drawn from the training's name: the same in any order
            draw = random.Random(f"{self.seed}:{key}")
            self.lengths[key] = sum(1 + draw.uniform(-self.jitter, self.jitter) for _ in piece.variants)
        return self.lengths[key]

    def submit(self, key: Any, piece: Any) -> None:
        heapq.heappush(self.busy, (self.now + self.length(piece), id(piece), key, piece))

    def wait(self, timeout: float) -> list[tuple[Any, Outcome]]:
        self.now, _, key, piece = heapq.heappop(self.busy)
        for variant in piece.variants:
            result = (
                layout.level_dir(piece.unit.run.path, piece.unit.trial, variant, piece.level) / layout.RESULT
            )
            result.parent.mkdir(parents=True, exist_ok=True)
            result.write_text("{}")
        return [(key, Outcome())]

    def close(self) -> None:
        pass


def makespan(preset: str, trials: int, workers: int, jitter: float, seed: int) -> tuple[float, int, float]:
    """(virtual wall time, trainings, ideal) of `trials` trials of `preset` on `workers` workers."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "sweep.toml"
        spec.write_text(f'base = "{preset}"\ntrials = {trials}\n')
        sweep = load_sweep(spec, out=Path(tmp) / "runs")
        for run in sweep.runs:
            RunStore(sweep.out, run.config)
        pool, result = VirtualPool(workers, jitter, seed), SweepResult()
        drive(sweep, pool, lambda piece: piece, 0, False, lambda line: None, result, True)
        if not result.ok:
            raise SystemExit(f"the sweep failed: {result.failed}")
        chains: dict[tuple, float] = {}  # per trial: the dense network, then the ticket at each level
        for (run, trial, _, variants), length in pool.lengths.items():
            if TICKET in variants:
                chains[run, trial] = chains.get((run, trial), 0.0) + length
        ideal = max(sum(pool.lengths.values()) / workers, *chains.values())
        return pool.now, len(pool.lengths), ideal


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset", nargs="?", default="lenet-mnist")
    parser.add_argument("--trials", default="1,2,5", help="trial counts, comma-separated")
    parser.add_argument("--workers", default="2,3,4,16", help="worker counts, comma-separated")
    parser.add_argument("--jitter", type=float, default=0.3, help="each training takes 1 ± this, uniformly")
    parser.add_argument("--seeds", type=int, default=5, help="draws of the training lengths (with jitter)")
    args = parser.parse_args()

    print(f"{args.preset}: wall time in training-times on a virtual clock (jitter ±{args.jitter:.0%})")
    print("| trials | workers | trainings | equal lengths: wall / ideal | jittered: wall ÷ ideal (range) |")
    print("|---|---|---|---|---|")
    for trials in map(int, args.trials.split(",")):
        for workers in map(int, args.workers.split(",")):
            wall, count, ideal = makespan(args.preset, trials, workers, 0.0, 0)
            ratios = []
            for seed in range(args.seeds):
                jittered, _, best = makespan(args.preset, trials, workers, args.jitter, seed)
                ratios.append(jittered / best)
            spread = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
            print(f"| {trials} | {workers} | {count} | {wall:.1f} / {ideal:.1f} | {spread} |")


if __name__ == "__main__":
    main()
