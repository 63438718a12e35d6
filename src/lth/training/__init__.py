"""Training: one iteration-based loop (masking, evaluation, early-stop records) driving engines."""

from lth.training.evaluate import evaluate
from lth.training.loop import HISTORY_COLUMNS, Checkpoint, TrainResult, iterations_per_epoch, train
from lth.training.schedule import LrSchedule

__all__ = [
    "HISTORY_COLUMNS",
    "Checkpoint",
    "LrSchedule",
    "TrainResult",
    "evaluate",
    "iterations_per_epoch",
    "train",
]
