"""What every benchmark group gets (`Context`) and gives back (`GroupResult`).

A group is a function `Context -> GroupResult`, registered by name in run.py. Its rows are what
the table prints; its `data` is what goes into the JSON, with exactly what was run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Row:
    """One line of the table.

    `value` is the headline: a ratio or fraction of things measured side by side in this run,
    which the machine's load mostly cancels out of. `context` holds absolute figures, which the
    load does not cancel out of: read them as "about", not as results.
    """

    measure: str
    value: str
    context: str = ""


@dataclass
class GroupResult:
    title: str  # one line: what was run
    rows: list[Row]
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What every group is told: the run's settings, and where to report progress."""

    quick: bool
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    run_dir: str | None = None  # a finished run for the groups that read one (`tickets`)
    started: float = field(default_factory=time.monotonic)

    def log(self, message: str) -> None:
        """Progress on stderr, so a long run shows where it is without touching the table."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


def spread_text(median: float, low: float, high: float, unit: str = "×") -> str:
    """`1.93× (1.80–2.05)`: the median and the range over repeats."""
    if low == high:
        return f"{median:.2f}{unit}"
    return f"{median:.2f}{unit} ({low:.2f}–{high:.2f})"


def seconds_text(seconds: float) -> str:
    """A duration in the unit that reads best: µs, ms or s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.1f} s"
