"""The IDX file format of MNIST and Fashion-MNIST, read without per-sample Python.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values row-major. MNIST uses only type 0x08
(uint8): magic 2051 for images (3 dims) and 2049 for labels (1 dim). The header is checked
against the file's length so that a truncated download gives a clear error, not a reshape
failure deep inside numpy.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from lth.errors import DataError

IMAGES_MAGIC = 0x0803  # 2051
LABELS_MAGIC = 0x0801  # 2049


# Every error message reads "<what> <problem>; <fix>", e.g. "MNIST file /x/t10k-labels-idx1-ubyte
# is truncated (…); delete it and run `lth data fetch mnist`".


def read_maybe_gzip(path: Path, *, what: str, fix: str) -> bytes:
    """The bytes of `path`, decompressed if its name ends in .gz."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {what} ({e.strerror or e}); {fix}") from e
    return unpack(data, path, what=what, fix=fix)


def unpack(data: bytes, path: Path, *, what: str, fix: str) -> bytes:
    """`data` as read from `path`, decompressed if the name ends in .gz."""
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{what} is not a complete gzip file ({e}); {fix}") from e


def parse(data: bytes, magic: int, shape: tuple[int, ...], *, what: str, fix: str) -> np.ndarray:
    """View `data` as the uint8 array of an IDX file whose magic and shape must be as given.

    The result is a read-only view of `data` (no copy); callers convert it once to a tensor.
    """
    ndim = len(shape)
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{what} is truncated (expected {header_len + int(np.prod(shape))} bytes, "
            f"found {len(data)}); {fix}"
        )
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise DataError(f"{what} has a corrupt header (magic number {found_magic}, expected {magic}); {fix}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if dims != shape:
        raise DataError(
            f"{what} has a corrupt header (shape {'×'.join(map(str, dims))}, "
            f"expected {'×'.join(map(str, shape))}); {fix}"
        )
    expected = header_len + int(np.prod(shape))
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{what} {problem} (expected {expected} bytes, found {len(data)}); {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)
