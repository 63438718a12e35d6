"""`Step`: an amount of training, written `"50000it"` or `"2ep"`.

Iterations are the unit of record; epochs are converted with the data set's iterations per
epoch (the number of whole batches in the training split).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lth.errors import ConfigError

_STEP = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")


@dataclass(frozen=True)
class Step:
    """An immutable amount of training: `value` iterations or epochs."""

    value: int
    unit: str  # "it" or "ep"

    @classmethod
    def parse(cls, text: str | int | Step) -> Step:
        if isinstance(text, Step):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            text = f"{text}it"
        match = _STEP.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                f"bad step {text!r}: write a non-negative whole number of iterations or epochs, "
                "such as '50000it' or '2ep'"
            )
        return cls(int(match.group(1)), match.group(2))

    def iterations(self, iterations_per_epoch: int) -> int:
        """This step in iterations, given how many iterations make one epoch."""
        return self.value if self.unit == "it" else self.value * iterations_per_epoch

    def __str__(self) -> str:
        return f"{self.value}{self.unit}"
