"""`lth export`: one level of a run written as a file to use elsewhere (formats: `formats.py`)."""

from __future__ import annotations

from pathlib import Path

from lth import layout
from lth.store import write_atomic
from lth.tickets.formats import encode
from lth.tickets.source import read_level


def export_ticket(
    run_dir: str | Path,
    out: str | Path,
    *,
    level: int,
    trial: int = 0,
    variant: str = layout.TICKET,
    weights: str = "final",
    format: str = "sparse",
) -> Path:
    """Write the ticket at (trial, variant, level) of `run_dir` to `out` in `format` ("sparse",
    "prune" or "dense"), atomically; returns the path."""
    ticket = read_level(run_dir, level, trial=trial, variant=variant, weights=weights)
    path = Path(out)
    write_atomic(path, encode(ticket, format))
    return path
