"""Integer model files: one ``.npz`` holding a JSON metadata entry and the integer arrays.

Layout (schema 1)::

    meta            0-d unicode array: JSON {"schema": 1, "format": "spikeforge-integer-model", ...}
    layer{i}.weight int64 (n_out, n_in)
    layer{i}.bias   int64 (n_out,)
    layer{i}.threshold, layer{i}.v_init  int64 (n_out,)

Files are written atomically (temporary file, then rename) and loaded without pickle.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .model import MAX_V_BITS, Dense, Model, ModelError

__all__ = ["SCHEMA", "FORMAT", "save_model", "load_model", "atomic_write"]

SCHEMA = 1
FORMAT = "spikeforge-integer-model"
_ARRAYS = ("weight", "bias", "threshold", "v_init")
_OPTIONAL = {"h": np.array([1], dtype=np.int64)}   # absent in files from before STCB: the identity kernel
_META_KEYS = {"schema", "format", "coding", "T", "encoding", "input_max", "readout", "weight_bits",
              "v_bits", "layers"}


def atomic_write(path, write_fn) -> None:
    """Call ``write_fn(tmp_path)`` and rename the result onto ``path``; nothing half-written survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        # mkstemp creates 0600; give the result the mode a plain open() would (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(model: Model, path) -> None:
    """Write ``model`` to ``path`` (.npz), atomically."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a golden.Model, not {type(model).__name__}")
    meta = {"schema": SCHEMA, "format": FORMAT, **model.meta()}
    arrays = {"meta": np.array(json.dumps(meta, sort_keys=True))}
    for i, layer in enumerate(model.layers):
        for name in (*_ARRAYS, *_OPTIONAL):
            arrays[f"layer{i}.{name}"] = getattr(layer, name)

    def write(tmp):
        # np.savez stamps entries with the current time; fixed timestamps make the same model give
        # the same bytes, so training with a fixed seed is byte-reproducible.
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())

    atomic_write(path, write)


# Every value of a valid model fits the membrane datapath (v_bits <= MAX_V_BITS), so anything wider is
# rejected before the width analysis, whose int64 sums would otherwise wrap (v_init = -2**63 passed).
_VALUE_LIMIT = 1 << (MAX_V_BITS - 1)
# larger than any model the hardware can hold; stops a forged header or zip bomb from allocating memory
_MAX_FILE_BYTES = 1 << 30


def _check_range(a: np.ndarray, layer: int, name: str) -> None:
    if a.size and (int(a.min()) < -_VALUE_LIMIT or int(a.max()) >= _VALUE_LIMIT):
        bad = int(a.min()) if int(a.min()) < -_VALUE_LIMIT else int(a.max())
        raise ModelError(f"layer {layer}: {name} holds {bad}, outside the {MAX_V_BITS}-bit range of any model")


def _read_entries(path: Path) -> dict:
    """The ``.npy`` entries of the zip, checked against their headers before any array is allocated."""
    files = {}
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if sum(info.file_size for info in infos) > _MAX_FILE_BYTES:
            raise ModelError(f"{path}: entries total more than {_MAX_FILE_BYTES} bytes; not a model file")
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ModelError(f"{path}: unexpected entry {info.filename!r} (a model holds only .npy arrays)")
            key = info.filename[:-len(".npy")]
            if key in files:
                raise ModelError(f"{path}: duplicate entry {info.filename!r}")
            with zf.open(info) as fp:
                version = np.lib.format.read_magic(fp)
                if version not in ((1, 0), (2, 0)):
                    raise ModelError(f"{path}: entry {key!r}: unsupported .npy version {version}")
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fp)
                if dtype.hasobject:
                    raise ModelError(f"{path}: entry {key!r}: object arrays are not allowed")
                count = 1
                for d in shape:
                    count *= d
                if count * dtype.itemsize != info.file_size - fp.tell():
                    raise ModelError(f"{path}: entry {key!r}: header shape {shape} does not match its "
                                     f"{info.file_size - fp.tell()} data bytes (truncated or corrupt)")
            with zf.open(info) as fp:
                files[key] = np.lib.format.read_array(fp, allow_pickle=False)
    return files


def load_model(path) -> Model:
    """Load and fully validate a model file; any defect raises :class:`ModelError`."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"model path is a directory: {path}")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a readable .npz model file (not a zip archive)")
    try:
        files = _read_entries(path)
    except ModelError:
        raise
    except Exception as e:  # BadZipFile, zlib.error, RuntimeError (encrypted), MemoryError, ... : all one defect
        raise ModelError(f"{path}: not a readable .npz model file ({type(e).__name__}: {e})") from None
    if "meta" not in files:
        raise ModelError(f"{path}: no 'meta' entry; not a spikeforge integer model")
    try:
        meta_arr = files["meta"]
        if meta_arr.dtype.kind != "U" or meta_arr.ndim != 0:
            raise ValueError("meta must be a 0-d string")
        meta = json.loads(str(meta_arr))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except RecursionError:
        raise ModelError(f"{path}: corrupt metadata (JSON nested too deeply)") from None
    except ValueError as e:
        raise ModelError(f"{path}: corrupt metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if type(meta.get("schema")) is not int or meta["schema"] != SCHEMA:   # not 1.0, not true
        raise ModelError(f"{path}: unsupported schema version {meta.get('schema')!r} (this version reads {SCHEMA})")
    missing = _META_KEYS - set(meta)
    if missing:
        raise ModelError(f"{path}: metadata lacks {', '.join(sorted(missing))}")
    specs = meta["layers"]
    if not isinstance(specs, list) or not specs:
        raise ModelError(f"{path}: metadata 'layers' must be a non-empty list")
    layers = []
    for i, spec in enumerate(specs):
        arrs = {}
        for name in _ARRAYS:
            key = f"layer{i}.{name}"
            if key not in files:
                raise ModelError(f"{path}: layer {i}: missing array {name!r}")
            a = files[key]
            if a.dtype.kind not in "iu":
                raise ModelError(f"layer {i}: {name} must be an integer array, got dtype {a.dtype}")
            _check_range(a, i, name)
            arrs[name] = a
        for name, default in _OPTIONAL.items():
            a = files.get(f"layer{i}.{name}", default)
            if a.dtype.kind not in "iu":
                raise ModelError(f"layer {i}: {name} must be an integer array, got dtype {a.dtype}")
            _check_range(a, i, name)
            arrs[name] = a
        if (not isinstance(spec, dict) or any(type(spec.get(k)) is not int for k in ("n_in", "n_out"))
                or list(arrs["weight"].shape) != [spec.get("n_out"), spec.get("n_in")]):
            raise ModelError(f"layer {i}: weight shape {arrs['weight'].shape} does not match metadata {spec}")
        layers.append(Dense(arrs["weight"], arrs["bias"], arrs["threshold"], arrs["v_init"], arrs["h"], _layer=i))
    extra = set(files) - {"meta"} - {f"layer{i}.{n}" for i in range(len(specs)) for n in (*_ARRAYS, *_OPTIONAL)}
    if extra:
        raise ModelError(f"{path}: unexpected entries {', '.join(sorted(extra))}")
    return Model(layers, coding=meta["coding"], T=meta["T"], encoding=meta["encoding"],
                 input_max=meta["input_max"], readout=meta["readout"], weight_bits=meta["weight_bits"],
                 v_bits=meta["v_bits"])
