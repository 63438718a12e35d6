"""A unit's pieces: what the driver hands a worker, so that one trial's trainings spread over
several workers.

A unit (one run's trial) is a chain of levels: a level's trainings depend only on the trainings
of the level before that declare `next_mask` (the ticket, Strategy 2's path:
`variants.read_by_next`), not on each other nor on the controls. So a piece is one level of one
unit: each of its trainings alone (`apart`), or all of them together where they may train as one
group of replicas. A piece is ready once the trainings it reads are stored: the ticket's chain runs
ahead while the controls fill the other workers. The driver starts ready pieces lowest level
first across the units, the ticket before the controls, which keeps every worker busy until the
last level: five LeNet trials on two workers take the time of 2.5 trials, not of three rounds of
two, and one trial the time of 23 trainings, not of 31 (benchmarks/RESULTS.md, "The whole
preset's wall time").
"""

from __future__ import annotations

from dataclasses import dataclass

from lth.lottery import variants
from lth.sweep.progress import stored, training_done, trainings_by_level
from lth.sweep.spec import Unit


@dataclass(frozen=True)
class Piece:
    unit: Unit
    level: int
    variants: tuple[str, ...]  # the trainings of the level it trains (level 0: the dense one)

    @property
    def name(self) -> str:
        return f"{self.unit.name} level {self.level} ({', '.join(self.variants)})"


def pieces(unit: Unit, *, apart: bool) -> list[Piece]:
    """The pieces of `unit` whose trainings are not all stored (and measured, where instability
    is: `progress.training_done`), in level order."""
    left = []
    for level, needed in enumerate(trainings_by_level(unit.run.config)):
        missing = tuple(v for v, lv in needed if not training_done(unit, v, lv))
        if apart:
            left += [Piece(unit, level, (v,)) for v in missing]
        elif missing:
            left.append(Piece(unit, level, missing))
    return left


def ready(piece: Piece) -> bool:
    """Whether the trainings `piece`'s level reads (those of the level before that declare
    `next_mask`) are stored."""
    if piece.level == 0:
        return True
    before = piece.level - 1
    return all(stored(piece.unit, v, before) for v in variants.read_by_next(piece.unit.run.config, before))


def order(piece: Piece) -> tuple[int, bool]:
    """The driver's order among ready pieces: lowest level first, there the chain the next level
    reads (`variants.read_by_next`) before the controls."""
    chain = variants.read_by_next(piece.unit.run.config, piece.level)
    return piece.level, not set(piece.variants) & set(chain)
