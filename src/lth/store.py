"""The run directory: where a run's results live, written atomically, read back safely.

What lives where (the layout, the file names, summary.csv's columns) is `lth.layout`'s; this
module writes it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from lth import layout
from lth.config import Config
from lth.errors import StoreError
from lth.pruning import Mask

# Re-exported: callers import summary.csv's columns from the store, which writes them.
SUMMARY_COLUMNS = layout.SUMMARY_COLUMNS
SUMMARY_METRICS = layout.SUMMARY_METRICS


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
        return (self.path / layout.RESULT).exists()

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        write_tensors(self.path / layout.tensors(name), tensors)

    def load_tensors(self, name: str) -> dict[str, torch.Tensor]:
        return read_tensors(self.path / layout.tensors(name))

    def save_mask(self, mask: Mask) -> None:
        write_atomic(self.path / layout.tensors("mask"), mask.to_bytes())

    def load_mask(self) -> Mask:
        return Mask(self.load_tensors("mask"))

    def percent_remaining_all(self) -> float | None:
        """Pm over all weights (`Mask.fraction_remaining_all`) from the stored mask and the shapes
        in final.safetensors, for a result written before result.json recorded it; None where
        either file is unreadable."""
        try:
            return 100 * self.load_mask().fraction_remaining_all(
                tensor_shapes(self.path / layout.tensors("final"))
            )
        except StoreError:
            return None

    def save_history(self, rows: list[dict[str, float]], columns: tuple[str, ...]) -> None:
        # A metric not evaluated at a row (NaN: the test set between validation minima) is empty.
        cells = [
            {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()} for row in rows
        ]
        write_atomic(self.path / layout.HISTORY, _csv_bytes(cells, columns))

    def save_result(self, result: dict[str, Any]) -> None:
        write_atomic(self.path / layout.RESULT, json.dumps(result, indent=2).encode())
        (self.path / layout.CHECKPOINT).unlink(missing_ok=True)

    def load_result(self) -> dict[str, Any]:
        path = self.path / layout.RESULT
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise damaged(path, str(err)) from None

    def checkpoint(self, interval_s: float) -> FileCheckpoint:
        return FileCheckpoint(self.path / layout.CHECKPOINT, interval_s)


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


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(path, save_safetensors(data))


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


def write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> Path:
    """A table of a run (instability.csv, rewind.csv) written atomically; missing cells empty."""
    write_atomic(path, _csv_bytes(rows, columns))
    return path


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
        write_atomic(self.path / layout.CONFIG, config.to_toml().encode())

    @classmethod
    def at(cls, path: str | Path, config: Config) -> RunStore:
        """The directory `path` as a store, as it stands: nothing is created, checked or written.
        A record (`lth.record`) rewrites its summary.csv through it with the runner's own code."""
        store = cls.__new__(cls)
        store.config, store.path = config, Path(path)
        return store

    def _check_config(self) -> None:
        if not (self.path / layout.CONFIG).exists():
            return
        previous = layout.read_config(self.path, fix=f"delete {self.path} to recompute it")
        if previous.hash() != self.config.hash():
            raise StoreError(
                f"run directory {self.path} holds results of a different config; "
                "move it away or choose another --out DIR"
            )

    def level(self, trial: int, variant: str, level: int) -> LevelDir:
        """A (trial, variant, level)'s directory; every variant's level 0 is the one dense level."""
        return LevelDir(layout.level_dir(self.path, trial, variant, level))

    def replica_checkpoint(self, level: int, members: list[str], interval_s: float) -> GroupCheckpoint:
        digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:16]
        return GroupCheckpoint(layout.replicas_dir(self.path, level) / f"{digest}.pt", interval_s, members)

    def replica_groups(self, level: int) -> list[list[str]]:
        """The members of each group of `level` that stopped part-way, oldest first."""
        folder = layout.replicas_dir(self.path, level)
        paths = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
        return [FileCheckpoint(path, 0.0).load()["members"] for path in paths]

    def stored_results(self, trials: list[int]) -> list[dict[str, Any]]:
        """The result.json of every finished (variant, level) of `trials`."""
        return [LevelDir(p.parent).load_result() for t in trials for p in layout.stored_results(self.path, t)]

    def write_summary(self, rows: list[dict[str, Any]], columns: list[str]) -> Path:
        path = self.path / layout.SUMMARY
        write_atomic(path, _csv_bytes(rows, columns))
        return path


def run_name(config: Config) -> str:
    """`<model>-<dataset>-<hash>`: readable, and unique per computed config."""
    return f"{config.model.name}-{config.data.dataset}-{config.hash()}".replace(":", "_").replace("/", "_")
