"""TensorBoard event files of a run (`lth run --tensorboard DIR`, or `LTH_TENSORBOARD=DIR`).

One stream (a TensorBoard "run") per trial, variant and level, at
`DIR/<run directory name>/trial_T/VARIANT/level_LL/`, with scalars against the iteration:
`loss/val`, `accuracy/val`, `loss/test` and `accuracy/test` where the test set was evaluated,
`pm` (percent of the pruned layers' weights remaining) and `lr` (the learning rate of the step
taken at that iteration). Accuracies are fractions, as in history.csv.

Why a level is written once it is finished, from its history.csv, rather than live from the
training loop: a level interrupted and resumed would otherwise log the iterations between its
last checkpoint and the kill twice, and TensorBoard would draw both (purge_step can hide them, but
only where every resume knows the checkpoint's iteration, and replica groups resume as a whole).
history.csv is the finished level's complete record, written atomically, so each stream is
written whole from it and then marked complete (`COMPLETE`): a rerun, or another process of a
sweep, skips marked streams, and a stream cut off before its mark is deleted and written again.
Levels finished before TensorBoard was asked for are written on the next run. The cost: curves
appear level by level, not while a level trains. The training loop knows nothing of TensorBoard.

Writer: `torch.utils.tensorboard.SummaryWriter`, PyTorch's own writer, maintained with it, needing
only the `tensorboard` package (an optional extra, `pip install 'lth[tensorboard]'`), which also
brings the viewer and `EventAccumulator` to read streams back. tensorboardX would be a second
writer of the same format; writing the protobuf records by hand would be ours to maintain.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from lth import layout
from lth.errors import LthError, StoreError
from lth.store import write_atomic
from lth.training.schedule import LrSchedule

ENV = "LTH_TENSORBOARD"  # a directory: write TensorBoard streams there without the flag
COMPLETE = "complete"  # in a stream's folder, written after its events: the stream is whole
EVENTS = "events.out.tfevents.*"
INSTALL = "pip install 'lth[tensorboard]'"


def from_env() -> str | None:
    """$LTH_TENSORBOARD, where set and not empty: the default of `Runtime.tensorboard`."""
    return os.environ.get(ENV) or None


def require() -> None:
    """Refuse, in one line naming the install command, where the writer cannot be imported:
    checked before a run starts, so a missing package never stops it after training."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise LthError(f"TensorBoard output needs the tensorboard package: {INSTALL}") from None


def stream_dir(root: str | Path, run: Path, trial: int, variant: str, level: int) -> Path:
    """Where the stream of a (trial, variant, level) of `run` goes: its level directory's path
    inside the run, under the run's own name (so several runs can share one DIR)."""
    return Path(root) / run.name / layout.unit_id(trial, variant, level)


def write_level(
    root: str | Path, run: Path, trial: int, variant: str, level: int, schedule: LrSchedule
) -> bool:
    """Write the stream of a finished (trial, variant, level) from its history.csv and result.json,
    unless it is already complete; True if it was written. `schedule` gives each step's rate."""
    from torch.utils.tensorboard import SummaryWriter

    folder = stream_dir(root, run, trial, variant, level)
    if (folder / COMPLETE).exists():
        return False
    source = layout.level_dir(run, trial, variant, level)
    try:
        history = pd.read_csv(source / layout.HISTORY)
        pm = float(json.loads((source / layout.RESULT).read_text())["percent_remaining"])
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:
        raise StoreError(
            f"cannot read {source} for TensorBoard ({err}); run the same command again"
        ) from None
    for stale in folder.glob(EVENTS):  # a stream cut off before it was marked complete
        stale.unlink()
    try:
        writer = SummaryWriter(log_dir=str(folder))
    except OSError as err:
        raise StoreError(
            f"cannot write TensorBoard events to {folder} ({err.strerror}); choose another --tensorboard DIR"
        ) from None
    with writer:
        for row in history.itertuples(index=False):
            step = int(row.iteration)
            scalars = {
                "loss/val": row.val_loss,
                "accuracy/val": row.val_accuracy,
                "loss/test": row.test_loss,
                "accuracy/test": row.test_accuracy,
                "pm": pm,
                "lr": schedule(step),
            }
            for tag, value in scalars.items():
                if not math.isnan(value):  # the test set is evaluated only where the early stop needs it
                    writer.add_scalar(tag, value, step)
    write_atomic(folder / COMPLETE, b"")
    return True
