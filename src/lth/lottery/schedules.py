"""Pruning schedules (`lottery.schedule`): where each level's mask is found, declared once.

The runner, config validation and the record checks read this table; none of them names a
schedule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    name: str
    description: str
    # Each level L is pruned straight from the dense level 0, L rounds at once; else from the
    # level before, one round at a time.
    from_dense: bool
    # Which of the dense level's weights a from-dense level is scored on: "final" (trained) or
    # "init" (θ0: pruning at initialization, nothing trained before the mask is chosen).
    scored: str = "final"


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        Schedule("iterative", "each level prunes the level before's trained network by one round", False),
        Schedule("oneshot", "level L prunes the trained dense network by L rounds at once", True),
        Schedule(
            "init",
            "pruning at initialization: level L prunes θ0 by L rounds at once, before any training",
            True,
            scored="init",
        ),
    )
}
