"""The run directory: where a run's results live, written atomically, read back safely.

Layout (one directory per config hash):
    config.toml                  the resolved config
    summary.csv                  one row per (trial, variant, level)
    trial_T/VARIANT/level_LL/    mask.safetensors, init.safetensors, final.safetensors,
                                 history.csv, result.json (written last: marks the level done)
                                 checkpoint.pt while training is under way
    replicas/level_LL/ID.pt      while a group of a level's trainings is under way as replicas:
                                 its members and their states (see `lottery.replicas`)
`imp/level_00` is the dense network, shared by all variants; `path/level_LL` holds the
continued-training path of strategy `continue`; `imp/level_00/rewind.safetensors` holds θk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from lth.config import Config, from_dict
from lth.errors import LthError, StoreError
from lth.pruning import Mask

DONE = "result.json"

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


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one, never half.

    A write that fails (a full disk, a folder turned read-only) leaves no partial file and raises
    a `StoreError` naming the folder: a level is done only once its result.json is written, so
    running the same command again, with space, recomputes what was cut off and nothing else.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise StoreError(
                f"cannot write {path.name} in {path.parent} ({err.strerror or err}); free space there or "
                "choose another --out DIR, then run the same command again to continue"
            ) from None
        raise


def damaged(path: Path, why: str) -> StoreError:
    return StoreError(f"run file {path} is damaged ({why}); delete {path.parent} to recompute it")


class LevelDir:
    """The stored results of one (trial, variant, level)."""

    def __init__(self, path: Path):
        self.path = path

    @property
    def done(self) -> bool:
        return (self.path / DONE).exists()

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        write_atomic(self.path / f"{name}.safetensors", save_safetensors(data))

    def load_tensors(self, name: str) -> dict[str, torch.Tensor]:
        return read_tensors(self.path / f"{name}.safetensors")

    def save_mask(self, mask: Mask) -> None:
        write_atomic(self.path / "mask.safetensors", mask.to_bytes())

    def load_mask(self) -> Mask:
        return Mask(read_tensors(self.path / "mask.safetensors"))

    def percent_remaining_all(self) -> float | None:
        """Pm over all weights (`Mask.fraction_remaining_all`) from the stored mask and the shapes
        in final.safetensors, for a result written before result.json recorded it; None where
        either file is unreadable."""
        try:
            return 100 * self.load_mask().fraction_remaining_all(
                tensor_shapes(self.path / "final.safetensors")
            )
        except StoreError:
            return None

    def save_history(self, rows: list[dict[str, float]], columns: tuple[str, ...]) -> None:
        # A metric not evaluated at a row (NaN: the test set between validation minima) is empty.
        cells = [
            {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()} for row in rows
        ]
        write_atomic(self.path / "history.csv", _csv_bytes(cells, columns))

    def save_result(self, result: dict[str, Any]) -> None:
        write_atomic(self.path / DONE, json.dumps(result, indent=2).encode())
        (self.path / "checkpoint.pt").unlink(missing_ok=True)

    def load_result(self) -> dict[str, Any]:
        path = self.path / DONE
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise damaged(path, str(err)) from None

    def checkpoint(self, interval_s: float) -> FileCheckpoint:
        return FileCheckpoint(self.path / "checkpoint.pt", interval_s)


class FileCheckpoint:
    """A training run's progress in one file, replaced atomically (see `training.Checkpoint`)."""

    def __init__(self, path: Path, interval_s: float):
        self.path, self.interval_s = path, interval_s

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise damaged(self.path, f"unreadable checkpoint: {err}") from None

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(self.path, buffer.getvalue())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class GroupCheckpoint(FileCheckpoint):
    """The checkpoint of trainings run together as replicas; it names its members, so that an
    interrupted group resumes as the same group."""

    def __init__(self, path: Path, interval_s: float, members: list[str]):
        super().__init__(path, interval_s)
        self.members = members

    def save(self, state: dict[str, Any]) -> None:
        super().save(state | {"members": self.members})


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as err:
        raise _unreadable(path, err) from None


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Name → shape of every tensor in a safetensors file, from its header alone."""
    try:
        with safe_open(path, framework="pt") as f:
            return {name: f.get_slice(name).get_shape() for name in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, ValueError, OSError) as err:
        raise _unreadable(path, err) from None


def _unreadable(path: Path, err: Exception) -> StoreError:
    if isinstance(err, FileNotFoundError):
        return damaged(path, "file is missing")
    return damaged(path, str(err).splitlines()[0] if str(err) else type(err).__name__)


def _csv_bytes(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


class RunStore:
    """A run directory for one config, created on first use and checked on every later one."""

    def __init__(self, root: str | Path, config: Config):
        self.config = config
        self.path = Path(root) / run_name(config)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink(missing_ok=True)  # another process may share the directory (lth sweep)
        except OSError as err:
            raise StoreError(
                f"cannot write the run directory {self.path} ({err.strerror}); choose another with --out DIR"
            ) from None
        self._check_config()
        write_atomic(self.path / "config.toml", config.to_toml().encode())

    def _check_config(self) -> None:
        stored = self.path / "config.toml"
        if not stored.exists():
            return
        try:
            previous = from_dict(tomllib.loads(stored.read_text()))
        except (LthError, ValueError, UnicodeDecodeError) as err:
            raise damaged(stored, str(err)) from None
        if previous.hash() != self.config.hash():
            raise StoreError(
                f"run directory {self.path} holds results of a different config; "
                "move it away or choose another --out DIR"
            )

    def trial(self, trial: int) -> Path:
        return self.path / f"trial_{trial}"

    def level(self, trial: int, variant: str, level: int) -> LevelDir:
        return LevelDir(self.trial(trial) / variant / f"level_{level:02d}")

    def replica_checkpoint(self, level: int, members: list[str], interval_s: float) -> GroupCheckpoint:
        digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:16]
        return GroupCheckpoint(
            self.path / "replicas" / f"level_{level:02d}" / f"{digest}.pt", interval_s, members
        )

    def replica_groups(self, level: int) -> list[list[str]]:
        """The members of each group of `level` that stopped part-way, oldest first."""
        folder = self.path / "replicas" / f"level_{level:02d}"
        paths = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
        return [FileCheckpoint(path, 0.0).load()["members"] for path in paths]

    def stored_results(self, trials: list[int]) -> list[dict[str, Any]]:
        """The result.json of every finished (variant, level) of `trials`."""
        paths = [p for t in trials for p in sorted(self.trial(t).glob(f"*/level_*/{DONE}"))]
        return [LevelDir(p.parent).load_result() for p in paths]

    def write_summary(self, rows: list[dict[str, Any]], columns: list[str]) -> Path:
        path = self.path / "summary.csv"
        write_atomic(path, _csv_bytes(rows, columns))
        return path


def run_name(config: Config) -> str:
    """`<model>-<dataset>-<hash>`: readable, and unique per computed config."""
    return f"{config.model.name}-{config.data.dataset}-{config.hash()}".replace(":", "_").replace("/", "_")
