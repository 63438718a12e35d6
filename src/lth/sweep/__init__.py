"""Sweeps: many configs × trials as units of work, in local worker processes or on a Ray cluster.

    sweep = load_sweep("fig3.toml")          # base config + [set] + [grid] + trials → runs
    result = run_sweep(sweep, workers=2)     # or backend="ray", address="auto"

A unit is one (run, trial); its levels run in order, each level's trainings handed to workers
separately once the ticket of the level before is stored (pieces.py). Each is stored as it
finishes, so a training that is killed and run again resumes, and a sweep run again finishes only
what is missing.
Results land in the ordinary run directories (`lth report` reads them unchanged). The Ray
backend is imported only when asked for.
"""

from lth.sweep.progress import UnitState, format_runs, format_tally, sweep_states, time_left_s
from lth.sweep.run import SweepResult, cores, rewrite_summaries, run_sweep
from lth.sweep.spec import Run, Sweep, Unit, expand, format_value, load_sweep

__all__ = [
    "Run",
    "Sweep",
    "SweepResult",
    "Unit",
    "UnitState",
    "cores",
    "expand",
    "format_runs",
    "format_tally",
    "format_value",
    "load_sweep",
    "rewrite_summaries",
    "run_sweep",
    "sweep_states",
    "time_left_s",
]
