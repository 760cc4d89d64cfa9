"""Integer model files: one ``.npz`` holding a JSON metadata entry and the integer arrays.

Layout (schema 2, docs/spec.md section 1)::

    meta            0-d unicode array: JSON {"schema": 2, "format": "spikeforge-integer-model",
                    ..., "input_shape": [...], "layers": [{"type": "dense" | "conv2d" | "maxpool2d", ...}]}
    layer{i}.weight int64 (n_out, n_in) or (Co, C, K, K)
    layer{i}.bias, layer{i}.threshold, layer{i}.v_init  int64 (n_out,) or (Co,)
    layer{i}.h      int64 (taps,), the STEB kernel (optional, default [1])

maxpool2d layers have no arrays. Schema-1 files (dense only, layers ``{"n_in", "n_out"}``, no
``input_shape``) still load and mean what they meant. Files are written atomically (temporary
file, then rename) and loaded without pickle.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .model import LAYER_KINDS, MAX_V_BITS, Conv2d, Dense, MaxPool2d, Model, ModelError

__all__ = ["SCHEMA", "SCHEMAS", "FORMAT", "save_model", "load_model", "atomic_write"]

SCHEMA = 2                  # what save_model writes
SCHEMAS = (1, 2)            # what load_model reads
FORMAT = "spikeforge-integer-model"
_ARRAYS = ("weight", "bias", "threshold", "v_init")
_OPTIONAL = {"h": np.array([1], dtype=np.int64)}   # absent in files from before STCB: the identity kernel
_META_KEYS = {"schema", "format", "coding", "T", "encoding", "input_max", "readout", "weight_bits",
              "v_bits", "layers"}
_META_KEYS_2 = _META_KEYS | {"input_shape"}
# schema-2 layer entries: exactly these keys (a future "inputs" key arrives with a new reader)
_LAYER_KEYS = {
    "dense": {"type", "n_in", "n_out", "reset", "leak"},
    "conv2d": {"type", "in_shape", "out_shape", "kernel", "stride", "padding", "reset", "leak"},
    "maxpool2d": {"type", "in_shape", "out_shape", "kernel"},
}


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
        if layer.has_neurons:
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
    if type(meta.get("schema")) is not int or meta["schema"] not in SCHEMAS:   # not 1.0, not true
        raise ModelError(f"{path}: unsupported schema version {meta.get('schema')!r} "
                         f"(this version reads {', '.join(map(str, SCHEMAS))})")
    schema = meta["schema"]
    missing = (_META_KEYS if schema == 1 else _META_KEYS_2) - set(meta)
    if missing:
        raise ModelError(f"{path}: metadata lacks {', '.join(sorted(missing))}")
    specs = meta["layers"]
    if not isinstance(specs, list) or not specs:
        raise ModelError(f"{path}: metadata 'layers' must be a non-empty list")
    layers, names = [], set()
    for i, spec in enumerate(specs):
        if schema == 1:
            if not isinstance(spec, dict) or set(spec) != {"n_in", "n_out"}:
                raise ModelError(f"layer {i}: a schema-1 layer entry holds exactly n_in and n_out, got {spec!r}")
            spec = {"type": "dense", **spec, "reset": "subtract", "leak": None}
        kind = _layer_kind(spec, i)
        arrs = {}
        if kind != "maxpool2d":
            arrs = _layer_arrays(files, path, i)
            names |= {f"layer{i}.{n}" for n in (*_ARRAYS, *_OPTIONAL)}
        layers.append(_build_layer(kind, spec, arrs, i))
    extra = set(files) - {"meta"} - names
    if extra:
        raise ModelError(f"{path}: unexpected entries {', '.join(sorted(extra))}")
    return Model(layers, coding=meta["coding"], T=meta["T"], encoding=meta["encoding"],
                 input_max=meta["input_max"], readout=meta["readout"], weight_bits=meta["weight_bits"],
                 v_bits=meta["v_bits"], input_shape=meta.get("input_shape") if schema == 2 else None)


def _layer_kind(spec, i: int) -> str:
    """The layer entry's type, after checking it holds exactly that type's keys."""
    if not isinstance(spec, dict):
        raise ModelError(f"layer {i}: metadata entry must be an object, got {spec!r}")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in LAYER_KINDS:
        raise ModelError(f"layer {i}: type must be one of {', '.join(LAYER_KINDS)}, got {kind!r}")
    keys = _LAYER_KEYS[kind]
    if set(spec) != keys:
        lack, extra = sorted(keys - set(spec)), sorted(set(spec) - keys)
        what = "; ".join(x for x in (f"lacks {', '.join(lack)}" if lack else "",
                                     f"has unknown {', '.join(map(repr, extra))}" if extra else "") if x)
        raise ModelError(f"layer {i}: {kind} entry {what}")
    for k in ("n_in", "n_out", "kernel", "stride", "padding"):
        if k in spec and type(spec[k]) is not int:      # not true, not 1.0
            raise ModelError(f"layer {i}: {k} must be an integer, got {spec[k]!r}")
    for k in ("in_shape", "out_shape"):
        if k in spec and not (isinstance(spec[k], list) and len(spec[k]) == 3
                              and all(type(v) is int for v in spec[k])):
            raise ModelError(f"layer {i}: {k} must be [C, H, W] (three integers), got {spec[k]!r}")
    leak = spec.get("leak")
    if leak is not None and not (isinstance(leak, list) and len(leak) == 2 and all(type(v) is int for v in leak)):
        raise ModelError(f"layer {i}: leak must be null or [num, shift] (two integers), got {leak!r}")
    return kind


def _layer_arrays(files: dict, path: Path, i: int) -> dict:
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
    return arrs


def _build_layer(kind: str, spec: dict, arrs: dict, i: int):
    """The layer object, after checking that the metadata describes the arrays exactly."""
    if kind == "dense":
        if list(arrs["weight"].shape) != [spec["n_out"], spec["n_in"]]:
            raise ModelError(f"layer {i}: weight shape {arrs['weight'].shape} does not match metadata "
                             f"n_out={spec['n_out']}, n_in={spec['n_in']}")
        return Dense(arrs["weight"], arrs["bias"], arrs["threshold"], arrs["v_init"], arrs["h"],
                     reset=spec["reset"], leak=spec["leak"], _layer=i)
    if kind == "conv2d":
        expect = [spec["out_shape"][0], spec["in_shape"][0], spec["kernel"], spec["kernel"]]
        if list(arrs["weight"].shape) != expect:
            raise ModelError(f"layer {i}: weight shape {arrs['weight'].shape} does not match metadata "
                             f"(Co, C, K, K) = {tuple(expect)}")
        layer = Conv2d(arrs["weight"], arrs["bias"], arrs["threshold"], arrs["v_init"], arrs["h"],
                       in_shape=spec["in_shape"], stride=spec["stride"], padding=spec["padding"],
                       reset=spec["reset"], leak=spec["leak"], _layer=i)
    else:
        layer = MaxPool2d(spec["kernel"], in_shape=spec["in_shape"], _layer=i)
    if list(layer.out_shape) != spec["out_shape"]:
        raise ModelError(f"layer {i}: out_shape {spec['out_shape']} does not match {list(layer.out_shape)} "
                         f"computed from in_shape {spec['in_shape']}")
    return layer
