"""CIFAR-10 in the "python version" layout: found, fetched, extracted safely and read.

Layout under a root folder ROOT: torchvision's `ROOT/cifar-10-batches-py/`, or ROOT being that
folder. It holds `data_batch_1` … `data_batch_5` and `test_batch`: pickles (written by Python 2)
of a dict whose `data` is a uint8 array N×3072 (row-major C, H, W) and `labels` a list of N ints
in 0..9; `batches.meta` optionally gives `num_cases_per_batch` and `label_names`.

Pickles can run arbitrary code when loaded, so they are read with an unpickler that only builds
numpy arrays and plain containers.
"""

from __future__ import annotations

import codecs
import os
import pickle
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from lth.data import download
from lth.data.splits import Pixels, Split
from lth.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
NUM_CLASSES = 10
PIXELS = 3 * 32 * 32
FIX = f"delete {FOLDER} and run `lth data fetch cifar10`"


# ---------------------------------------------------------------------------------------------
# Reading

# The only globals a CIFAR-10 pickle needs: numpy's array reconstruction (under its numpy 1 and
# numpy 2 module names) and, for pickles written by Python 3 at protocol 2, `_codecs.encode`.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.int64(0).__reduce__()[0]
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    **{
        (module, "_reconstruct"): _RECONSTRUCT
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    },
    **{(module, "scalar"): _SCALAR for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # latin1 turns Python 2 byte strings (the keys, the array buffers) into str losslessly.
            obj = _ArraysOnly(f, encoding="latin1").load()
    except OSError as e:
        raise DataError(f"cannot read CIFAR-10 file {path} ({e.strerror or e}); {FIX}") from e
    except Exception as e:  # garbage bytes raise anything from UnpicklingError to MemoryError
        raise DataError(
            f"CIFAR-10 file {path} is not a readable pickle ({type(e).__name__}: {e}); {FIX}"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR-10 file {path} holds a {type(obj).__name__}, not a dict; {FIX}")
    # Pickles written by Python 3 from bytes keys come back as bytes.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batch(path: Path, rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`data` (N×3072 uint8) and `labels` (N int64) of one batch file, validated."""
    if not path.is_file():
        raise DataError(f"CIFAR-10 file {path} is missing; run `lth data fetch cifar10`")
    batch = _unpickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"CIFAR-10 file {path} has no {key!r} entry; {FIX}")
    data = batch["data"]
    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == PIXELS
    ):
        found = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(f"CIFAR-10 file {path} has data as a {found}, expected uint8 N×{PIXELS}; {FIX}")
    try:
        labels = np.asarray(batch["labels"])
    except Exception as e:
        raise DataError(f"CIFAR-10 file {path} has labels that are not a list of ints; {FIX}") from e
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise DataError(
            f"CIFAR-10 file {path} has {labels.shape} labels of type {labels.dtype} for {len(data)} "
            f"images, expected one int per image; {FIX}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(
            f"CIFAR-10 file {path} has labels from {labels.min()} to {labels.max()}, expected 0..9; {FIX}"
        )
    if rows is not None and len(data) != rows:
        raise DataError(
            f"CIFAR-10 file {path} has {len(data)} images, but {META} says {rows} per batch; {FIX}"
        )
    return data, labels.astype(np.int64)


def _rows_per_batch(folder: Path) -> int | None:
    """`num_cases_per_batch` from batches.meta (10000 in the real data), if the file is there."""
    path = folder / META
    if not path.is_file():
        return None
    meta = _unpickle(path)
    rows = meta.get("num_cases_per_batch")
    names = meta.get("label_names")
    if not isinstance(rows, int) or rows < 1 or not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise DataError(f"CIFAR-10 file {path} lacks num_cases_per_batch or 10 label_names; {FIX}")
    return rows


def data_dir(root: Path) -> Path | None:
    """The folder under `root` holding the batches (torchvision layout first), or None."""
    for folder in (root / FOLDER, root):
        if any((folder / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH)):
            return folder
    return None


def _to_split(batches: list[tuple[np.ndarray, np.ndarray]]) -> Split:
    data = np.concatenate([d for d, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    return Split(torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels))


def read(root: Path) -> Pixels:
    """The full training set (5 batches) and the test set: uint8 N×3×32×32 images, int64 labels."""
    folder = data_dir(root)
    if folder is None:
        raise DataError(
            f"CIFAR-10 is not in {root} (looked for {TRAIN_BATCHES[0]} in {root / FOLDER} and {root}); "
            f"run `lth data fetch cifar10`, or set --data-dir / LTH_DATA_DIR to the folder that holds it"
        )
    rows = _rows_per_batch(folder)
    train = _to_split([_read_batch(folder / name, rows) for name in TRAIN_BATCHES])
    test = _to_split([_read_batch(folder / TEST_BATCH, rows)])
    return Pixels(train, test, MEAN, STD)


# ---------------------------------------------------------------------------------------------
# Fetching


def _is_valid(folder: Path) -> bool:
    try:
        rows = _rows_per_batch(folder)
        for name in (*TRAIN_BATCHES, TEST_BATCH):
            _read_batch(folder / name, rows)
    except DataError:
        return False
    return True


def _extract(archive: Path, root: Path) -> Path:
    """Extract the archive's `cifar-10-batches-py/` into `root`, atomically; return that folder.

    Only regular files directly inside that folder are written (no links, no absolute paths, no
    `..`), into a temporary folder that is renamed into place once complete.
    """
    dest = root / FOLDER
    staging = download.temp_name(dest, ".tmp")
    staging.mkdir()  # not tempfile.mkdtemp, whose 0700 mode would stick to the final folder
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.isdir() and parts == (FOLDER,):
                    continue
                if not (
                    member.isfile() and len(parts) == 2 and parts[0] == FOLDER and parts[1] not in ("..", ".")
                ):
                    raise DataError(
                        f"{archive} holds an unexpected entry {member.name!r}; delete it and fetch again"
                    )
                stream = tar.extractfile(member)
                assert stream is not None  # regular files always have one
                with stream, open(staging / parts[1], "wb") as out:
                    shutil.copyfileobj(stream, out, download.CHUNK)
        if not _is_valid(staging):
            raise DataError(f"{archive} does not hold the six CIFAR-10 batches; delete it and fetch again")
        if dest.exists():  # an invalid earlier copy: move it aside first (os.replace needs an empty dest)
            trash = download.temp_name(dest, ".old")
            os.replace(dest, trash)
            shutil.rmtree(trash)
        os.replace(staging, dest)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot extract {archive} ({e}); delete it and run `lth data fetch cifar10`") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def fetch_files(root: Path, *, progress: bool = True) -> Path:
    """Make sure `root` holds valid CIFAR-10 batches; return the folder holding them.

    Valid batches already present are kept. Otherwise the archive is downloaded to
    ROOT/cifar-10-python.tar.gz (or taken from there if a valid copy was put there by hand) and
    extracted; the archive is kept so a later re-extraction needs no download.
    """
    folder = data_dir(root)
    if folder is not None and _is_valid(folder):
        return folder
    download.ensure_writable(root)
    archive = root / ARCHIVE
    if not (archive.is_file() and download.md5_file(archive) == ARCHIVE_MD5):
        try:
            download.fetch_url(URL, archive, ARCHIVE_MD5, progress=progress)
        except download.FetchFailed as e:
            raise DataError(
                f"cannot fetch CIFAR-10 ({e}); download {URL} by hand into {root} and run "
                f"`lth data fetch cifar10` again"
            ) from e
    return _extract(archive, root)
