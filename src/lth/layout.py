"""The run directory's layout, written out once: where every file of a run lives, and its config.

Layout (one directory per config hash, named by `store.run_name`):
    config.toml                  the resolved config
    summary.csv                  one row per (trial, variant, level), columns SUMMARY_COLUMNS
    trial_T/VARIANT/level_LL/    mask.safetensors, init.safetensors, final.safetensors,
                                 history.csv, result.json (written last: marks the level done)
                                 checkpoint.pt while training is under way
    replicas/level_LL/ID.pt      while a group of a level's trainings is under way as replicas:
                                 its members and their states (see `lottery.replicas`)
    failed-trial_T.json          a sweep unit's last failure, until the unit runs again
A *record* (`lth record`, `lth/record.py`) is the same layout without any tensor or checkpoint:
config.toml, summary.csv and each level's history.csv and result.json for the trials it holds
(with instability.csv and each measured level's instability.json, where instability is measured,
and instability/rewind.csv with each of its start points' instability.json, where `lth
instability` swept the run), plus record.json (which trials, from which run), environment.json
(the engines and wall times gathered from the result.json and instability.json files) and a
generated README.md.
`TICKET/level_00` is the dense network, shared by all variants; `path/level_LL` holds the
continued-training path of strategy `continue`; `TICKET/level_00/rewind.safetensors` holds θk.

Instability analysis (`lth/analysis/`; docs/design.md, "Instability") adds, where it is asked for:
    instability.csv              beside summary.csv: one row per measured (trial, variant, level),
                                 columns INSTABILITY_COLUMNS
    trial_T/VARIANT/level_LL/    copy.safetensors (the second copy; the first is final.safetensors),
                                 instability.json (the error path, written last: measured);
                                 copy-checkpoint.pt while the copy trains
    instability/rewind.csv       `lth instability`'s sweep over rewind iterations k, same columns
    instability/trial_T/theta_K.safetensors    the dense network's weights at iteration k
    instability/trial_T/level_LL/k_K/          a start point the lottery run did not train: its
                                 copies (final and copy.safetensors, checkpoint.pt and
                                 copy-checkpoint.pt while they train) and instability.json

Read-only: `store.py` writes these files, the report (`report/load.py`) and `lth sweep --status`
(`sweep/progress.py`) read them; none of them spells a path component itself, so the three
cannot drift apart.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from lth.config import Config, from_dict
from lth.errors import LthError, StoreError

# The ticket's variant name (lottery/variants.py registers the variant under it): level 0, the
# dense network, is stored once, under it. Here, below the lottery package, so the store needs
# nothing above it.
TICKET = "imp"

CONFIG = "config.toml"
SUMMARY = "summary.csv"
RESULT = "result.json"  # written last in a level directory: the level is done once it exists
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.pt"
REPLICAS = "replicas"
# A record's own files (see the module docstring): record.json marks a directory as a record.
RECORD = "record.json"
ENVIRONMENT = "environment.json"
RECORD_README = "README.md"

# summary.csv's columns, in order: the contract that reports and users read.
SUMMARY_COLUMNS = [
    "trial",
    "seed",
    "variant",
    "level",
    "percent_remaining",
    "percent_remaining_all",
    "early_stop_iteration",
    "early_stop_val_loss",
    "early_stop_val_accuracy",
    "early_stop_test_accuracy",
    "final_test_accuracy",
    "final_train_accuracy",
    "final_train_loss",
]
# The measured columns, after the identifying ones (trial, seed, variant, level).
SUMMARY_METRICS = tuple(SUMMARY_COLUMNS[SUMMARY_COLUMNS.index("percent_remaining") :])

# Instability analysis's files (see the module docstring).
INSTABILITY = "instability.json"  # written last where a start point is measured: it is done
INSTABILITY_CSV = "instability.csv"
INSTABILITY_DIR = "instability"
REWIND_CSV = "rewind.csv"
COPY = "copy"  # tensors(COPY): the second copy's trained weights
COPY_CHECKPOINT = "copy-checkpoint.pt"
COPIES_CHECKPOINT = "copies"  # copies-<digest>.pt: copies trained together as replicas (measure.py)
# instability.csv's and rewind.csv's columns, in order; errors and instability are fractions.
INSTABILITY_COLUMNS = [
    "trial",
    "variant",
    "level",
    "percent_remaining",
    "rewind_iteration",
    "instability",
    "instability_train",
    "endpoint_test_error",
]


def tensors(name: str) -> str:
    """The file of a level's named tensors: "mask", "init", "final" or "rewind" (θk, level 0 only)."""
    return f"{name}.safetensors"


def trial_dir(run: Path, trial: int) -> Path:
    return run / f"trial_{trial}"


def level_name(level: int) -> str:
    return f"level_{level:02d}"


def level_dir(run: Path, trial: int, variant: str, level: int) -> Path:
    """Where a (trial, variant, level) is stored. Level 0, the dense network, is trained once per
    trial and stored under the ticket, so every variant's level 0 is that one directory."""
    stored = TICKET if level == 0 else variant
    return trial_dir(run, trial) / stored / level_name(level)


def unit_id(trial: int, variant: str, level: int) -> str:
    """A training's name, its level directory relative to the run: replica checkpoints list their
    members by it, so it must stay what older checkpoints hold."""
    return level_dir(Path(), trial, variant, level).as_posix()


def stored_results(run: Path, trial: int) -> list[Path]:
    """The result.json of every finished (variant, level) of `trial`, in path order."""
    return sorted(trial_dir(run, trial).glob(f"*/level_*/{RESULT}"))


def replicas_dir(run: Path, level: int) -> Path:
    return run / REPLICAS / level_name(level)


def failure_file(run: Path, trial: int) -> Path:
    return run / f"failed-trial_{trial}.json"


def instability_dir(run: Path, trial: int) -> Path:
    """Where `lth instability` keeps a trial's own start points and θk."""
    return run / INSTABILITY_DIR / f"trial_{trial}"


def theta_file(run: Path, trial: int, k: int) -> Path:
    """The trial's dense weights at iteration k, from which the sweep's copies start."""
    return instability_dir(run, trial) / tensors(f"theta_{k}")


def rewind_point_dir(run: Path, trial: int, level: int, k: int) -> Path:
    """A start point of the sweep (level's mask on θk, from iteration k) the lottery run did not
    train, so measured in a folder of its own."""
    return instability_dir(run, trial) / level_name(level) / f"k_{k}"


def read_config(run: Path, *, fix: str = "restore it or re-run the config that made this run") -> Config:
    """The run's config.toml as a `Config`; a missing or damaged file is a one-line `StoreError`
    ending in `fix` (the store, which would recompute, says to delete the run instead)."""
    path = run / CONFIG
    try:
        return from_dict(tomllib.loads(path.read_text()))
    except FileNotFoundError:
        raise StoreError(
            f"{run} has no {CONFIG}, so it is not a run directory `lth run` wrote; "
            "give the directory `lth run` printed"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, LthError) as err:  # TOMLDecodeError is a ValueError
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StoreError(f"run file {path} is damaged ({why}); {fix}") from None


def read_record(path: Path) -> dict[str, Any] | None:
    """A record's record.json (which trials it holds, from which run), or None where `path` is a
    run directory; a damaged file is a one-line `StoreError`."""
    file = path / RECORD
    if not file.exists():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(
            f"record file {file} is damaged ({str(err).splitlines()[0]}); run the same `lth record` again"
        ) from None
